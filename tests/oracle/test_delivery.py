"""The delivery scheduler: due deliveries are worked on concurrently, and one failing does not hold up
the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossdvp.oracle.delivery import DeliveryScheduler
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
