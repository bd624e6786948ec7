"""Delivery of complete reports to every network of their items, staggered across the DON.

For each (report, network), the node at rotation position p = (index - execution_id mod n) mod n makes
its first check p * stagger_ms after it stored the report: position 0 sends at once, the others look
later and send only if the report has not landed. Every check reads the outcome from the network
(deliverer.status) first, so a report delivered by anyone is never sent again by us. Retries back off
exponentially; a network that refuses the report for good (FAILED) is left to an operator.

A running node starts each due delivery as a task of its own (`start_due`), so a report that is ready
never waits for other reports' receipts; `tick` works on every due delivery and returns when all are
done (tests, and anyone stepping a node by hand).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping

from crossdvp.errors import CrossDvpError
from crossdvp.oracle.metrics import NodeMetrics
from crossdvp.oracle.ports import Deliverer, DeliveryState, DeliveryStatus
from crossdvp.oracle.store import NodeStore, StoredDelivery, StoredReport, hex32

__all__ = ["DeliveryScheduler", "rotation_position"]

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 60_000
#: Deliveries worked on at once per network (each is a few RPC calls, then perhaps a receipt wait);
#: on a chain, also the most transactions one transmitter has in the mempool at once.
MAX_CONCURRENT = 16


def rotation_position(execution_id: bytes, index: int, n: int) -> int:
    """This node's place in the per-report sending order (0 sends first)."""
    return (index - int.from_bytes(execution_id, "big") % n) % n


class DeliveryScheduler:
    def __init__(
        self,
        *,
        index: int,
        n: int,
        store: NodeStore,
        deliverers: Mapping[str, Deliverer],
        metrics: NodeMetrics,
        now_ms: Callable[[], int],
        stagger_ms: int,
        recheck_ms: int,
    ) -> None:
        self._index = index
        self._n = n
        self._store = store
        self._deliverers = dict(deliverers)
        self._metrics = metrics
        self._now_ms = now_ms
        self._stagger_ms = stagger_ms
        self._recheck_ms = recheck_ms
        self._running: dict[tuple[bytes, str], asyncio.Task[int]] = {}

    def _backoff(self, attempts: int) -> int:
        return min(MAX_BACKOFF_MS, self._recheck_ms << min(attempts, 10))

    async def tick(self) -> int:
        """Work on every due delivery once, up to MAX_CONCURRENT at a time; returns how many got
        confirmed. Concurrently, because sending a report to a chain waits for its receipt (up to a
        block): one at a time, each report's send waited for the previous report's block."""
        limit = asyncio.Semaphore(MAX_CONCURRENT)

        async def work(due: StoredDelivery) -> int:
            async with limit:
                return await self._attempt(due)

        return sum(await asyncio.gather(*(work(d) for d in self._store.due_deliveries(self._now_ms()))))

    def start_due(self) -> int:
        """Start a task for each due delivery that is not being worked on, up to MAX_CONCURRENT per
        network at a time; returns how many started. Does not wait for them: a running node calls
        this every ~100 ms, and a report completed meanwhile is sent while earlier ones wait for
        their receipts (with `tick`, it waited for the slowest of them)."""
        running = Counter(network for _, network in self._running)
        started = 0
        for due in self._store.due_deliveries(self._now_ms()):
            key = (due.execution_id, due.network)
            if key in self._running or running[due.network] >= MAX_CONCURRENT:
                continue
            running[due.network] += 1
            task = asyncio.create_task(self._attempt(due), name=f"deliver {hex32(due.execution_id)}")
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
            started += 1
        return started

    def _finished(self, key: tuple[bytes, str], _task: asyncio.Task[int]) -> None:
        self._running.pop(key, None)

    async def stop(self) -> None:
        """Cancel the deliveries `start_due` started and wait for them to end. A delivery cut short
        is not lost: its row is still due, and the transaction it may have sent is found on the
        next attempt (deliverers read the network's outcome before sending)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    async def _attempt(self, due: StoredDelivery) -> int:
        try:
            return await self._work(due)
        except Exception as exc:  # a delivery failure of any kind is retried later, never fatal
            retryable = isinstance(exc, CrossDvpError) and exc.retryable
            kind = "delivery_retryable" if retryable else "delivery_error"
            self._metrics.errors.labels(kind=kind).inc()
            self._metrics.deliveries.labels(network=due.network, outcome="error").inc()
            log.warning(
                "report %s to %s: %s (will retry)",
                hex32(due.execution_id),
                due.network,
                exc,
                extra={"execution_id": hex32(due.execution_id), "network": due.network},
            )
            self._store.postpone_delivery(
                due.execution_id,
                due.network,
                self._now_ms() + self._backoff(due.attempts),
                f"{type(exc).__name__}: {exc}"[:500],
                failed_attempt=True,
            )
            return 0

    async def _work(self, due: StoredDelivery) -> int:
        now = self._now_ms()
        deliverer = self._deliverers.get(due.network)
        stored = self._store.report(due.execution_id)
        if deliverer is None or stored is None:
            # Not a network this node serves: another node delivers there. Look again rarely.
            self._store.postpone_delivery(due.execution_id, due.network, now + MAX_BACKOFF_MS, "no deliverer")
            return 0
        first_sender = False
        if due.attempts == 0 and due.state is DeliveryState.NOT_DELIVERED:
            position = rotation_position(due.execution_id, self._index, self._n)
            first_at = stored.received_ms + position * self._stagger_ms
            if now < first_at:
                self._store.postpone_delivery(due.execution_id, due.network, first_at, "waiting for its turn")
                return 0
            first_sender = position == 0
        # The first sender's first attempt sends at once: `deliver` is idempotent and reads the
        # network's outcome itself where sending twice would cost (the chain), so asking `status`
        # first would only add a round trip. Later checks ask first and usually find it landed.
        status = DeliveryStatus(due.network, DeliveryState.NOT_DELIVERED)
        if not first_sender:
            status = await deliverer.status(stored.report)
        attempted = False
        if status.state in (DeliveryState.NOT_DELIVERED, DeliveryState.PENDING):
            status = await deliverer.deliver(stored.report)
            attempted = True
            self._metrics.deliveries.labels(network=due.network, outcome="sent").inc()
        return self._record(due, status, attempted, stored)

    def _record(
        self, due: StoredDelivery, status: DeliveryStatus, attempted: bool, stored: StoredReport
    ) -> int:
        now = self._now_ms()
        received_ms = stored.received_ms
        status = DeliveryStatus(due.network, status.state, status.reference, status.detail)
        next_check = now + self._backoff(due.attempts)
        self._store.update_delivery(
            due.execution_id, status, next_check_ms=next_check, now_ms=now, attempted=attempted
        )
        sids = [hex32(i.settlement_id) for i in stored.report.items]
        if status.state is DeliveryState.DELIVERED:
            self._metrics.deliveries.labels(network=due.network, outcome="delivered").inc()
            self._metrics.delivery_latency.observe(max(0, now - received_ms) / 1000)
            for sid in sids:
                log.info(
                    "settlement %s delivered to %s (report %s, ref %s%s)",
                    sid,
                    due.network,
                    hex32(due.execution_id),
                    status.reference or "-",
                    ", sent by this node" if attempted or due.attempts > 0 else "",
                    extra={"settlement_id": sid, "network": due.network, "reference": status.reference},
                )
            return 1
        if status.state is DeliveryState.FAILED:
            self._metrics.deliveries.labels(network=due.network, outcome="failed").inc()
            for sid in sids:
                log.error(
                    "settlement %s: %s refused report %s for good: %s",
                    sid,
                    due.network,
                    hex32(due.execution_id),
                    status.detail,
                    extra={"settlement_id": sid, "network": due.network},
                )
        return 0
