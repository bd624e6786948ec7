"""The ports a node talks to the world through: one observer and one deliverer per network.

A node runs one `Observer` and one `Deliverer` per network it serves (an EVM chain, a payment
ledger). Real implementations live in `observe.py` and `transmit.py`; in-memory twins for unit tests
live in `memory.py`. The node owns persistence: an observer is handed the cursor the node stored and
returns the next one, and the node stores locks and cursor in one transaction, so a crash between
the two can never skip an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.report import ReportItem

__all__ = [
    "DeliveryState",
    "DeliveryStatus",
    "Deliverer",
    "Observed",
    "Observer",
    "SignedReport",
]


@dataclass(frozen=True, slots=True)
class Observed:
    """What one poll of a network found, all of it final.

    `final_time_s` is a watermark: every lock stamped at or before it is in this poll or an earlier
    one. `cursor` is opaque to the node; handing it back to `poll` continues after this batch.
    """

    network: str
    locks: tuple[LockObservation, ...]
    final_time_s: int
    cursor: str


class Observer(Protocol):
    """Reads final locks and the final-time watermark of one network."""

    @property
    def network(self) -> str: ...

    async def poll(self, cursor: str | None) -> Observed:
        """Everything final after `cursor`. Raises a retryable error on transport failures."""
        ...


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A complete report: the raw Keystone bytes, the context and exactly f+1 signatures."""

    raw: bytes
    context: bytes
    signatures: tuple[bytes, ...]
    workflow_execution_id: bytes
    items: tuple[ReportItem, ...]


class DeliveryState(StrEnum):
    NOT_DELIVERED = "not_delivered"
    PENDING = "pending"  # sent, not yet confirmed
    DELIVERED = "delivered"  # the network applied it (or recorded it as processed)
    FAILED = "failed"  # the network refused it for good (e.g. invalid receiver); an operator must look


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    network: str
    state: DeliveryState
    reference: str | None = None  # the forwarder transaction hash, or the ledger's report id
    detail: str = ""


class Deliverer(Protocol):
    """Delivers a signed report to one network, idempotently, and reads back whether it landed."""

    @property
    def network(self) -> str: ...

    async def status(self, report: SignedReport) -> DeliveryStatus:
        """Whether the network has already processed this report (by anyone)."""
        ...

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        """Send the report; safe to call again. Raises a retryable error on transport failures."""
        ...
