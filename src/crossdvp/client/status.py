"""What a desk sees of a settlement, read from the ledgers themselves (escrow getLock, ledger holds and
reports) and from the nodes (decision, report, signers, deliveries).

Stages, in order: registered -> locked (every leg locked on its own ledger) -> decided (the DON's
decision, SETTLE or ABORT) -> delivered (per network: the ledger applied the report) -> final (every
network of the terms delivered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crossdvp.settlement.terms import Decision, Terms

__all__ = ["Balances", "LegStatus", "SettlementOutcome", "SettlementStatus", "Stage"]


class Stage(StrEnum):
    UNKNOWN = "unknown"
    REGISTERED = "registered"
    LOCKED = "locked"
    DECIDED = "decided"
    DELIVERED = "delivered"
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class LegStatus:
    """One leg as its own ledger shows it. `state`: chain lock state (none, locked, settled, aborted,
    reclaimed, settle_owed, abort_owed) or ledger hold state (none, held, settled, released, reclaimed).
    `lock_ref`: the lock transaction hash (chain) or the hold id (ledger)."""

    index: int
    network: str
    kind: str  # "chain" | "ledger"
    amount_minor: int
    asset: str
    payer: str
    payee: str
    state: str
    lock_ref: str | None
    locked: bool
    delivered: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "network": self.network,
            "kind": self.kind,
            "asset": self.asset,
            "amount_minor": self.amount_minor,
            "payer": self.payer,
            "payee": self.payee,
            "state": self.state,
            "lock_ref": self.lock_ref,
            "locked": self.locked,
            "delivered": self.delivered,
        }


@dataclass(frozen=True, slots=True)
class SettlementStatus:
    settlement_id: bytes
    terms: Terms | None
    legs: tuple[LegStatus, ...]
    nodes_knowing: int
    nodes_answering: int
    decision: Decision | None
    decided_at_s: int | None
    report_execution_id: str | None
    signers: tuple[str, ...]
    forwarder_tx: str | None
    ledger_report: str | None  # e.g. "applied: settled 1 hold" from GET /v1/reports/{id}
    delivered: Mapping[str, bool] = field(default_factory=dict)  # network -> the report took effect

    @property
    def final(self) -> bool:
        return self.decision is not None and bool(self.delivered) and all(self.delivered.values())

    @property
    def stage(self) -> Stage:
        if self.final:
            return Stage.FINAL
        if self.decision is not None and any(self.delivered.values()):
            return Stage.DELIVERED
        if self.decision is not None:
            return Stage.DECIDED
        if self.legs and all(leg.locked for leg in self.legs):
            return Stage.LOCKED
        if self.terms is not None:
            return Stage.REGISTERED
        return Stage.UNKNOWN

    @property
    def settlement_hex(self) -> str:
        return "0x" + self.settlement_id.hex()

    def to_dict(self) -> dict[str, Any]:
        return {
            "settlement_id": self.settlement_hex,
            "stage": self.stage.value,
            "decision": None if self.decision is None else self.decision.name,
            "decided_at_s": self.decided_at_s,
            "terms_hash": None if self.terms is None else "0x" + self.terms.terms_hash.hex(),
            "deadline_s": None if self.terms is None else self.terms.deadline_s,
            "legs": [leg.to_dict() for leg in self.legs],
            "nodes_knowing": self.nodes_knowing,
            "nodes_answering": self.nodes_answering,
            "report_execution_id": self.report_execution_id,
            "signers": list(self.signers),
            "forwarder_tx": self.forwarder_tx,
            "ledger_report": self.ledger_report,
            "delivered": dict(self.delivered),
        }


@dataclass(frozen=True, slots=True)
class Balances:
    """A party's holdings: fund shares on the chain and (available, held) cash per ledger currency."""

    party: str
    shares_minor: int
    cash: Mapping[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party,
            "shares_minor": self.shares_minor,
            "cash": {c: {"available_minor": a, "held_minor": h} for c, (a, h) in self.cash.items()},
        }


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    """A final settlement: the decision, the evidence on each ledger, and the balances around it."""

    status: SettlementStatus
    balances_before: Mapping[str, Balances]
    balances_after: Mapping[str, Balances]

    @property
    def decision(self) -> Decision:
        assert self.status.decision is not None  # an outcome exists only for a decided settlement
        return self.status.decision

    @property
    def settlement_id(self) -> bytes:
        return self.status.settlement_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "settlement_id": self.status.settlement_hex,
            "outcome": self.decision.name,
            "status": self.status.to_dict(),
            "balances_before": {k: v.to_dict() for k, v in self.balances_before.items()},
            "balances_after": {k: v.to_dict() for k, v in self.balances_after.items()},
        }
