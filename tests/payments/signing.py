"""Report signing for the payments tests: a 4-node DON (f = 1) with fixed test keys."""

from __future__ import annotations

from coincurve import PrivateKey
from eth_utils.crypto import keccak

from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)
from crossdvp.settlement.terms import Decision

KEYS = tuple(bytes([i + 1]) * 32 for i in range(4))
OUTSIDER_KEY = bytes([9]) * 32


def address_of(key: bytes) -> str:
    public = PrivateKey(key).public_key.format(compressed=False)[1:]
    return "0x" + keccak(public)[-20:].hex()


DON = DonConfig(don_id=1, config_version=1, f=1, signers=tuple(address_of(k) for k in KEYS))
WORKFLOW = WorkflowIdentity(
    workflow_cid=bytes(32),
    workflow_name="crossdvp-settlement",
    workflow_owner="0x" + "11" * 20,
    report_id=b"\x00\x01",
)


def don_body(don: DonConfig = DON) -> dict[str, object]:
    return {"f": don.f, "signers": list(don.signers)}


def signed_report(
    items: list[tuple[bytes, bytes, Decision]],
    *,
    don: DonConfig = DON,
    keys: tuple[bytes, ...] = KEYS[:2],
    timestamp_s: int = 1_800_000_000,
) -> tuple[bytes, bytes, list[bytes]]:
    """(raw, context, signatures) over `items`, signed by `keys` under `don`'s derived context."""
    raw = build_report(
        [ReportItem(sid, th, d) for sid, th, d in items], timestamp_s=timestamp_s, don=don, workflow=WORKFLOW
    )
    context = report_context(don)
    return raw, context, [sign_report(raw, context, k) for k in keys]


def report_json(raw: bytes, context: bytes, signatures: list[bytes]) -> dict[str, object]:
    return {
        "report": "0x" + raw.hex(),
        "context": "0x" + context.hex(),
        "signatures": ["0x" + s.hex() for s in signatures],
    }
