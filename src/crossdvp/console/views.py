"""What the console's pages show: frozen, display-ready records built by `aggregate` from the facts.

Every record also has a JSON form (`to_json`, via `as_json`) served under /api/ for scripts, with
amounts as integers in minor units next to their formatted text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from crossdvp.console.format import format_amount, short_hex

__all__ = [
    "FINAL_STATUSES",
    "STATUSES",
    "AccountView",
    "DeliveryView",
    "DonView",
    "Evidence",
    "HolderView",
    "LedgersView",
    "LegView",
    "Money",
    "Movement",
    "NodeDecision",
    "NodeNetworkView",
    "NodeView",
    "PartyRef",
    "SettlementDetail",
    "SettlementRow",
    "SignerRef",
    "TimelineStep",
    "TokenView",
    "as_json",
]

# A settlement's status as the console derives it, in protocol order (see aggregate.settlement_status).
STATUSES = (
    "registered",
    "locking",
    "locked",
    "decided",
    "signed",
    "settled",
    "aborted",
    "reclaimed",
    "mixed",
)
FINAL_STATUSES = frozenset({"settled", "aborted", "reclaimed", "mixed"})


def as_json(value: Any) -> Any:
    """A view record (or a structure of them) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Money):
            out["text"] = value.text
        if isinstance(value, PartyRef):
            out["label"] = value.label
        return out
    if isinstance(value, tuple | list):
        return [as_json(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units with the asset's decimals and unit (ticker or currency code)."""

    amount_minor: int
    decimals: int
    unit: str

    @property
    def text(self) -> str:
        return f"{format_amount(self.amount_minor, self.decimals)} {self.unit}"


@dataclass(frozen=True, slots=True)
class PartyRef:
    """A chain address or ledger account id, with the party's name when the console knows it."""

    id: str
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.name else short_hex(self.id)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a lock or an outcome is recorded: a chain transaction or a ledger hold."""

    time_s: int | None
    tx_hash: str | None = None
    block_number: int | None = None
    hold_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class LegView:
    index: int
    network: str
    kind: str  # chain | ledger | other
    asset: str
    amount: Money
    payer: PartyRef
    payee: PartyRef
    # awaiting lock | locked | lock mismatch | settled | refunded | owed to payee/payer |
    # claimed by payee/payer | reclaimed | not locked (ABORT with nothing to refund)
    state: str
    lock: Evidence | None = None
    lock_matches: bool | None = None
    outcome: Evidence | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class SettlementRow:
    settlement_id: str
    status: str
    decision: str | None
    deadline_s: int
    legs: tuple[LegView, ...]
    known_by: int
    node_count: int

    @property
    def parties(self) -> tuple[str, ...]:
        names: list[str] = []
        for leg in self.legs:
            for ref in (leg.payer, leg.payee):
                if ref.label not in names:
                    names.append(ref.label)
        return tuple(names)


@dataclass(frozen=True, slots=True)
class TimelineStep:
    label: str
    done: bool
    time_s: int | None = None
    detail: str = ""
    failed: bool = False


@dataclass(frozen=True, slots=True)
class SignerRef:
    address: str
    node: str | None


@dataclass(frozen=True, slots=True)
class NodeDecision:
    node: str
    decision: str
    decided_at_s: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    network: str
    state: str  # delivered | pending | failed | not_delivered
    reference: str | None
    attempts: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class Movement:
    """A balance change a leg made (or is waiting to make): `amount` from `source` to `target`."""

    leg_index: int
    network: str
    amount: Money
    source: PartyRef
    target: PartyRef
    outcome: str  # paid | refunded | owed to payee | owed to payer | reclaimed | held
    evidence: Evidence | None


@dataclass(frozen=True, slots=True)
class SettlementDetail:
    row: SettlementRow
    terms_hash: str
    timeline: tuple[TimelineStep, ...]
    decisions: tuple[NodeDecision, ...]
    execution_id: str | None
    signers: tuple[SignerRef, ...]
    deliveries: tuple[DeliveryView, ...]
    movements: tuple[Movement, ...]


@dataclass(frozen=True, slots=True)
class NodeNetworkView:
    network: str
    position: str  # "block 123" or "event 45"
    final_time_s: int | None
    last_poll_s: int | None
    failures: int
    last_error: str | None
    halted: bool


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    url: str
    signer: str
    up: bool
    error: str | None
    is_leader: bool
    networks: tuple[NodeNetworkView, ...]
    rounds_led: int
    rounds_without_quorum: int
    signatures: int
    reports: int
    deliveries: int
    errors: int
    errors_by_kind: tuple[tuple[str, int], ...]
    probed_at_s: int


@dataclass(frozen=True, slots=True)
class DonView:
    nodes: tuple[NodeView, ...]
    f: int

    @property
    def up_count(self) -> int:
        return sum(1 for n in self.nodes if n.up)

    @property
    def quorum_ok(self) -> bool:
        """f+1 signatures need f+1 live nodes."""
        return self.up_count >= self.f + 1


@dataclass(frozen=True, slots=True)
class HolderView:
    holder: PartyRef
    balance: Money
    share_percent: str


@dataclass(frozen=True, slots=True)
class TokenView:
    network: str
    address: str
    name: str
    symbol: str
    supply: Money
    holders: tuple[HolderView, ...]
    holders_sum_matches_supply: bool


@dataclass(frozen=True, slots=True)
class AccountView:
    account: PartyRef
    participant_id: str | None
    currency: str
    available: Money
    held: Money
    frozen: bool


@dataclass(frozen=True, slots=True)
class LedgersView:
    token: TokenView | None
    chain_error: str | None
    ledger_network: str
    ledger_time_s: int | None
    accounts: tuple[AccountView, ...]
    ledger_error: str | None
