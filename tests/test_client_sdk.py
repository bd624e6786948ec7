"""The SDK (`crossdvp.client.Desk`) on a real devnet: a DvP end to end with its evidence, and every
validation error — each with a message naming the field, and nothing registered or locked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from crossdvp.client import (
    Desk,
    InvalidOrder,
    LockError,
    RegistrationError,
    Stage,
    format_amount,
    parse_amount,
)
from crossdvp.client.config import NodeEndpoint
from crossdvp.devnet import DevnetState
from crossdvp.devnet.keyfiles import load_key, read_secret
from crossdvp.process import free_port
from crossdvp.settlement.terms import Decision

SHARES = 10**18
CASH = 10_000  # USD 100.00


def _order(desk: Desk, **override: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "asset_amount": SHARES,
        "cash_amount": CASH,
        "currency": "USD",
        "buyer": "buyer",
        "seller": "seller",
        "deadline_s": desk.deadline_in(60),
    }
    order.update(override)
    return order


@pytest.mark.integration
def test_a_dvp_settles_with_evidence_from_both_ledgers(desk: Desk) -> None:
    terms = desk.propose(**_order(desk))
    assert len(terms.legs) == 2 and terms.legs[0].network == desk.chain_network
    seen: list[Stage] = []
    outcome = desk.settle(terms, buyer="buyer", seller="seller", on_progress=lambda s: seen.append(s.stage))
    assert outcome.decision is Decision.SETTLE
    assert seen[-1] is Stage.FINAL and (Stage.DECIDED in seen or Stage.DELIVERED in seen)
    status = outcome.status
    chain_leg, cash_leg = status.legs
    assert (
        chain_leg.state == "settled"
        and chain_leg.lock_ref is not None
        and chain_leg.lock_ref.startswith("0x")
    )
    assert cash_leg.state == "settled" and cash_leg.lock_ref == f"hold-{terms.settlement_id.hex()}-1"
    assert status.report_execution_id is not None and len(status.signers) == 2  # exactly f+1
    assert status.forwarder_tx is not None
    # The forwarder's own log names the same transaction (what the desk shows before a node has it).
    assert desk._forwarder_tx(status.report_execution_id) == status.forwarder_tx
    assert status.ledger_report is not None and "settle applied" in status.ledger_report
    before, after = outcome.balances_before, outcome.balances_after
    assert after["buyer"].shares_minor - before["buyer"].shares_minor == SHARES
    assert after["seller"].shares_minor - before["seller"].shares_minor == -SHARES
    assert after["seller"].cash["USD"][0] - before["seller"].cash["USD"][0] == CASH
    assert after["buyer"].cash["USD"][0] - before["buyer"].cash["USD"][0] == -CASH
    # Any desk can read the same outcome from the nodes and the ledgers alone.
    with Desk(desk.config) as other:
        again = other.status(terms.settlement_id)
    assert again.final and again.decision is Decision.SETTLE and again.terms == terms


@pytest.mark.integration
def test_a_buyer_who_never_holds_gets_an_abort_and_the_seller_his_shares_back(desk: Desk) -> None:
    terms = desk.propose(**_order(desk, deadline_s=desk.deadline_in(6)))
    outcome = desk.settle(terms, buyer="buyer", seller="seller", hold=False)
    assert outcome.decision is Decision.ABORT
    chain_leg, cash_leg = outcome.status.legs
    assert chain_leg.state == "aborted" and cash_leg.state == "none"
    assert all(outcome.status.delivered.values())
    assert outcome.status.decided_at_s == terms.deadline_s
    for name in ("buyer", "seller"):
        assert outcome.balances_after[name].shares_minor == outcome.balances_before[name].shares_minor
    # Past the deadline each ledger refuses a lock by its own clock, with its own reason.
    with pytest.raises(LockError, match="the ledger refused the hold of leg 1"):
        desk.place_hold(terms, "buyer")
    with pytest.raises(LockError, match="the escrow refused the lock of leg 0"):
        desk.lock_asset(terms, "seller")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"buyer": "mallory"}, "buyer: unknown party 'mallory'"),
        ({"seller": "nobody"}, "seller: unknown party 'nobody'"),
        ({"buyer": "seller"}, "same party"),
        ({"asset_amount": 0}, "asset amount must be positive"),
        ({"cash_amount": -5}, "cash amount must be positive"),
        ({"cash_amount": 10.5}, "cash amount must be an integer"),
        ({"asset_amount": "10"}, "asset amount must be an integer"),
        ({"currency": "EUR"}, "has no EUR account"),
        ({"currency": "usd"}, "ISO 4217"),
        ({"asset_amount": 10**27}, "seller: insufficient fund shares"),
        ({"asset_amount": 2**96}, "exceeds the maximum"),
        ({"cash_amount": 10**12}, "buyer: insufficient cash"),
    ],
)
def test_invalid_orders_are_refused_before_anything_happens(
    desk: Desk, untouched: Callable[[], None], override: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOrder, match=message.replace("(", r"\(")):
        desk.propose(**_order(desk, **override))
    untouched()


@pytest.mark.integration
@pytest.mark.parametrize("offset_s", [-3600, 0, 2])
def test_a_deadline_not_ahead_of_the_ledgers_clocks_is_refused(
    desk: Desk, untouched: Callable[[], None], offset_s: int
) -> None:
    with pytest.raises(InvalidOrder, match=r"deadline \d+ is not at least 5s in the future"):
        desk.propose(**_order(desk, deadline_s=desk.now_s() + offset_s))
    untouched()


@pytest.mark.integration
def test_a_party_without_kyc_is_refused(
    devnet: DevnetState, desk: Desk, untouched: Callable[[], None]
) -> None:
    assert devnet.chain is not None
    admin = desk.evm.account(load_key(devnet.chain.admin_keystore, read_secret(devnet.password_file)))
    buyer = devnet.parties["buyer"].chain_address
    desk.contracts.registry.set_blocked(admin, buyer, True)
    try:
        with pytest.raises(
            InvalidOrder, match=f"buyer: party buyer's chain address {buyer} is not KYC-allowed"
        ):
            desk.propose(**_order(desk))
    finally:
        desk.contracts.registry.set_blocked(admin, buyer, False)
    untouched()


@pytest.mark.integration
def test_registration_with_too_few_nodes_fails_and_locks_nothing(
    desk: Desk, untouched: Callable[[], None]
) -> None:
    terms = desk.propose(**_order(desk))
    dead = tuple(NodeEndpoint(n.name, f"http://127.0.0.1:{free_port()}") for n in desk.config.nodes)
    with (
        Desk(replace(desk.config, nodes=dead)) as cut_off,
        pytest.raises(RegistrationError, match="only 0 of 4 nodes accepted the terms, 2 are needed"),
    ):
        cut_off.register(terms)
    untouched()


@pytest.mark.integration
def test_a_settlement_nobody_knows_is_unknown(desk: Desk) -> None:
    status = desk.status(b"\x42" * 32)
    assert status.stage is Stage.UNKNOWN and status.terms is None and status.nodes_knowing == 0
    assert status.nodes_answering == 4


@pytest.mark.parametrize(
    ("text", "decimals", "minor"),
    [("1", 18, 10**18), ("2.5", 18, 25 * 10**17), ("1000.50", 2, 100_050), ("0.01", 2, 1), (" 7 ", 0, 7)],
)
def test_amounts_convert_exactly(text: str, decimals: int, minor: int) -> None:
    assert parse_amount(text, decimals, field="amount") == minor


@pytest.mark.parametrize(
    ("text", "decimals", "message"),
    [
        ("abc", 2, "amount must be a number"),
        ("", 2, "amount must be a number"),
        ("NaN", 2, "finite"),
        ("0", 2, "must be positive"),
        ("-1", 2, "must be positive"),
        ("1.001", 2, "more than 2 decimal places"),
        ("0.5", 0, "more than 0 decimal places"),
    ],
)
def test_bad_amounts_are_refused_with_the_field_named(text: str, decimals: int, message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        parse_amount(text, decimals, field="amount")


def test_amounts_format_for_people() -> None:
    assert format_amount(100_050, 2) == "1,000.50"
    assert format_amount(10**18, 18) == "1"
    assert format_amount(25 * 10**17, 18) == "2.5"
    assert format_amount(-5, 2) == "-0.05"
