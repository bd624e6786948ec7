"""The console's aggregation over fakes: statuses come from the ledgers, names from the config."""

from __future__ import annotations

from crossdvp.console.aggregate import build_detail, build_rows, filter_rows
from crossdvp.console.don import build_don
from crossdvp.console.ledgers import build_ledgers
from tests.console.fakes import (
    BUYER,
    CHAIN,
    LEDGER,
    SELLER,
    SID,
    SIGNERS,
    chain_facts,
    hold,
    ledger_facts,
    locked_event,
    make_config,
    outcome_event,
    probe,
    terms_view,
)

CONFIG = make_config()


def _rows(views: list[dict], chain, ledger, *, nodes: int = 4):
    probes = [probe(n, views) for n in CONFIG.nodes[:nodes]]
    return build_rows(CONFIG, probes, chain, ledger)


def _detail(view: dict, chain, ledger):
    return build_detail(CONFIG, [(n.name, view) for n in CONFIG.nodes], chain, ledger)


def test_registered_settlement_shows_amounts_with_decimals_and_party_names() -> None:
    (row,) = _rows([terms_view()], chain_facts(), ledger_facts())
    assert row.status == "registered"
    assert row.known_by == 4
    chain_leg, ledger_leg = row.legs
    assert chain_leg.amount.text == "25.00 OUSG"
    assert ledger_leg.amount.text == "25,123.45 USD"
    assert (chain_leg.payer.label, chain_leg.payee.label) == ("seller", "buyer")
    assert (ledger_leg.payer.label, ledger_leg.payee.label) == ("buyer", "seller")
    assert {leg.state for leg in row.legs} == {"awaiting lock"}


def test_one_lock_is_locking_both_are_locked() -> None:
    (row,) = _rows([terms_view()], chain_facts(locked_event()), ledger_facts())
    assert row.status == "locking"
    assert row.legs[0].lock is not None and row.legs[0].lock.block_number == 41
    (row,) = _rows([terms_view()], chain_facts(locked_event()), ledger_facts(hold("held")))
    assert row.status == "locked"
    assert row.legs[1].lock is not None and row.legs[1].lock.hold_id == f"hold-{SID[2:]}-1"


def test_a_lock_that_does_not_match_the_terms_is_flagged() -> None:
    (row,) = _rows([terms_view()], chain_facts(locked_event(amount=1)), ledger_facts(hold("held", amount=7)))
    assert [leg.state for leg in row.legs] == ["lock mismatch", "lock mismatch"]
    assert row.status == "locking"


def test_decided_then_signed_follow_the_nodes() -> None:
    chain, ledger = chain_facts(locked_event()), ledger_facts(hold("held"))
    (row,) = _rows([terms_view(decision="SETTLE", status="decided")], chain, ledger)
    assert (row.status, row.decision) == ("decided", "SETTLE")
    view = terms_view(
        decision="SETTLE", status="reported", signers=SIGNERS[1:3], deliveries=((CHAIN, "pending"),)
    )
    (row,) = _rows([view], chain, ledger)
    assert row.status == "signed"


def test_settled_only_when_both_ledgers_show_the_legs_final() -> None:
    view = terms_view(
        decision="SETTLE",
        status="delivered",
        signers=SIGNERS[:2],
        deliveries=((CHAIN, "delivered"), (LEDGER, "delivered")),
    )
    # The nodes say delivered, but the ledger still shows the hold: not final yet.
    (row,) = _rows(
        [view], chain_facts(locked_event(), outcome_event("settled", BUYER)), ledger_facts(hold("held"))
    )
    assert row.status == "signed"
    chain, ledger = (
        chain_facts(locked_event(), outcome_event("settled", BUYER)),
        ledger_facts(hold("settled")),
    )
    (row,) = _rows([view], chain, ledger)
    assert row.status == "settled"
    detail = _detail(view, chain, ledger)
    assert detail is not None
    assert [s.node for s in detail.signers] == ["node-0", "node-1"]
    assert [(m.outcome, m.source.label, m.target.label, m.amount.text) for m in detail.movements] == [
        ("paid", "seller", "buyer", "25.00 OUSG"),
        ("paid", "buyer", "seller", "25,123.45 USD"),
    ]
    labels = [step.label for step in detail.timeline]
    assert labels == [
        "Registered",
        f"Leg 0 locked on {CHAIN}",
        f"Leg 1 locked on {LEDGER}",
        "Decided SETTLE",
        "Report signed",
        f"Delivered to {CHAIN}",
        f"Delivered to {LEDGER}",
        "Final: SETTLED",
    ]
    assert all(step.done and not step.failed for step in detail.timeline)
    assert detail.timeline[5].detail == "tx 0xbbbbbb…bbbb in block 47"
    assert "node-0, node-1" in detail.timeline[4].detail


def test_abort_with_a_mismatched_hold_shows_both_refunds() -> None:
    view = terms_view(
        decision="ABORT",
        status="delivered",
        signers=SIGNERS[2:],
        deliveries=((CHAIN, "delivered"), (LEDGER, "delivered")),
    )
    chain = chain_facts(locked_event(), outcome_event("aborted", SELLER))
    ledger = ledger_facts(hold("released", amount=1))
    detail = _detail(view, chain, ledger)
    assert detail is not None
    assert detail.row.status == "aborted"
    assert [leg.state for leg in detail.row.legs] == ["refunded", "refunded"]
    assert [(m.outcome, m.source.label, m.target.label) for m in detail.movements] == [
        ("refunded", "DvP escrow", "seller"),
        ("refunded", "ledger hold", "buyer"),
    ]
    assert [s.failed for s in detail.timeline if s.label.startswith("Leg 1")] == [True]  # the mismatch
    assert detail.timeline[-1].label == "Final: ABORTED"


def test_abort_with_a_leg_never_locked_is_final_once_the_other_is_refunded() -> None:
    view = terms_view(decision="ABORT", status="reported", signers=SIGNERS[:2])
    (row,) = _rows([view], chain_facts(locked_event()), ledger_facts())
    assert row.status == "signed"  # the chain lock is not refunded yet
    (row,) = _rows([view], chain_facts(locked_event(), outcome_event("aborted", SELLER)), ledger_facts())
    assert row.status == "aborted"
    assert [leg.state for leg in row.legs] == ["refunded", "not locked"]


def test_owed_to_the_payee_counts_as_settled() -> None:
    view = terms_view(decision="SETTLE", status="delivered", signers=SIGNERS[:2])
    chain = chain_facts(locked_event(), outcome_event("owed", BUYER))
    (row,) = _rows([view], chain, ledger_facts(hold("settled")))
    assert row.legs[0].state == "owed to payee"
    assert row.status == "settled"


def test_a_settlement_known_to_some_nodes_only() -> None:
    probes = [probe(n, [terms_view()] if i < 2 else []) for i, n in enumerate(CONFIG.nodes)]
    (row,) = build_rows(CONFIG, probes, chain_facts(), ledger_facts())
    assert (row.known_by, row.node_count) == (2, 4)


def test_filters_by_status_and_party() -> None:
    other = "0x" + "99" * 32
    view2 = terms_view(other)
    view2["legs"][1]["payer"] = "carol-usd"
    rows = _rows([terms_view(), view2], chain_facts(locked_event()), ledger_facts())
    assert {r.status for r in rows} == {"locking", "registered"}
    assert [r.settlement_id for r in filter_rows(rows, status="locking", party=None)] == [SID]
    assert len(filter_rows(rows, status=None, party="SELLER")) == 2  # by name, any case
    assert [r.settlement_id for r in filter_rows(rows, status=None, party="carol")] == [
        other
    ]  # by account id
    assert len(filter_rows(rows, status=None, party=BUYER[:12])) == 2  # by address prefix
    assert filter_rows(rows, status="settled", party=None) == ()


def test_don_view_from_health_and_metrics() -> None:
    probes = [probe(CONFIG.nodes[0], [], leader=True, rounds=3), probe(CONFIG.nodes[1], [], up=False)]
    don = build_don(CONFIG, probes)
    up, down = don.nodes
    assert (up.up, up.is_leader, up.rounds_led, up.signatures, up.errors) == (True, True, 3, 3, 1)
    assert up.errors_by_kind == (("observe_retryable", 1),)
    assert [(n.network, n.position, n.failures) for n in up.networks] == [
        (CHAIN, "block 47", 0),
        (LEDGER, "event 12", 2),
    ]
    assert (down.up, down.error) == (False, "connection refused")
    assert don.up_count == 1 and not don.quorum_ok


def test_ledgers_view_lists_holders_and_accounts() -> None:
    ledgers = build_ledgers(CONFIG, chain_facts(), ledger_facts())
    assert ledgers.token is not None
    assert ledgers.token.supply.text == "10,000.00 OUSG"
    assert [(h.holder.label, h.balance.text, h.share_percent) for h in ledgers.token.holders] == [
        ("seller", "9,975.00 OUSG", "99.75 %"),
        ("buyer", "25.00 OUSG", "0.25 %"),
    ]
    assert ledgers.token.holders_sum_matches_supply
    assert [(a.account.label, a.available.text, a.held.text) for a in ledgers.accounts] == [
        ("buyer", "974,876.55 USD", "0.00 USD"),
        ("seller", "25,123.45 USD", "0.00 USD"),
    ]
