"""The invariants a chaos run must keep, checked over what the ledgers themselves record.

Pure: `check_invariants(snapshot)` takes a `LedgerSnapshot` — the escrow's locks and their
executions on the chain, the holds and their executions on the payment ledger, the reports each
network executed, the balance totals — and returns the violations. `crossdvp.chaos.evidence` reads
a snapshot from real networks; the tests also build snapshots by hand. Nothing here asks an oracle
node what it believes: a node's belief is exactly what is under test.

The invariants (issue 6):
- atomicity: per settlement, either every leg went to its payee, or no leg did (each locked leg went
  back to its locker or is still locked, i.e. reclaimable by it). A leg paid while another leg is
  absent, refunded or mismatched, or a paid lock that does not match its leg, is a violation;
- conservation: per asset and currency, observed totals equal the expected ones (supply, sum of
  holders' balances, the escrow's balance = what its open locks hold, ledger totals = cash in - out,
  held = sum of open holds), and the ledger's journal verifies;
- execution: no lock executed twice, no settlement executed with both decisions, every executed
  report carries f+1 valid signatures of the DON config (all counted as `double_executions`);
- decisions: the outcome equals what the settlement core's `decide` gives over the ledgers' own
  locks (a valid DvP that aborted is as wrong as a mismatched one that settled);
- liveness: a lock still open after the run is `unfinished`; finalize time = final time - last lock
  (settle) or - deadline (abort).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from crossdvp.settlement.decision import LedgerView, LockObservation, decide
from crossdvp.settlement.terms import Decision, Terms

__all__ = [
    "BalanceCheck",
    "ExecutedReport",
    "InvariantReport",
    "LedgerSnapshot",
    "LegOutcome",
    "LockRecord",
    "SettlementRecord",
    "Violation",
    "ViolationKind",
    "check_invariants",
]


class LegOutcome(StrEnum):
    """Where a lock's value is, per the ledger that holds it."""

    LOCKED = "locked"  # still in escrow / held: reclaimable by its locker after deadline + grace
    PAID = "paid"  # went to (or is owed to) the payee
    REFUNDED = "refunded"  # went back to (or is owed to) the locker: abort, release or reclaim


@dataclass(frozen=True, slots=True)
class LockRecord:
    """One lock (escrow lock or ledger hold) as its ledger records it.

    `executions` counts how many times the ledger moved the lock's value out (settled, refunded,
    reclaimed); more than one is a double execution. `final_at_s` is the ledger time of the first.
    """

    network: str
    leg_index: int
    settlement_id: bytes
    terms_hash: bytes
    asset: str
    amount_minor: int
    payer: str
    payee: str
    deadline_s: int
    locked_at_s: int
    outcome: LegOutcome
    final_at_s: int | None = None
    executions: int = 0

    def observation(self) -> LockObservation:
        return LockObservation(
            network=self.network,
            leg_index=self.leg_index,
            settlement_id=self.settlement_id,
            terms_hash=self.terms_hash,
            asset=self.asset,
            amount_minor=self.amount_minor,
            payer=self.payer,
            payee=self.payee,
            deadline_s=self.deadline_s,
            locked_at_s=self.locked_at_s,
        )


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    terms: Terms
    locks: tuple[LockRecord, ...]


@dataclass(frozen=True, slots=True)
class ExecutedReport:
    """A report a network executed (forwarder ReportProcessed with success / ledger-applied report),
    with the decisions it carried and whether its signatures re-verify against the DON config."""

    network: str
    execution_id: bytes
    signatures_valid: bool
    decisions: Mapping[bytes, Decision]  # settlement id -> decision, for the items it applied


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """An expected total against the observed one, e.g. "USD ledger total" or "OUSG escrow balance"."""

    label: str
    expected: int
    observed: int

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    settlements: tuple[SettlementRecord, ...]
    reports: tuple[ExecutedReport, ...]
    balances: tuple[BalanceCheck, ...]
    journal_ok: bool
    journal_detail: str
    final_time_s: Mapping[str, int]  # per network: the time up to which the snapshot is complete


class ViolationKind(StrEnum):
    ATOMICITY = "atomicity"
    CONSERVATION = "conservation"
    DOUBLE_EXECUTION = "double-execution"
    WRONG_DECISION = "wrong-decision"


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    settlement_id: bytes | None
    detail: str

    def __str__(self) -> str:
        where = f" settlement 0x{self.settlement_id.hex()}" if self.settlement_id is not None else ""
        return f"{self.kind.value}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class InvariantReport:
    violations: tuple[Violation, ...]
    outcomes: Mapping[str, int]
    unfinished: tuple[bytes, ...]
    finalize_s: Mapping[bytes, int] = field(default_factory=dict)

    def count(self, kind: ViolationKind) -> int:
        return sum(1 for v in self.violations if v.kind is kind)

    @property
    def max_finalize_s(self) -> int | None:
        return max(self.finalize_s.values()) if self.finalize_s else None

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unfinished


def _matches(terms: Terms, lock: LockRecord) -> bool:
    """Whether a lock is its leg's lock exactly as agreed (the core's rule, without the time test)."""
    if not 0 <= lock.leg_index < len(terms.legs):
        return False
    leg = terms.legs[lock.leg_index]
    return (
        lock.network == leg.network
        and lock.settlement_id == terms.settlement_id
        and lock.terms_hash == terms.terms_hash
        and lock.asset == leg.asset
        and lock.amount_minor == leg.amount_minor
        and lock.payer == leg.payer
        and lock.payee == leg.payee
        and lock.deadline_s == terms.deadline_s
    )


def _check_settlement(
    record: SettlementRecord, final_time_s: Mapping[str, int]
) -> tuple[list[Violation], str, int | None]:
    """Violations of one settlement, its outcome label, and its finalize time (None if not final)."""
    terms = record.terms
    sid = terms.settlement_id
    violations: list[Violation] = []
    for lock in record.locks:
        if lock.executions > 1:
            violations.append(
                Violation(
                    ViolationKind.DOUBLE_EXECUTION,
                    sid,
                    f"leg {lock.leg_index} on {lock.network} executed {lock.executions} times",
                )
            )
        if lock.outcome is LegOutcome.PAID and not _matches(terms, lock):
            violations.append(
                Violation(
                    ViolationKind.ATOMICITY,
                    sid,
                    f"leg {lock.leg_index} on {lock.network} paid a lock that does not match the terms",
                )
            )
    matching: dict[int, LockRecord] = {}
    for lock in record.locks:
        if _matches(terms, lock):
            matching.setdefault(lock.leg_index, lock)
    paid = [i for i, lock in matching.items() if lock.outcome is LegOutcome.PAID]
    open_legs = [i for i, lock in matching.items() if lock.outcome is LegOutcome.LOCKED]
    if paid:
        for index in range(len(terms.legs)):
            found = matching.get(index)
            if found is None or found.outcome is LegOutcome.REFUNDED:
                state = "never locked as agreed" if found is None else "refunded to its locker"
                violations.append(
                    Violation(
                        ViolationKind.ATOMICITY,
                        sid,
                        f"leg(s) {paid} went to the payee but leg {index} ({terms.legs[index].network}) "
                        f"was {state}",
                    )
                )
    views = {
        network: LedgerView(
            network=network,
            final_time_s=final_time_s.get(network, 0),
            locks=tuple(lock.observation() for lock in record.locks if lock.network == network),
        )
        for network in terms.networks()
    }
    expected = decide(terms, views).decision
    refunded = [i for i, lock in matching.items() if lock.outcome is LegOutcome.REFUNDED]
    if paid and expected is Decision.ABORT:
        violations.append(
            Violation(ViolationKind.WRONG_DECISION, sid, "settled although the core decides ABORT")
        )
    if refunded and expected is Decision.SETTLE:
        violations.append(
            Violation(ViolationKind.WRONG_DECISION, sid, "aborted although the core decides SETTLE")
        )
    if open_legs:
        return violations, "unfinished", None
    if not matching:
        return violations, "nothing_locked", None
    final_times = [lock.final_at_s for lock in matching.values() if lock.final_at_s is not None]
    end = max(final_times) if final_times else None
    if paid:
        start = max(lock.locked_at_s for lock in matching.values())
        label = "settled"
    else:
        start = terms.deadline_s
        label = "aborted"
    return violations, label, None if end is None else max(0, end - start)


def check_invariants(snapshot: LedgerSnapshot) -> InvariantReport:
    """Every violation in `snapshot`, the count of outcomes, the unfinished settlements and the
    finalize time of each final one. Never raises on a bad state: a bad state is the finding."""
    violations: list[Violation] = []
    outcomes: dict[str, int] = {"settled": 0, "aborted": 0, "nothing_locked": 0, "unfinished": 0}
    unfinished: list[bytes] = []
    finalize: dict[bytes, int] = {}
    for record in snapshot.settlements:
        found, label, seconds = _check_settlement(record, snapshot.final_time_s)
        violations.extend(found)
        outcomes[label] += 1
        if label == "unfinished":
            unfinished.append(record.terms.settlement_id)
        if seconds is not None:
            finalize[record.terms.settlement_id] = seconds
    decisions: dict[bytes, set[Decision]] = {}
    for report in snapshot.reports:
        if not report.signatures_valid:
            violations.append(
                Violation(
                    ViolationKind.DOUBLE_EXECUTION,
                    None,
                    f"{report.network} executed report 0x{report.execution_id.hex()} without f+1 valid "
                    "signatures of the DON config",
                )
            )
        for sid, decision in report.decisions.items():
            decisions.setdefault(sid, set()).add(decision)
    for sid, seen in sorted(decisions.items()):
        if len(seen) > 1:
            violations.append(
                Violation(ViolationKind.DOUBLE_EXECUTION, sid, "executed with both SETTLE and ABORT")
            )
    for check in snapshot.balances:
        if not check.ok:
            violations.append(
                Violation(
                    ViolationKind.CONSERVATION,
                    None,
                    f"{check.label}: expected {check.expected}, observed {check.observed}",
                )
            )
    if not snapshot.journal_ok:
        violations.append(
            Violation(ViolationKind.CONSERVATION, None, f"ledger journal: {snapshot.journal_detail}")
        )
    outcomes["wrong_decision"] = sum(1 for v in violations if v.kind is ViolationKind.WRONG_DECISION)
    return InvariantReport(
        violations=tuple(violations), outcomes=outcomes, unfinished=tuple(unfinished), finalize_s=finalize
    )
