"""Reports: DON configs, signature verification failures, application, skips and double delivery."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from crossdvp.settlement.report import DonConfig, report_context, sign_report
from crossdvp.settlement.terms import Decision
from tests.payments.conftest import FUNDED_MINOR, Ledger
from tests.payments.signing import DON, KEYS, OUTSIDER_KEY, address_of, don_body, report_json, signed_report
from tests.payments.test_holds import SID, TERMS, hold_body, problem_type

SID_B = bytes.fromhex(SID[2:])
TERMS_B = bytes.fromhex(TERMS[2:])


@pytest.fixture
def held(world: Ledger) -> Ledger:
    """alice holds 250,000 for bob on leg 1 of SID; the DON config is set."""
    world.admin("PUT", "/v1/don-configs/1/1", json=don_body())
    assert world.call("POST", "/v1/holds", world.alice_key, json=hold_body()).status_code == 201
    return world


def submit(world: Ledger, key: str, raw: bytes, context: bytes, sigs: list[bytes]):  # type: ignore[no-untyped-def]
    return world.call("POST", "/v1/reports", key, json=report_json(raw, context, sigs))


def test_settle_moves_held_funds_to_payee(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    response = submit(held, held.oracle_key, raw, context, sigs)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["items"][0]["outcome"] == "applied"
    assert record["items"][0]["holds"] == [
        {"hold_id": f"hold-{'ab' * 32}-1", "leg_index": 1, "outcome": "settled", "reason": None}
    ]
    assert record["signers"] == [address_of(k) for k in KEYS[:2]]
    assert held.balance("alice-usd") == (FUNDED_MINOR - 250_000, 0)
    assert held.balance("bob-usd") == (250_000, 0)
    stored = held.call("GET", f"/v1/reports/{record['workflow_execution_id']}", held.bob_key)
    assert stored.json() == record
    assert stored.json()["report"] == "0x" + raw.hex()


def test_abort_releases_to_payer(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.ABORT)])
    assert submit(held, held.alice_key, raw, context, sigs).status_code == 200  # any role may deliver
    assert held.balance("alice-usd") == (FUNDED_MINOR, 0)
    hold = held.call("GET", f"/v1/holds/hold-{'ab' * 32}-1", held.alice_key).json()
    assert hold["state"] == "released" and hold["workflow_execution_id"]


def test_same_report_twice_changes_nothing(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    first = submit(held, held.oracle_key, raw, context, sigs)
    other_signers = [sign_report(raw, context, k) for k in KEYS[2:]]
    second = submit(held, held.bob_key, raw, context, other_signers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert held.balance("bob-usd") == (250_000, 0)


def test_decision_for_a_final_hold_is_skipped(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    submit(held, held.oracle_key, raw, context, sigs)
    raw2, context2, sigs2 = signed_report([(SID_B, TERMS_B, Decision.ABORT)], timestamp_s=1_800_000_500)
    record = submit(held, held.oracle_key, raw2, context2, sigs2).json()
    assert record["items"][0]["outcome"] == "skipped"
    assert record["items"][0]["reason"] == "already-final"
    assert held.balance("bob-usd") == (250_000, 0)


def test_bad_items_are_skipped_without_failing_the_batch(held: Ledger) -> None:
    other_sid = bytes(range(32))
    assert (
        held.call(
            "POST",
            "/v1/holds",
            held.alice_key,
            json=hold_body(settlement_id="0x" + other_sid.hex(), leg_index=0, amount_minor=5),
        ).status_code
        == 201
    )
    raw, context, sigs = signed_report(
        [
            (b"\x07" * 32, TERMS_B, Decision.SETTLE),  # unknown settlement
            (other_sid, b"\x01" * 32, Decision.SETTLE),  # terms hash mismatch
            (SID_B, TERMS_B, Decision.SETTLE),  # applies
        ]
    )
    record = submit(held, held.oracle_key, raw, context, sigs).json()
    assert [(i["outcome"], i["reason"]) for i in record["items"]] == [
        ("skipped", "unknown-settlement"),
        ("skipped", "terms-hash-mismatch"),
        ("applied", None),
    ]
    assert held.balance("bob-usd") == (250_000, 0)
    assert held.balance("alice-usd") == (FUNDED_MINOR - 250_005, 5)


def _expect(held: Ledger, response, code: str, field: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert problem_type(response) == code
    assert response.json()["field"] == field
    assert held.balance("alice-usd") == (FUNDED_MINOR - 250_000, 250_000)


def test_too_few_signatures(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)], keys=KEYS[:1])
    _expect(held, submit(held, held.oracle_key, raw, context, sigs), "wrong-signature-count", "signatures")


def test_unknown_signer(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)], keys=(KEYS[0], OUTSIDER_KEY))
    _expect(held, submit(held, held.oracle_key, raw, context, sigs), "unknown-signer", "signatures")


def test_duplicate_signer(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)], keys=(KEYS[0], KEYS[0]))
    _expect(held, submit(held, held.oracle_key, raw, context, sigs), "duplicate-signer", "signatures")


def test_malformed_signature(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    bad = [sigs[0], sigs[1][:64] + b"\x1b"]
    _expect(held, submit(held, held.oracle_key, raw, context, bad), "malformed-signature", "signatures")


def test_tampered_payload(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.ABORT)])
    # Flip the decision byte and fix up the execution id so the report still decodes: only the
    # signatures can catch it.
    from eth_utils.crypto import keccak

    payload = bytearray(raw[109:])
    payload[-1] = 1
    metadata = bytearray(raw[:109])
    metadata[1:33] = keccak(bytes(payload))
    tampered = bytes(metadata) + bytes(payload)
    _expect(held, submit(held, held.oracle_key, tampered, context, sigs), "unknown-signer", "signatures")
    inconsistent = raw[:-1] + b"\x01"  # execution id no longer keccak(payload)
    _expect(held, submit(held, held.oracle_key, inconsistent, context, sigs), "malformed-report", "report")


def test_wrong_config_version(held: Ledger) -> None:
    don_v2 = DonConfig(don_id=1, config_version=2, f=1, signers=DON.signers)
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)], don=don_v2)
    _expect(held, submit(held, held.oracle_key, raw, context, sigs), "unknown-don-config", "report")
    # signed for version 1's metadata but with version 2's context
    raw1, _, _ = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    ctx2 = report_context(don_v2)
    sigs2 = [sign_report(raw1, ctx2, k) for k in KEYS[:2]]
    _expect(held, submit(held, held.oracle_key, raw1, ctx2, sigs2), "wrong-don-config", "context")


def test_cleared_config_refuses_reports(held: Ledger) -> None:
    cleared = held.admin("DELETE", "/v1/don-configs/1/1")
    assert cleared["active"] is False
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    _expect(held, submit(held, held.oracle_key, raw, context, sigs), "unknown-don-config", "report")
    configs = held.call("GET", "/v1/don-configs", held.oracle_key).json()
    assert [(c["don_id"], c["config_version"], c["active"]) for c in configs] == [(1, 1, False)]


def test_malformed_report_bytes(held: Ledger) -> None:
    _expect(held, submit(held, held.oracle_key, b"\x01" * 50, b"", []), "malformed-report", "report")


def test_invalid_don_config_is_rejected(world: Ledger) -> None:
    response = world.call(
        "PUT", "/v1/don-configs/1/1", world.admin_key, json={"f": 2, "signers": list(DON.signers)}
    )
    assert response.status_code == 422 and problem_type(response) == "invalid-don-config"
    assert response.json()["field"] == "signers"


def test_unknown_report_is_404(world: Ledger) -> None:
    response = world.call("GET", "/v1/reports/0x" + "00" * 32, world.oracle_key)
    assert response.status_code == 404 and problem_type(response) == "report-not-found"


def test_report_idempotency_key_reuse_with_other_body_is_409(held: Ledger) -> None:
    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    headers = {"Idempotency-Key": "r-1"}
    ok = held.call(
        "POST", "/v1/reports", held.oracle_key, json=report_json(raw, context, sigs), headers=headers
    )
    assert ok.status_code == 200
    raw2, context2, sigs2 = signed_report([(SID_B, TERMS_B, Decision.ABORT)])
    reused = held.call(
        "POST", "/v1/reports", held.oracle_key, json=report_json(raw2, context2, sigs2), headers=headers
    )
    assert reused.status_code == 409 and problem_type(reused) == "idempotency-key-reused"


def test_a_report_and_its_idempotency_key_are_written_in_one_transaction(held: Ledger) -> None:
    # Every write transaction starts by reading the ledger head (and locking it): count those.
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT LEDGER_HEAD."):
            writes.append(statement)

    raw, context, sigs = signed_report([(SID_B, TERMS_B, Decision.SETTLE)])
    headers = {"Idempotency-Key": "r-one-tx"}
    event.listen(held.store.engine, "before_cursor_execute", count)
    try:
        first = held.call(
            "POST", "/v1/reports", held.oracle_key, json=report_json(raw, context, sigs), headers=headers
        )
        assert first.status_code == 200, first.text
        assert len(writes) == 1, "the key was recorded in a second write transaction"
        again = held.call(
            "POST", "/v1/reports", held.oracle_key, json=report_json(raw, context, sigs), headers=headers
        )
    finally:
        event.remove(held.store.engine, "before_cursor_execute", count)
    assert again.status_code == 200 and again.json() == first.json()
    assert len(writes) == 2
    raw2, context2, sigs2 = signed_report([(SID_B, TERMS_B, Decision.ABORT)])
    reused = held.call(
        "POST", "/v1/reports", held.oracle_key, json=report_json(raw2, context2, sigs2), headers=headers
    )
    assert reused.status_code == 409 and problem_type(reused) == "idempotency-key-reused"
