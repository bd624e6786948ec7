"""In-memory twins of the node's ports: a ledger network tests can lock on and advance, and a peer network.

`MemoryLedger` behaves like either real network as the node sees it: it refuses a lock after its
deadline, stamps locks with its own clock, reports as final time a watermark no later lock can precede
(time - 1: a lock placed "now" is stamped now, so only earlier times are closed), and applies a
delivered report only after verifying it like the forwarder / the ledger does (verify_report against
its configured DON, workflow metadata checked). `MemoryPeerNetwork` routes envelopes between Node
objects in one process, with nodes that tests can take down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crossdvp.oracle.errors import LedgerUnavailable, PeerUnavailable
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, Observed, SignedReport
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import DonConfig, WorkflowIdentity, decode_report, verify_report
from crossdvp.settlement.terms import Decision

if TYPE_CHECKING:
    from crossdvp.oracle.node import Node

__all__ = [
    "LockRefused",
    "MemoryDeliverer",
    "MemoryLedger",
    "MemoryLock",
    "MemoryObserver",
    "MemoryPeerNetwork",
    "MemoryPeerTransport",
]


class LockRefused(Exception):  # noqa: N818 (reads as a sentence)
    """The in-memory ledger refused a lock (after the deadline, or a duplicate)."""


@dataclass
class MemoryLock:
    observation: LockObservation
    state: str = "locked"  # locked | settled | aborted


@dataclass
class MemoryLedger:
    """One network (an EVM escrow or a payment ledger) with its own clock, in memory."""

    network: str
    don: DonConfig
    workflow: WorkflowIdentity
    time_s: int = 1_000
    locks: list[MemoryLock] = field(default_factory=list)
    applied: dict[bytes, SignedReport] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    deliveries: int = 0
    fail_polls: int = 0  # the next N polls raise LedgerUnavailable (an RPC outage)
    fail_deliveries: int = 0  # the next N deliveries raise LedgerUnavailable

    def advance(self, seconds: int = 1) -> None:
        self.time_s += seconds

    def lock(
        self,
        *,
        settlement_id: bytes,
        leg_index: int,
        terms_hash: bytes,
        asset: str,
        amount_minor: int,
        payer: str,
        payee: str,
        deadline_s: int,
    ) -> LockObservation:
        """Place a lock at the ledger time. Raises LockRefused after the deadline or on a duplicate."""
        if self.time_s > deadline_s:
            raise LockRefused(f"deadline {deadline_s} passed (ledger time {self.time_s})")
        if any(
            m.observation.settlement_id == settlement_id and m.observation.leg_index == leg_index
            for m in self.locks
        ):
            raise LockRefused("a lock exists for this settlement and leg")
        observation = LockObservation(
            network=self.network,
            leg_index=leg_index,
            settlement_id=settlement_id,
            terms_hash=terms_hash,
            asset=asset,
            amount_minor=amount_minor,
            payer=payer,
            payee=payee,
            deadline_s=deadline_s,
            locked_at_s=self.time_s,
        )
        self.locks.append(MemoryLock(observation))
        return observation

    @property
    def final_time_s(self) -> int:
        return self.time_s - 1

    def state_of(self, settlement_id: bytes, leg_index: int) -> str | None:
        for m in self.locks:
            if m.observation.settlement_id == settlement_id and m.observation.leg_index == leg_index:
                return m.state
        return None

    def apply(self, report: SignedReport) -> None:
        """Verify and apply a report; a report already applied is a no-op. Raises SettlementError."""
        verify_report(report.raw, report.context, report.signatures, self.don)
        metadata, items = decode_report(report.raw)
        if (metadata.workflow_cid, metadata.workflow_owner, metadata.workflow_name) != (
            self.workflow.workflow_cid,
            self.workflow.workflow_owner,
            self.workflow.encoded_name,
        ):
            raise SettlementError("report for another workflow")
        if metadata.workflow_execution_id in self.applied:
            return
        self.applied[metadata.workflow_execution_id] = report
        for item in items:
            for m in self.locks:
                o = m.observation
                if (
                    o.settlement_id == item.settlement_id
                    and o.terms_hash == item.terms_hash
                    and m.state == "locked"
                ):
                    m.state = "settled" if item.decision is Decision.SETTLE else "aborted"

    def observer(self) -> MemoryObserver:
        return MemoryObserver(self)

    def deliverer(self) -> MemoryDeliverer:
        return MemoryDeliverer(self)


class MemoryObserver:
    """Reads a MemoryLedger; the cursor is the number of locks already returned."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger

    @property
    def network(self) -> str:
        return self._ledger.network

    async def poll(self, cursor: str | None) -> Observed:
        ledger = self._ledger
        if ledger.fail_polls > 0:
            ledger.fail_polls -= 1
            raise LedgerUnavailable(f"{ledger.network} is unavailable (injected)")
        start = int(cursor) if cursor else 0
        final = ledger.final_time_s
        locks = [m.observation for m in ledger.locks[start:]]
        # Locks are appended in time order, so the final ones are a prefix.
        final_locks = [o for o in locks if o.locked_at_s <= final]
        return Observed(
            network=ledger.network,
            locks=tuple(final_locks),
            final_time_s=final,
            cursor=str(start + len(final_locks)),
        )


class MemoryDeliverer:
    def __init__(self, ledger: MemoryLedger) -> None:
        self._ledger = ledger

    @property
    def network(self) -> str:
        return self._ledger.network

    async def status(self, report: SignedReport) -> DeliveryStatus:
        if report.workflow_execution_id in self._ledger.applied:
            return DeliveryStatus(
                self.network, DeliveryState.DELIVERED, "0x" + report.workflow_execution_id.hex()
            )
        return DeliveryStatus(self.network, DeliveryState.NOT_DELIVERED)

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        if self._ledger.fail_deliveries > 0:
            self._ledger.fail_deliveries -= 1
            raise LedgerUnavailable(f"{self._ledger.network} refused the connection (injected)")
        self._ledger.deliveries += 1
        try:
            self._ledger.apply(report)
        except SettlementError as exc:
            self._ledger.rejected.append(str(exc))
            return DeliveryStatus(self.network, DeliveryState.FAILED, None, str(exc))
        return DeliveryStatus(
            self.network, DeliveryState.DELIVERED, "0x" + report.workflow_execution_id.hex()
        )


class MemoryPeerNetwork:
    """Routes envelopes between in-process nodes; JSON round-trips them like the HTTP transport would."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.down: set[int] = set()
        self.sent = 0

    def attach(self, node: Node) -> None:
        self.nodes[node.index] = node

    def transport_for(self, index: int) -> MemoryPeerTransport:
        return MemoryPeerTransport(self, index)

    async def deliver(self, sender: int, to: int, envelope: dict[str, Any]) -> dict[str, Any]:
        self.sent += 1
        if sender in self.down or to in self.down or to not in self.nodes:
            raise PeerUnavailable(f"node {to} is unreachable")
        status, reply = await self.nodes[to].handle_peer_message(json.loads(json.dumps(envelope)))
        if status != 200:
            raise PeerUnavailable(f"node {to} answered {status}: {reply}")
        result: dict[str, Any] = json.loads(json.dumps(reply))
        return result


class MemoryPeerTransport:
    def __init__(self, network: MemoryPeerNetwork, index: int) -> None:
        self._network = network
        self._index = index

    async def send(self, to: int, envelope: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        return await self._network.deliver(self._index, to, envelope)
