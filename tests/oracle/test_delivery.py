"""The delivery scheduler: due deliveries are worked on concurrently, and one failing does not hold up
the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossdvp.oracle.delivery import MAX_CONCURRENT, DeliveryScheduler
from crossdvp.oracle.errors import LedgerUnavailable
from crossdvp.oracle.metrics import NodeMetrics
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, SignedReport
from crossdvp.oracle.store import NodeStore
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision

pytestmark = pytest.mark.anyio

NETWORK = "eip155:31337"


def _report(tag: int) -> SignedReport:
    item = ReportItem(bytes([tag]) * 32, b"\x05" * 32, Decision.SETTLE)
    return SignedReport(bytes([tag]) * 200, b"\x00" * 96, (b"\x01" * 65,), bytes([tag]) * 32, (item,))


class GatedChain:
    """A network where sending report 1 waits (like a receipt wait) until report 2 has been sent, and
    sending report 3 fails on the transport."""

    network = NETWORK

    def __init__(self) -> None:
        self.second_sent = asyncio.Event()
        self.delivered: set[bytes] = set()

    async def status(self, report: SignedReport) -> DeliveryStatus:
        landed = report.workflow_execution_id in self.delivered
        state = DeliveryState.DELIVERED if landed else DeliveryState.NOT_DELIVERED
        return DeliveryStatus(NETWORK, state, None, "")

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        tag = report.workflow_execution_id[0]
        if tag == 1:
            await self.second_sent.wait()
        elif tag == 2:
            self.second_sent.set()
        else:
            raise LedgerUnavailable("connection refused")
        self.delivered.add(report.workflow_execution_id)
        return DeliveryStatus(NETWORK, DeliveryState.DELIVERED, f"0xtx{tag}", "")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    opened = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
    try:
        yield opened
    finally:
        opened.close()


async def test_a_slow_send_does_not_hold_up_the_next_report_nor_does_a_failing_one(store: NodeStore) -> None:
    now_ms = 1_000
    for tag in (1, 2, 3):
        store.add_report(_report(tag), ["0xa"], [NETWORK], now_ms)
    chain = GatedChain()
    scheduler = DeliveryScheduler(
        index=0,
        n=1,  # this node sends every report first
        store=store,
        deliverers={NETWORK: chain},
        metrics=NodeMetrics(),
        now_ms=lambda: now_ms,
        stagger_ms=1_000,
        recheck_ms=1_000,
    )
    # One at a time, report 1's send would wait forever for report 2's.
    confirmed = await asyncio.wait_for(scheduler.tick(), timeout=5)
    assert confirmed == 2
    states = {d.execution_id[0]: d for tag in (1, 2, 3) for d in store.deliveries_for(bytes([tag]) * 32)}
    assert states[1].state is DeliveryState.DELIVERED and states[2].state is DeliveryState.DELIVERED
    failed = states[3]
    assert failed.state is DeliveryState.NOT_DELIVERED
    assert failed.attempts == 1 and failed.next_check_ms > now_ms and "connection refused" in failed.detail


def _scheduler(store: NodeStore, chain: HeldChain) -> DeliveryScheduler:
    """A scheduler of a one-node DON (it sends every report first), its clock stopped at 1,000 ms."""
    return DeliveryScheduler(
        index=0,
        n=1,
        store=store,
        deliverers={NETWORK: chain},
        metrics=NodeMetrics(),
        now_ms=lambda: 1_000,
        stagger_ms=1_000,
        recheck_ms=1_000,
    )


class HeldChain:
    """A network where every send waits until the test releases it (a receipt that takes a block)."""

    network = NETWORK

    def __init__(self) -> None:
        self.release: dict[int, asyncio.Event] = {}
        self.sending: set[int] = set()
        self.delivered: set[bytes] = set()

    async def status(self, report: SignedReport) -> DeliveryStatus:
        landed = report.workflow_execution_id in self.delivered
        return DeliveryStatus(
            NETWORK, DeliveryState.DELIVERED if landed else DeliveryState.NOT_DELIVERED, None, ""
        )

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        tag = report.workflow_execution_id[0]
        self.sending.add(tag)
        await self.release.setdefault(tag, asyncio.Event()).wait()
        self.delivered.add(report.workflow_execution_id)
        return DeliveryStatus(NETWORK, DeliveryState.DELIVERED, f"0xtx{tag}", "")


async def test_start_due_sends_a_new_report_while_earlier_ones_wait_and_stop_cancels_them(
    store: NodeStore,
) -> None:
    chain = HeldChain()
    scheduler = _scheduler(store, chain)
    store.add_report(_report(1), ["0xa"], [NETWORK], 1_000)
    assert scheduler.start_due() == 1
    await asyncio.sleep(0.01)
    assert chain.sending == {1}
    assert scheduler.start_due() == 0  # report 1 is being worked on: not started twice
    # Report 2 completes while report 1 still waits for its receipt: it is sent at once.
    store.add_report(_report(2), ["0xa"], [NETWORK], 1_000)
    assert scheduler.start_due() == 1
    await asyncio.sleep(0.01)
    assert chain.sending == {1, 2}
    chain.release.setdefault(2, asyncio.Event()).set()
    for _ in range(100):
        if store.deliveries_for(bytes([2]) * 32)[0].state is DeliveryState.DELIVERED:
            break
        await asyncio.sleep(0.01)
    assert store.deliveries_for(bytes([2]) * 32)[0].state is DeliveryState.DELIVERED
    assert store.deliveries_for(bytes([1]) * 32)[0].state is DeliveryState.NOT_DELIVERED
    # Stopping cancels report 1's wait; its delivery stays due and is picked up again.
    await scheduler.stop()
    assert [d.execution_id[0] for d in store.due_deliveries(1_000)] == [1]
    assert scheduler.start_due() == 1
    chain.release[1].set()
    await asyncio.sleep(0.05)
    assert store.deliveries_for(bytes([1]) * 32)[0].state is DeliveryState.DELIVERED


async def test_start_due_keeps_at_most_max_concurrent_per_network(store: NodeStore) -> None:
    chain = HeldChain()
    scheduler = _scheduler(store, chain)
    for tag in range(1, MAX_CONCURRENT + 4):
        store.add_report(_report(tag), ["0xa"], [NETWORK], 1_000)
    assert scheduler.start_due() == MAX_CONCURRENT
    assert scheduler.start_due() == 0
    await asyncio.sleep(0.01)
    chain.release.setdefault(1, asyncio.Event()).set()
    await asyncio.sleep(0.05)
    assert scheduler.start_due() == 1  # one finished, one more starts
    await scheduler.stop()


class CountingChain(HeldChain):
    """HeldChain that counts the status reads and never holds a send."""

    def __init__(self) -> None:
        super().__init__()
        self.status_reads = 0

    async def status(self, report: SignedReport) -> DeliveryStatus:
        self.status_reads += 1
        return await super().status(report)

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        self.release.setdefault(report.workflow_execution_id[0], asyncio.Event()).set()
        return await super().deliver(report)


async def test_the_first_sender_sends_without_asking_first_and_a_later_one_asks(store: NodeStore) -> None:
    """Position 0's first attempt goes straight to `deliver` (idempotent, and it reads the chain's
    outcome itself): a status read first would only add a round trip. A node whose turn comes later
    reads the status first and does not send a report that landed."""
    chain = CountingChain()
    store.add_report(_report(1), ["0xa"], [NETWORK], 1_000)
    first = _scheduler(store, chain)  # a one-member DON: position 0
    assert await first.tick() == 1
    assert (chain.status_reads, chain.delivered) == (0, {_report(1).workflow_execution_id})

    later_store = NodeStore(f"sqlite:///{store.engine.url.database}-later")
    try:
        later_store.add_report(_report(1), ["0xa"], [NETWORK], 1_000)
        later = DeliveryScheduler(
            index=0,  # position 1 of 2 for this report: (0 - odd execution id) mod 2
            n=2,
            store=later_store,
            deliverers={NETWORK: chain},
            metrics=NodeMetrics(),
            now_ms=lambda: 1_000 + 2_000,  # its turn has come
            stagger_ms=1_000,
            recheck_ms=1_000,
        )
        sends = len(chain.sending)
        assert await later.tick() == 1
        assert chain.status_reads == 1 and len(chain.sending) == sends  # asked, found it, sent nothing
    finally:
        later_store.close()
