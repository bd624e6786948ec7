"""The committed golden vectors (vectors/report_v1.json) still describe what the code produces.

Recomputes every expected value from the vector's own inputs and compares it to the committed bytes,
so an encoding change fails here. Regenerate with `python -m tests.settlement.make_vectors` only for
intended changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from crossdvp.settlement import (
    Decision,
    DonConfig,
    ReportItem,
    Terms,
    WorkflowIdentity,
    build_report,
    decode_report,
    encode_payload,
    report_context,
    report_digest,
    sign_report,
    transmission_id,
    verify_report,
)
from tests.settlement import make_vectors


@pytest.fixture(scope="module")
def vector() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(make_vectors.VECTOR_PATH.read_text())
    return data


def _b(hex_str: str) -> bytes:
    assert hex_str.startswith("0x") and hex_str == hex_str.lower()
    return bytes.fromhex(hex_str[2:])


def _inputs(v: dict[str, Any]) -> tuple[DonConfig, WorkflowIdentity, list[Terms], list[ReportItem]]:
    i = v["inputs"]
    don = DonConfig(i["don"]["don_id"], i["don"]["config_version"], i["don"]["f"], tuple(i["don"]["signers"]))
    w = i["workflow"]
    workflow = WorkflowIdentity(
        _b(w["workflow_cid"]), w["workflow_name"], w["workflow_owner"], _b(w["report_id"])
    )
    terms = [Terms.from_dict(t) for t in i["terms"]]
    items = [
        ReportItem(_b(it["settlement_id"]), _b(it["terms_hash"]), Decision(it["decision"]))
        for it in i["items"]
    ]
    return don, workflow, terms, items


def test_inputs_are_the_fixed_ones(vector: dict[str, Any]) -> None:
    i = vector["inputs"]
    assert i["private_keys"] == ["0x" + f"{n:064x}" for n in range(1, 5)]
    assert i["don"]["signers"] == [Account.from_key(_b(k)).address.lower() for k in i["private_keys"]]
    assert (i["don"]["don_id"], i["don"]["config_version"], i["don"]["f"]) == (1, 1, 1)
    assert len(i["terms"][1]["legs"]) == 3 and len({leg["network"] for leg in i["terms"][1]["legs"]}) == 3


def test_terms_encoding_and_hash(vector: dict[str, Any]) -> None:
    _, _, terms, items = _inputs(vector)
    e = vector["expected"]
    assert [t.encode() for t in terms] == [_b(x) for x in e["terms_encoding"]]
    assert [t.terms_hash for t in terms] == [_b(x) for x in e["terms_hash"]]
    assert [keccak(_b(x)) for x in e["terms_encoding"]] == [_b(x) for x in e["terms_hash"]]
    assert [it.terms_hash for it in items] == [t.terms_hash for t in terms]
    assert [Terms.decode(_b(x)) for x in e["terms_encoding"]] == terms


def test_report_bytes(vector: dict[str, Any]) -> None:
    don, workflow, _, items = _inputs(vector)
    e = vector["expected"]
    raw = build_report(items, timestamp_s=vector["inputs"]["timestamp_s"], don=don, workflow=workflow)
    payload = _b(e["payload"])
    assert encode_payload(items) == payload
    assert raw == _b(e["raw_report"]) == _b(e["metadata"]) + payload
    assert len(_b(e["metadata"])) == 109
    assert _b(e["workflow_execution_id"]) == keccak(payload) == raw[1:33]
    assert _b(e["forwarder_metadata"]) == raw[45:109]
    assert _b(e["workflow_name_encoded"]) == workflow.encoded_name
    assert workflow.encoded_name == hashlib.sha256(b"crossdvp-settlement").hexdigest()[:10].encode()
    assert e["config_id"] == don.config_id == int.from_bytes(raw[37:45], "big")
    assert _b(e["config_digest"]) == don.config_digest()
    meta, decoded = decode_report(raw)
    assert decoded == tuple(items) and meta.timestamp == vector["inputs"]["timestamp_s"]


def test_context_digest_and_signatures(vector: dict[str, Any]) -> None:
    don, _, _, _ = _inputs(vector)
    i, e = vector["inputs"], vector["expected"]
    raw, context = _b(e["raw_report"]), _b(e["report_context"])
    assert report_context(don) == context == _b(e["config_digest"]) + bytes(64)
    digest = _b(e["report_digest"])
    assert report_digest(raw, context) == digest == keccak(keccak(raw) + context)
    keys = [_b(i["private_keys"][n]) for n in i["signing_key_indexes"]]
    sigs = [_b(s) for s in e["signatures"]]
    assert [sign_report(raw, context, k) for k in keys] == sigs
    # Independently of our code: what ecrecover(digest, v + 27, r, s) returns.
    recovered = [Account._recover_hash(digest, signature=s[:64] + bytes([s[64] + 27])).lower() for s in sigs]
    assert recovered == e["signers"]
    assert verify_report(raw, context, sigs, don) == tuple(e["signers"])
    assert transmission_id(i["receiver"], _b(e["workflow_execution_id"]), raw[107:109]) == _b(
        e["transmission_id"]
    )


def test_committed_file_is_what_the_generator_writes(vector: dict[str, Any]) -> None:
    # Also catches a hand-edited JSON (or docs drifting from the generator).
    assert make_vectors.render() == make_vectors.VECTOR_PATH.read_text()
