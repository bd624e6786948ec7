"""Every validation error is a 422 problem+json naming the field at fault, and changes nothing."""

from __future__ import annotations

import pytest

from tests.payments.conftest import FUNDED_MINOR, Ledger
from tests.payments.test_holds import hold_body, problem_type

BAD_HOLD_FIELDS = [
    ("settlement_id", "0x1234"),
    ("settlement_id", "ab" * 32),
    ("settlement_id", 5),
    ("leg_index", -1),
    ("leg_index", 256),
    ("leg_index", "1"),
    ("terms_hash", "0x" + "zz" * 32),
    ("payer_account", ""),
    ("payer_account", "has space"),
    ("payee_account", "x" * 65),
    ("currency", "usd"),
    ("currency", "USDT"),
    ("amount_minor", 0),
    ("amount_minor", -5),
    ("amount_minor", 1.5),
    ("amount_minor", "100"),
    ("amount_minor", 10**18 + 1),
    ("deadline_s", -1),
    ("deadline_s", 2**63),
    ("deadline_s", None),
]


@pytest.mark.parametrize("name", ["", "nul\x00byte", "line\nbreak", "x" * 201])
def test_a_participant_name_with_control_characters_is_refused(world: Ledger, name: str) -> None:
    """Refused on every database alike (PostgreSQL cannot store NUL in text; it was a 500 there)."""
    body = {"participant_id": "named", "name": name}
    response = world.call("POST", "/v1/participants", world.admin_key, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "name"
    fine = world.call("POST", "/v1/participants", world.admin_key, json={**body, "name": "Zoë Ltd."})
    assert fine.status_code == 201, fine.text


@pytest.mark.parametrize(("field", "value"), BAD_HOLD_FIELDS)
def test_hold_field_validation(world: Ledger, field: str, value: object) -> None:
    response = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(**{field: value}))
    assert response.status_code == 422, response.text
    body = response.json()
    assert problem_type(response) == "validation-error"
    assert body["field"] == field
    assert body["errors"][0]["field"] == field
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)


def test_missing_and_unknown_fields(world: Ledger) -> None:
    body = hold_body()
    del body["amount_minor"]
    missing = world.call("POST", "/v1/holds", world.alice_key, json=body)
    assert missing.status_code == 422 and missing.json()["field"] == "amount_minor"
    extra = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(colour="red"))
    assert extra.status_code == 422 and extra.json()["field"] == "colour"


def test_malformed_json_and_wrong_types(world: Ledger) -> None:
    broken = world.call(
        "POST",
        "/v1/holds",
        world.alice_key,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 422 and problem_type(broken) == "validation-error"
    array = world.call("POST", "/v1/holds", world.alice_key, json=[1, 2])
    assert array.status_code == 422


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/participants", {"participant_id": "-bad", "name": "x"}, "participant_id"),
        ("/v1/participants", {"participant_id": "ok", "name": ""}, "name"),
        ("/v1/accounts", {"account_id": "a1", "participant_id": "alice", "currency": "US"}, "currency"),
        (
            "/v1/accounts",
            {"account_id": "rail:USD", "participant_id": "alice", "currency": "USD"},
            "account_id",
        ),
        ("/v1/cash-in", {"account_id": "alice-usd", "amount_minor": 0}, "amount_minor"),
        ("/v1/cash-in", {"account_id": "alice-usd", "amount_minor": 5, "reference": "\u00e9"}, "reference"),
        ("/v1/credentials", {"role": "superuser"}, "role"),
        ("/v1/accounts/alice-usd/freeze", {"frozen": "yes"}, "frozen"),
    ],
)
def test_admin_body_validation(world: Ledger, path: str, body: dict[str, object], field: str) -> None:
    response = world.call("POST", path, world.admin_key, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_domain_validation_errors(world: Ledger) -> None:
    unknown_participant = world.call(
        "POST",
        "/v1/accounts",
        world.admin_key,
        json={"account_id": "z", "participant_id": "nobody", "currency": "USD"},
    )
    assert unknown_participant.status_code == 422 and unknown_participant.json()["field"] == "participant_id"
    no_pid = world.call("POST", "/v1/credentials", world.admin_key, json={"role": "participant"})
    assert no_pid.status_code == 422 and no_pid.json()["field"] == "participant_id"
    oracle_pid = world.call(
        "POST", "/v1/credentials", world.admin_key, json={"role": "oracle", "participant_id": "alice"}
    )
    assert oracle_pid.status_code == 422 and oracle_pid.json()["field"] == "participant_id"
    same = world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={"from_account": "alice-usd", "to_account": "alice-usd", "currency": "USD", "amount_minor": 1},
    )
    assert same.status_code == 422 and problem_type(same) == "same-account"
    unknown_payee = world.call(
        "POST", "/v1/holds", world.alice_key, json=hold_body(payee_account="nobody-usd")
    )
    assert unknown_payee.status_code == 422 and problem_type(unknown_payee) == "unknown-account"
    assert unknown_payee.json()["field"] == "payee_account"
    duplicate = world.call(
        "POST", "/v1/participants", world.admin_key, json={"participant_id": "alice", "name": "A"}
    )
    assert duplicate.status_code == 409 and problem_type(duplicate) == "already-exists"


def test_query_and_path_validation(world: Ledger) -> None:
    limit = world.call("GET", "/v1/holds", world.alice_key, params={"limit": 0})
    assert limit.status_code == 422 and limit.json()["field"] == "limit"
    hold_id = world.call("GET", "/v1/holds/not-a-hold", world.alice_key)
    assert hold_id.status_code == 422 and hold_id.json()["field"] == "hold_id"
    wait = world.call("GET", "/v1/events", world.oracle_key, params={"wait_s": 31})
    assert wait.status_code == 422 and wait.json()["field"] == "wait_s"
    key = world.call(
        "POST", "/v1/holds", world.alice_key, json=hold_body(), headers={"Idempotency-Key": "x" * 201}
    )
    assert key.status_code == 422 and key.json()["field"] == "Idempotency-Key"


def test_unknown_route_and_method_are_problems(world: Ledger) -> None:
    route = world.call("GET", "/v1/nothing-here", world.alice_key)
    assert route.status_code == 404 and problem_type(route) == "not-found"
    method = world.call("DELETE", "/v1/holds", world.alice_key)
    assert method.status_code == 405 and problem_type(method) == "method-not-allowed"


def test_a_query_parameter_given_twice_is_refused(world: Ledger) -> None:
    """FastAPI would keep the last value; the ledger refuses the request and names the parameter."""
    response = world.call(
        "GET", "/v1/accounts?participant_id=alice&participant_id=bob&limit=5", world.admin_key
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"].endswith("validation-error")
    assert body["field"] == "participant_id"
    assert [e["field"] for e in body["errors"]] == ["participant_id"]
    once = world.call("GET", "/v1/accounts?participant_id=alice&limit=5", world.admin_key)
    assert once.status_code == 200, once.text
