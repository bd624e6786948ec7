"""Authorization: keys, roles (403) and resource visibility (404, never revealing others' accounts)."""

from __future__ import annotations

import pytest

from tests.payments.conftest import FUNDED_MINOR, Ledger
from tests.payments.test_holds import hold_body, problem_type


def test_missing_and_unknown_keys_are_401(world: Ledger) -> None:
    for key in (None, "cdp_not-a-real-key"):
        response = world.call("GET", "/v1/accounts/alice-usd", key)
        assert response.status_code == 401
        assert problem_type(response) == "unauthorized"
        assert response.json()["field"] == "Authorization"


def test_info_is_public(world: Ledger) -> None:
    body = world.call("GET", "/v1/info", None).json()
    assert body["ledger_id"] == "test-ledger"
    assert body["network"] == "payments:test-ledger"
    assert body["time_s"] == world.clock.now_ms() // 1000


def test_participant_cannot_read_another_participants_account(world: Ledger) -> None:
    theirs = world.call("GET", "/v1/accounts/alice-usd", world.bob_key)
    missing = world.call("GET", "/v1/accounts/no-such-account", world.bob_key)
    assert theirs.status_code == missing.status_code == 404
    assert problem_type(theirs) == problem_type(missing) == "account-not-found"
    assert world.call("GET", "/v1/accounts/alice-usd/statement", world.bob_key).status_code == 404
    listed = world.call("GET", "/v1/accounts", world.bob_key, params={"participant_id": "alice"}).json()
    assert listed["items"] == []
    own = world.call("GET", "/v1/accounts", world.bob_key).json()
    assert [a["account_id"] for a in own["items"]] == ["bob-usd"]
    assert world.call("GET", "/v1/participants/alice", world.bob_key).status_code == 404
    assert world.call("GET", "/v1/participants/bob", world.bob_key).status_code == 200


def test_participant_cannot_move_another_participants_money(world: Ledger) -> None:
    pay = world.call(
        "POST",
        "/v1/payments",
        world.bob_key,
        json={"from_account": "alice-usd", "to_account": "bob-usd", "currency": "USD", "amount_minor": 1},
    )
    assert pay.status_code == 404 and pay.json()["field"] == "from_account"
    hold = world.call("POST", "/v1/holds", world.bob_key, json=hold_body())
    assert hold.status_code == 404 and hold.json()["field"] == "payer_account"
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)


def test_holds_visible_to_payer_payee_and_oracle_only(world: Ledger) -> None:
    hold = world.call("POST", "/v1/holds", world.alice_key, json=hold_body()).json()
    path = f"/v1/holds/{hold['hold_id']}"
    for key in (world.alice_key, world.bob_key, world.oracle_key, world.admin_key):
        assert world.call("GET", path, key).status_code == 200
    world.admin("POST", "/v1/participants", json={"participant_id": "carol", "name": "Carol"})
    carol_key = world.admin(
        "POST", "/v1/credentials", json={"role": "participant", "participant_id": "carol"}
    )["api_key"]
    assert world.call("GET", path, carol_key).status_code == 404
    assert world.call("GET", "/v1/holds", carol_key).json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [
        ("POST", "/v1/participants", "alice", {"participant_id": "x", "name": "X"}),
        ("POST", "/v1/accounts", "alice", {"account_id": "x", "participant_id": "alice", "currency": "USD"}),
        ("POST", "/v1/cash-in", "alice", {"account_id": "alice-usd", "amount_minor": 5}),
        ("POST", "/v1/cash-out", "oracle", {"account_id": "alice-usd", "amount_minor": 5}),
        ("POST", "/v1/credentials", "oracle", {"role": "admin"}),
        ("POST", "/v1/accounts/alice-usd/freeze", "alice", {"frozen": True}),
        ("PUT", "/v1/don-configs/1/1", "oracle", {"f": 1, "signers": ["0x" + "11" * 20] * 4}),
        ("GET", "/v1/events", "alice", None),
        ("GET", "/v1/events/stream", "bob", None),
        ("GET", "/v1/accounts/alice-usd", "oracle", None),
        ("POST", "/v1/holds", "oracle", hold_body()),
        (
            "POST",
            "/v1/payments",
            "oracle",
            {"from_account": "alice-usd", "to_account": "bob-usd", "currency": "USD", "amount_minor": 1},
        ),
    ],
)
def test_wrong_role_is_403(world: Ledger, method: str, path: str, role: str, body: object) -> None:
    key = {"alice": world.alice_key, "bob": world.bob_key, "oracle": world.oracle_key}[role]
    response = world.call(method, path, key, json=body)
    assert response.status_code == 403, response.text
    assert problem_type(response) == "forbidden"
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)


def test_keys_are_stored_only_as_hashes(world: Ledger) -> None:
    from sqlalchemy import select

    from crossdvp.payments.models import credentials

    with world.store.read() as conn:
        stored = [row.key_hash for row in conn.execute(select(credentials))]
    assert world.alice_key not in stored and all(len(h) == 64 for h in stored)
