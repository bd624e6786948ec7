"""The invariant checker on hand-built ledger states: each invariant is flagged when broken, and a
correct state passes."""

from __future__ import annotations

from dataclasses import replace

from crossdvp.chaos.invariants import (
    BalanceCheck,
    ExecutedReport,
    LedgerSnapshot,
    LegOutcome,
    LockRecord,
    SettlementRecord,
    ViolationKind,
    check_invariants,
)
from crossdvp.settlement.terms import Decision, Leg, Terms

CHAIN = "eip155:31337"
LEDGER = "payments:test"
TOKEN = "0x" + "aa" * 20
SELLER = "0x" + "01" * 20
BUYER = "0x" + "02" * 20
DEADLINE = 1_000
LATE = {CHAIN: 2_000, LEDGER: 2_000}


def terms(n: int = 1) -> Terms:
    return Terms(
        settlement_id=bytes([n]) * 32,
        deadline_s=DEADLINE,
        legs=(
            Leg(network=CHAIN, asset=TOKEN, amount_minor=5, payer=SELLER, payee=BUYER),
            Leg(network=LEDGER, asset="USD", amount_minor=700, payer="buyer-usd", payee="seller-usd"),
        ),
    )


def lock(
    t: Terms, index: int, outcome: LegOutcome, *, at: int = 900, final: int | None = 950, **kw: object
) -> LockRecord:
    leg = t.legs[index]
    record = LockRecord(
        network=leg.network,
        leg_index=index,
        settlement_id=t.settlement_id,
        terms_hash=t.terms_hash,
        asset=leg.asset,
        amount_minor=leg.amount_minor,
        payer=leg.payer,
        payee=leg.payee,
        deadline_s=t.deadline_s,
        locked_at_s=at,
        outcome=outcome,
        final_at_s=None if outcome is LegOutcome.LOCKED else final,
        executions=0 if outcome is LegOutcome.LOCKED else 1,
    )
    return replace(record, **kw)  # type: ignore[arg-type]


def snapshot(*records: SettlementRecord, **kw: object) -> LedgerSnapshot:
    base = LedgerSnapshot(
        settlements=records,
        reports=(),
        balances=(BalanceCheck("USD total", 100, 100),),
        journal_ok=True,
        journal_detail="",
        final_time_s=LATE,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_settled_and_an_aborted_settlement_pass_with_finalize_times() -> None:
    a, b = terms(1), terms(2)
    settled = SettlementRecord(
        a, (lock(a, 0, LegOutcome.PAID, at=900), lock(a, 1, LegOutcome.PAID, at=910, final=930))
    )
    aborted = SettlementRecord(b, (lock(b, 0, LegOutcome.REFUNDED, final=1_004),))
    report = check_invariants(snapshot(settled, aborted))
    assert report.violations == ()
    assert report.ok
    assert report.outcomes["settled"] == 1 and report.outcomes["aborted"] == 1
    assert report.finalize_s == {a.settlement_id: 40, b.settlement_id: 4}  # last final 950 - last lock 910
    assert report.max_finalize_s == 40


def test_one_leg_paid_while_the_other_was_refunded_is_an_atomicity_violation() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID), lock(t, 1, LegOutcome.REFUNDED)))
    report = check_invariants(snapshot(record))
    assert report.count(ViolationKind.ATOMICITY) == 1
    assert not report.ok


def test_one_leg_paid_while_the_other_was_never_locked_is_an_atomicity_violation() -> None:
    t = terms()
    report = check_invariants(snapshot(SettlementRecord(t, (lock(t, 0, LegOutcome.PAID),))))
    assert report.count(ViolationKind.ATOMICITY) == 1


def test_paying_a_mismatched_lock_is_an_atomicity_violation() -> None:
    t = terms()
    wrong = lock(t, 1, LegOutcome.PAID, amount_minor=1)
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID), wrong))
    report = check_invariants(snapshot(record))
    assert (
        report.count(ViolationKind.ATOMICITY) == 2
    )  # the mismatched lock paid, and leg 1 not locked as agreed


def test_a_mismatched_lock_left_locked_is_reclaimable_not_unfinished() -> None:
    t = terms()
    stray = lock(t, 1, LegOutcome.LOCKED, terms_hash=b"\x99" * 32)
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.REFUNDED, final=1_001), stray))
    report = check_invariants(snapshot(record))
    assert report.violations == ()
    assert report.unfinished == ()
    assert report.outcomes["aborted"] == 1


def test_an_open_lock_after_the_run_is_unfinished() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID), lock(t, 1, LegOutcome.LOCKED)))
    report = check_invariants(snapshot(record))
    assert report.unfinished == (t.settlement_id,)
    assert report.violations == ()  # not yet wrong, but not done
    assert not report.ok


def test_a_lock_executed_twice_is_a_double_execution() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID, executions=2), lock(t, 1, LegOutcome.PAID)))
    report = check_invariants(snapshot(record))
    assert report.count(ViolationKind.DOUBLE_EXECUTION) == 1


def test_both_decisions_executed_and_unsigned_reports_are_execution_violations() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID), lock(t, 1, LegOutcome.PAID)))
    reports = (
        ExecutedReport(CHAIN, b"\x01" * 32, True, {t.settlement_id: Decision.SETTLE}),
        ExecutedReport(LEDGER, b"\x02" * 32, True, {t.settlement_id: Decision.ABORT}),
        ExecutedReport(LEDGER, b"\x03" * 32, False, {}),
    )
    report = check_invariants(snapshot(record, reports=reports))
    assert report.count(ViolationKind.DOUBLE_EXECUTION) == 2


def test_a_valid_dvp_that_aborted_is_a_wrong_decision() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.REFUNDED), lock(t, 1, LegOutcome.REFUNDED)))
    report = check_invariants(snapshot(record))
    assert report.count(ViolationKind.WRONG_DECISION) == 1
    assert report.outcomes["wrong_decision"] == 1


def test_a_lock_after_the_deadline_that_settled_is_a_wrong_decision() -> None:
    t = terms()
    record = SettlementRecord(t, (lock(t, 0, LegOutcome.PAID), lock(t, 1, LegOutcome.PAID, at=DEADLINE + 1)))
    report = check_invariants(snapshot(record))
    assert report.count(ViolationKind.WRONG_DECISION) == 1


def test_balances_that_do_not_add_up_and_a_broken_journal_are_conservation_violations() -> None:
    bad = snapshot(
        balances=(BalanceCheck("OUSG supply", 10, 11),), journal_ok=False, journal_detail="hash break"
    )
    report = check_invariants(bad)
    assert report.count(ViolationKind.CONSERVATION) == 2
    assert "OUSG supply: expected 10, observed 11" in str(report.violations[0])


def test_nothing_locked_is_its_own_outcome() -> None:
    report = check_invariants(snapshot(SettlementRecord(terms(), ())))
    assert report.outcomes["nothing_locked"] == 1
    assert report.ok
