"""Holds, payments, balances and reclaim — the ledger's core behaviour, on both backends."""

from __future__ import annotations

from tests.payments.conftest import FUNDED_MINOR, GRACE_S, START_S, Ledger

SID = "0x" + "ab" * 32
TERMS = "0x" + "cd" * 32


def hold_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "settlement_id": SID,
        "leg_index": 1,
        "terms_hash": TERMS,
        "payer_account": "alice-usd",
        "payee_account": "bob-usd",
        "currency": "USD",
        "amount_minor": 250_000,
        "deadline_s": START_S + 100,
    }
    body.update(overrides)
    return body


def problem_type(response) -> str:  # type: ignore[no-untyped-def]
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["type"]).removeprefix("urn:crossdvp:payments:")


def test_hold_moves_available_to_held(world: Ledger) -> None:
    response = world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    assert response.status_code == 201, response.text
    hold = response.json()
    assert hold["state"] == "held"
    assert hold["hold_id"] == f"hold-{'ab' * 32}-1"
    assert hold["placed_at_s"] == START_S
    assert world.balance("alice-usd") == (FUNDED_MINOR - 250_000, 250_000)
    assert world.balance("bob-usd") == (0, 0)


def test_hold_allowed_at_deadline_refused_after(world: Ledger) -> None:
    world.clock.set_s(START_S + 100)
    ok = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(deadline_s=START_S + 100))
    assert ok.status_code == 201, ok.text
    world.clock.set_s(START_S + 101)
    late = world.call(
        "POST", "/v1/holds", world.alice_key, json=hold_body(leg_index=2, deadline_s=START_S + 100)
    )
    assert late.status_code == 422
    assert problem_type(late) == "deadline-passed"
    assert late.json()["field"] == "deadline_s"
    assert world.balance("alice-usd") == (FUNDED_MINOR - 250_000, 250_000)


def test_insufficient_funds(world: Ledger) -> None:
    response = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(amount_minor=FUNDED_MINOR + 1))
    assert response.status_code == 409
    assert problem_type(response) == "insufficient-funds"
    assert response.json()["field"] == "amount_minor"
    pay = world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={
            "from_account": "alice-usd",
            "to_account": "bob-usd",
            "currency": "USD",
            "amount_minor": FUNDED_MINOR + 1,
        },
    )
    assert pay.status_code == 409 and problem_type(pay) == "insufficient-funds"
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)


def test_held_funds_are_not_available(world: Ledger) -> None:
    assert (
        world.call(
            "POST", "/v1/holds", world.alice_key, json=hold_body(amount_minor=FUNDED_MINOR)
        ).status_code
        == 201
    )
    pay = world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={"from_account": "alice-usd", "to_account": "bob-usd", "currency": "USD", "amount_minor": 1},
    )
    assert pay.status_code == 409 and problem_type(pay) == "insufficient-funds"


def test_duplicate_leg_is_refused(world: Ledger) -> None:
    assert world.call("POST", "/v1/holds", world.alice_key, json=hold_body()).status_code == 201
    again = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(amount_minor=1))
    assert again.status_code == 409 and problem_type(again) == "hold-exists"


def test_frozen_accounts(world: Ledger) -> None:
    world.admin("POST", "/v1/accounts/alice-usd/freeze", json={"frozen": True})
    hold = world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    assert hold.status_code == 409 and problem_type(hold) == "account-frozen"
    assert hold.json()["field"] == "payer_account"
    cash = world.call(
        "POST", "/v1/cash-in", world.admin_key, json={"account_id": "alice-usd", "amount_minor": 5}
    )
    assert cash.status_code == 409 and problem_type(cash) == "account-frozen"
    world.admin("POST", "/v1/accounts/alice-usd/freeze", json={"frozen": False})
    world.admin("POST", "/v1/accounts/bob-usd/freeze", json={"frozen": True})
    to_frozen = world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    assert to_frozen.status_code == 409 and to_frozen.json()["field"] == "payee_account"
    pay = world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={"from_account": "alice-usd", "to_account": "bob-usd", "currency": "USD", "amount_minor": 1},
    )
    assert pay.status_code == 409 and pay.json()["field"] == "to_account"
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)


def test_payment_and_statement(world: Ledger) -> None:
    pay = world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={
            "from_account": "alice-usd",
            "to_account": "bob-usd",
            "currency": "USD",
            "amount_minor": 700,
            "reference": "inv-1",
        },
    )
    assert pay.status_code == 201, pay.text
    assert world.balance("bob-usd") == (700, 0)
    first = world.call("GET", "/v1/accounts/alice-usd/statement", world.alice_key, params={"limit": 1}).json()
    assert [line["kind"] for line in first["items"]] == ["cash_in"]
    rest = world.call(
        "GET", "/v1/accounts/alice-usd/statement", world.alice_key, params={"after": first["next_after"]}
    ).json()
    assert [(line["kind"], line["amount_minor"]) for line in rest["items"]] == [("payment", -700)]
    assert rest["next_after"] is None


def test_cash_out_and_currency_mismatch(world: Ledger) -> None:
    out = world.call(
        "POST", "/v1/cash-out", world.admin_key, json={"account_id": "alice-usd", "amount_minor": 1000}
    )
    assert out.status_code == 201 and out.json()["to_account"] == "rail:USD"
    assert world.balance("alice-usd") == (FUNDED_MINOR - 1000, 0)
    too_much = world.call(
        "POST",
        "/v1/cash-out",
        world.admin_key,
        json={"account_id": "alice-usd", "amount_minor": FUNDED_MINOR},
    )
    assert too_much.status_code == 409 and problem_type(too_much) == "insufficient-funds"
    eur = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(payer_account="alice-eur"))
    assert eur.status_code == 422 and problem_type(eur) == "currency-mismatch"
    assert eur.json()["field"] == "currency"


def test_reclaim_timing(world: Ledger) -> None:
    hold = world.call("POST", "/v1/holds", world.alice_key, json=hold_body()).json()
    path = f"/v1/holds/{hold['hold_id']}/reclaim"
    world.clock.set_s(START_S + 100 + GRACE_S)  # deadline + grace: still too early
    early = world.call("POST", path, world.alice_key)
    assert early.status_code == 409 and problem_type(early) == "reclaim-too-early"
    assert early.json()["available_at_s"] == START_S + 100 + GRACE_S + 1
    world.clock.set_s(START_S + 100 + GRACE_S + 1)
    not_payer = world.call("POST", path, world.bob_key)
    assert not_payer.status_code == 403 and problem_type(not_payer) == "not-payer"
    done = world.call("POST", path, world.alice_key)
    assert done.status_code == 200 and done.json()["state"] == "reclaimed"
    assert world.balance("alice-usd") == (FUNDED_MINOR, 0)
    again = world.call("POST", path, world.alice_key)
    assert again.status_code == 409 and problem_type(again) == "not-reclaimable"


def test_idempotent_replay_and_conflict(world: Ledger) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(), headers=headers)
    replay = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(), headers=headers)
    assert first.status_code == replay.status_code == 201
    assert first.json() == replay.json()
    assert world.balance("alice-usd") == (FUNDED_MINOR - 250_000, 250_000)
    other = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(leg_index=3), headers=headers)
    assert other.status_code == 409 and problem_type(other) == "idempotency-key-reused"
    # keys are scoped per credential: bob may use the same key string for his own request
    bob = world.call(
        "POST",
        "/v1/payments",
        world.bob_key,
        json={"from_account": "bob-usd", "to_account": "alice-usd", "currency": "USD", "amount_minor": 1},
        headers=headers,
    )
    assert bob.status_code == 409 and problem_type(bob) == "insufficient-funds"


def test_pagination_of_holds(world: Ledger) -> None:
    for leg in range(3):
        assert (
            world.call(
                "POST", "/v1/holds", world.alice_key, json=hold_body(leg_index=leg, amount_minor=10)
            ).status_code
            == 201
        )
    page = world.call("GET", "/v1/holds", world.alice_key, params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_after"]
    rest = world.call(
        "GET", "/v1/holds", world.alice_key, params={"limit": 2, "after": page["next_after"]}
    ).json()
    assert len(rest["items"]) == 1 and rest["next_after"] is None
    by_settlement = world.call(
        "GET", "/v1/holds", world.oracle_key, params={"settlement_id": SID.upper().replace("0X", "0x")}
    ).json()
    assert len(by_settlement["items"]) == 3


def test_batch_places_each_hold_on_its_own(world: Ledger) -> None:
    batch = {
        "holds": [
            hold_body(leg_index=0, amount_minor=600_000),
            hold_body(leg_index=1, amount_minor=600_000),  # insufficient after the first
            hold_body(leg_index=2, amount_minor=400_000),
            hold_body(leg_index=0, amount_minor=1),  # duplicate leg within the batch
        ]
    }
    response = world.call("POST", "/v1/holds/batch", world.alice_key, json=batch)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 409, 201, 409]
    assert results[1]["problem"]["type"].endswith("insufficient-funds")
    assert results[3]["problem"]["type"].endswith("hold-exists")
    assert world.balance("alice-usd") == (0, FUNDED_MINOR)
    events = world.call("GET", "/v1/events", world.oracle_key).json()["events"]
    assert [e["leg_index"] for e in events] == [0, 2]
    with world.store.read() as conn:
        from crossdvp.payments.journal import verify_journal

        assert verify_journal(conn).ok


def _statements_for(world: Ledger, holds: int, first_leg: int) -> int:
    """SQL statements the ledger runs to place a batch of `holds` holds."""
    from sqlalchemy import event

    count = 0

    def counter(*_: object) -> None:
        nonlocal count
        count += 1

    batch = {
        "holds": [hold_body(leg_index=first_leg + i, amount_minor=1_000) for i in range(holds)],
    }
    event.listen(world.store.engine, "before_cursor_execute", counter)
    try:
        response = world.call("POST", "/v1/holds/batch", world.alice_key, json=batch)
    finally:
        event.remove(world.store.engine, "before_cursor_execute", counter)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [201] * holds
    return count


def test_a_batch_of_holds_costs_a_fixed_number_of_statements(world: Ledger) -> None:
    _statements_for(world, 1, first_leg=0)  # the first call also looks up the caller's key
    one = _statements_for(world, 1, first_leg=1)
    many = _statements_for(world, 60, first_leg=2)
    assert many == one, (one, many)
    assert world.balance("alice-usd") == (FUNDED_MINOR - 62_000, 62_000)
