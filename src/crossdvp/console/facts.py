"""The raw public facts the console gathers, one frozen record per source, before aggregation.

A source that cannot be reached still yields a record (`ok = False`, `error` saying why) so that a
page shows what is down instead of failing as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crossdvp.console.config import NodeEndpoint

__all__ = [
    "AccountFact",
    "ChainFacts",
    "ChainLegEvent",
    "HoldFact",
    "LedgerFacts",
    "MetricSample",
    "NodeProbe",
    "TokenInfo",
    "metric_total",
]


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One Prometheus sample: counters appear under their `_total` name."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def metric_total(samples: tuple[MetricSample, ...], name: str, **labels: str) -> int:
    """The sum of the samples named `name` whose labels include `labels` (counters are integral)."""
    wanted = set(labels.items())
    return int(sum(s.value for s in samples if s.name == name and wanted <= set(s.labels)))


@dataclass(frozen=True, slots=True)
class NodeProbe:
    """What one node answered at `probed_at_ms`: health, metrics, and its settlement views."""

    endpoint: NodeEndpoint
    up: bool
    probed_at_ms: int
    error: str | None = None
    health: Mapping[str, Any] | None = None
    metrics: tuple[MetricSample, ...] = ()
    settlements: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ChainLegEvent:
    """An escrow event about one settlement, with where it sits in the chain.

    kind: locked | settled | aborted | owed | claimed | reclaimed | skipped. `party` is the locker
    (locked, aborted, reclaimed), the payee (settled) or the beneficiary (owed, claimed).
    """

    kind: str
    settlement_id: str
    leg_index: int | None
    tx_hash: str
    block_number: int
    log_index: int
    block_time_s: int | None = None
    amount: int | None = None
    party: str | None = None
    payee: str | None = None
    token: str | None = None
    terms_hash: str | None = None
    deadline_s: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    address: str
    name: str
    symbol: str
    decimals: int
    total_supply: int


@dataclass(frozen=True, slots=True)
class ChainFacts:
    network: str
    ok: bool
    error: str | None = None
    head_block: int | None = None
    head_time_s: int | None = None
    token: TokenInfo | None = None
    escrow: str = ""
    events: tuple[ChainLegEvent, ...] = ()
    holders: tuple[tuple[str, int], ...] = ()  # (address, balance) from Transfer events, nonzero only


@dataclass(frozen=True, slots=True)
class HoldFact:
    hold_id: str
    settlement_id: str
    leg_index: int
    terms_hash: str
    payer_account: str
    payee_account: str
    currency: str
    amount_minor: int
    deadline_s: int
    state: str  # held | settled | released | reclaimed
    placed_at_s: int
    final_at_s: int | None
    workflow_execution_id: str | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HoldFact:
        return cls(
            hold_id=str(d["hold_id"]),
            settlement_id=str(d["settlement_id"]).lower(),
            leg_index=int(d["leg_index"]),
            terms_hash=str(d["terms_hash"]).lower(),
            payer_account=str(d["payer_account"]),
            payee_account=str(d["payee_account"]),
            currency=str(d["currency"]),
            amount_minor=int(d["amount_minor"]),
            deadline_s=int(d["deadline_s"]),
            state=str(d["state"]),
            placed_at_s=int(d["placed_at_s"]),
            final_at_s=None if d.get("final_at_s") is None else int(d["final_at_s"]),
            workflow_execution_id=d.get("workflow_execution_id"),
        )


@dataclass(frozen=True, slots=True)
class AccountFact:
    account_id: str
    participant_id: str | None
    currency: str
    frozen: bool
    available_minor: int
    held_minor: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AccountFact:
        return cls(
            account_id=str(d["account_id"]),
            participant_id=d.get("participant_id"),
            currency=str(d["currency"]),
            frozen=bool(d["frozen"]),
            available_minor=int(d["available_minor"]),
            held_minor=int(d["held_minor"]),
        )


@dataclass(frozen=True, slots=True)
class LedgerFacts:
    network: str
    ok: bool
    error: str | None = None
    time_s: int | None = None
    holds: tuple[HoldFact, ...] = ()
    accounts: tuple[AccountFact, ...] = field(default_factory=tuple)
