"""Generate the golden vectors of the report encoding: `python -m tests.settlement.make_vectors`.

Writes tests/settlement/vectors/report_v1.json from FIXED inputs. The tests compare the current code
against the committed file, so any change in the encoding, hashing or signing shows up as a failing
test and a diff of this JSON; regenerate only when the change is intended (and the chain-side vector
test still passes against the real KeystoneForwarder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from eth_account import Account

from crossdvp.settlement import (
    Decision,
    DonConfig,
    Leg,
    ReportItem,
    Terms,
    WorkflowIdentity,
    build_report,
    encode_payload,
    report_context,
    report_digest,
    sign_report,
    transmission_id,
)
from crossdvp.settlement.report import ReportMetadata

VECTOR_PATH = Path(__file__).parent / "vectors" / "report_v1.json"

# Well-known throwaway keys 1..4 (their addresses are listed in the JSON); never fund them anywhere.
PRIVATE_KEYS = tuple(i.to_bytes(32, "big") for i in range(1, 5))
SIGNING_KEYS = PRIVATE_KEYS[:2]  # f + 1 = 2 signatures
RECEIVER = "0x" + "ee" * 20
TIMESTAMP_S = 1_700_000_100

FIELD_DOCS = {
    "inputs.private_keys": "secp256k1 secret keys of the 4 DON signers (keys 1..4); throwaway, public",
    "inputs.don": "DON config: don_id, config_version, f, signers (addresses of private_keys, in order)",
    "inputs.workflow": "workflow identity: workflow_cid (bytes32), workflow_name (plain name), "
    "workflow_owner (address), report_id (bytes2)",
    "inputs.terms": "two settlements' terms in JSON form (Terms.to_dict): a 2-leg DvP and a 3-leg, "
    "3-network settlement",
    "inputs.items": "the report batch: (settlement_id, terms_hash, decision) with decision "
    "1 = SETTLE, 2 = ABORT",
    "inputs.timestamp_s": "metadata timestamp (uint32): the latest decision time of the items",
    "inputs.signing_key_indexes": "indexes into private_keys of the f+1 keys that sign, in signature order",
    "inputs.receiver": "a receiver address, only for transmission_id",
    "expected.terms_encoding": "per terms: abi.encode(bytes32 settlementId, uint64 deadline, "
    "(string,string,uint256,string,string)[] legs)",
    "expected.terms_hash": "per terms: keccak256(terms_encoding)",
    "expected.workflow_name_encoded": "bytes10: ASCII of sha256(workflow_name).hexdigest()[:10] (as CRE)",
    "expected.config_digest": "keccak256(abi.encode(uint32 don_id, uint32 config_version, uint8 f, "
    "address[] signers))",
    "expected.payload": "abi.encode((bytes32,bytes32,uint8)[] items)",
    "expected.workflow_execution_id": "keccak256(payload)",
    "expected.metadata": "109 bytes: version(1)=1 | workflow_execution_id(32) | timestamp(4) | don_id(4) | "
    "don_config_version(4) | workflow_cid(32) | workflow_name(10) | workflow_owner(20) | report_id(2)",
    "expected.forwarder_metadata": "raw_report[45:109]: what KeystoneForwarder passes to onReport as "
    "metadata",
    "expected.raw_report": "metadata || payload: the rawReport argument of KeystoneForwarder.report",
    "expected.report_context": "96 bytes: config_digest || 64 zero bytes (the reportContext argument)",
    "expected.report_digest": "keccak256(keccak256(raw_report) || report_context): the hash each "
    "signer signs (no EIP-191 prefix)",
    "expected.signatures": "65 bytes each, r(32) || s(32) || v(1) with v in {0,1} (the forwarder adds 27); "
    "RFC 6979 deterministic, low-s",
    "expected.signers": "lowercase addresses recovered from signatures, in order",
    "expected.config_id": "(don_id << 32) | config_version, as a decimal integer",
    "expected.transmission_id": "keccak256(receiver(20) || workflow_execution_id(32) || report_id(2))",
}


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def fixed_inputs() -> tuple[DonConfig, WorkflowIdentity, tuple[Terms, ...]]:
    don = DonConfig(
        don_id=1,
        config_version=1,
        f=1,
        signers=tuple(Account.from_key(k).address.lower() for k in PRIVATE_KEYS),
    )
    workflow = WorkflowIdentity(
        workflow_cid=bytes(range(1, 33)),
        workflow_name="crossdvp-settlement",
        workflow_owner="0x8ba1f109551bd432803012645ac136ddd64dba72",
        report_id=b"\x00\x01",
    )
    dvp = Terms(
        settlement_id=bytes.fromhex("d1" * 32),
        deadline_s=1_700_000_000,
        legs=(
            Leg(
                "eip155:31337",
                "0x5fbdb2315678afecb367f032d93f642f64180aa3",
                25 * 10**18,
                "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
                "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
            ),
            Leg("payments:crossdvp-payments", "USD", 2_625_000_00, "buyer-cash", "seller-cash"),
        ),
    )
    three = Terms(
        settlement_id=bytes.fromhex("a3" * 32),
        deadline_s=1_700_000_100,
        legs=(
            Leg(
                "eip155:1",
                "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
                1,
                "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
                "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65",
            ),
            Leg("payments:bank-a", "EUR", 99, "acct-1", "acct-2"),
            Leg("payments:bank-b", "JPY", 2**96 - 1, "acct-3", "acct-4"),
        ),
    )
    return don, workflow, (dvp, three)


def fixed_items(terms: tuple[Terms, ...]) -> tuple[ReportItem, ...]:
    return (
        ReportItem(terms[0].settlement_id, terms[0].terms_hash, Decision.SETTLE),
        ReportItem(terms[1].settlement_id, terms[1].terms_hash, Decision.ABORT),
    )


def build() -> dict[str, Any]:
    don, workflow, terms = fixed_inputs()
    items = fixed_items(terms)
    raw = build_report(items, timestamp_s=TIMESTAMP_S, don=don, workflow=workflow)
    context = report_context(don)
    signatures = [sign_report(raw, context, k) for k in SIGNING_KEYS]
    metadata = ReportMetadata.decode(raw)
    return {
        "description": "Golden vectors of the crossdvp Keystone report encoding (version 1). Generated by "
        "`python -m tests.settlement.make_vectors`; checked by tests/settlement/test_vectors.py and "
        "against the real KeystoneForwarder on anvil. Byte strings are 0x-prefixed lowercase hex.",
        "fields": FIELD_DOCS,
        "inputs": {
            "private_keys": [_hex(k) for k in PRIVATE_KEYS],
            "don": {
                "don_id": don.don_id,
                "config_version": don.config_version,
                "f": don.f,
                "signers": list(don.signers),
            },
            "workflow": {
                "workflow_cid": _hex(workflow.workflow_cid),
                "workflow_name": workflow.workflow_name,
                "workflow_owner": workflow.workflow_owner,
                "report_id": _hex(workflow.report_id),
            },
            "terms": [t.to_dict() for t in terms],
            "items": [
                {
                    "settlement_id": _hex(it.settlement_id),
                    "terms_hash": _hex(it.terms_hash),
                    "decision": int(it.decision),
                }
                for it in items
            ],
            "timestamp_s": TIMESTAMP_S,
            "signing_key_indexes": [PRIVATE_KEYS.index(k) for k in SIGNING_KEYS],
            "receiver": RECEIVER,
        },
        "expected": {
            "terms_encoding": [_hex(t.encode()) for t in terms],
            "terms_hash": [_hex(t.terms_hash) for t in terms],
            "workflow_name_encoded": _hex(workflow.encoded_name),
            "config_digest": _hex(don.config_digest()),
            "config_id": don.config_id,
            "payload": _hex(encode_payload(items)),
            "workflow_execution_id": _hex(metadata.workflow_execution_id),
            "metadata": _hex(metadata.encode()),
            "forwarder_metadata": _hex(raw[45:109]),
            "raw_report": _hex(raw),
            "report_context": _hex(context),
            "report_digest": _hex(report_digest(raw, context)),
            "signatures": [_hex(s) for s in signatures],
            "signers": [don.signers[PRIVATE_KEYS.index(k)] for k in SIGNING_KEYS],
            "transmission_id": _hex(
                transmission_id(RECEIVER, metadata.workflow_execution_id, workflow.report_id)
            ),
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> int:
    VECTOR_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTOR_PATH.write_text(render())
    sys.stdout.write(f"wrote {VECTOR_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
