"""The console's state: one shared snapshot of every source, refreshed at most every `max_age_ms`.

Several open pages polling every second would otherwise multiply the load on the nodes and the
ledgers; concurrent requests wait for the same refresh instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crossdvp.console.aggregate import build_detail, build_rows, filter_rows
from crossdvp.console.config import ConsoleConfig
from crossdvp.console.don import build_don
from crossdvp.console.facts import ChainFacts, LedgerFacts, NodeProbe
from crossdvp.console.ledgers import build_ledgers
from crossdvp.console.sources import ChainSource, LedgerSource, NodeSource
from crossdvp.console.views import DonView, LedgersView, SettlementDetail, SettlementRow

__all__ = ["Console", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    probes: tuple[NodeProbe, ...]
    chain: ChainFacts
    ledger: LedgerFacts
    taken_at_ms: int


class Console:
    """Gathers facts from the sources and builds the pages' views. `clock` returns unix seconds."""

    def __init__(
        self,
        config: ConsoleConfig,
        *,
        nodes: NodeSource,
        chain: ChainSource,
        ledger: LedgerSource,
        clock: Callable[[], float] = time.time,
        max_age_ms: int = 750,
    ) -> None:
        self.config = config
        self._nodes = nodes
        self._chain = chain
        self._ledger = ledger
        self._clock = clock
        self._max_age_ms = max_age_ms
        self._snapshot: Snapshot | None = None
        self._refresh_lock = asyncio.Lock()

    def now_s(self) -> int:
        return int(self._clock())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def snapshot(self) -> Snapshot:
        """The latest snapshot, refreshed if older than max_age_ms (one refresh at a time)."""
        async with self._refresh_lock:
            current = self._snapshot
            if current is not None and self._now_ms() - current.taken_at_ms < self._max_age_ms:
                return current
            probes, chain, ledger = await asyncio.gather(
                asyncio.gather(*(self._nodes.probe(n) for n in self.config.nodes)),
                self._chain.facts(),
                self._ledger.facts(),
            )
            self._snapshot = Snapshot(tuple(probes), chain, ledger, self._now_ms())
            return self._snapshot

    async def rows(self, *, status: str | None = None, party: str | None = None) -> tuple[SettlementRow, ...]:
        snap = await self.snapshot()
        rows = build_rows(self.config, snap.probes, snap.chain, snap.ledger)
        return filter_rows(rows, status=status, party=party)

    async def detail(self, settlement_id: str) -> SettlementDetail | None:
        """One settlement, asking every live node for it (the list endpoints are paged)."""
        snap = await self.snapshot()
        up = [p.endpoint for p in snap.probes if p.up]
        answers = await asyncio.gather(*(self._nodes.settlement(n, settlement_id) for n in up))
        views: list[tuple[str, Mapping[str, Any]]] = [
            (node.name, view) for node, view in zip(up, answers, strict=True) if view is not None
        ]
        return build_detail(self.config, views, snap.chain, snap.ledger)

    async def don(self) -> DonView:
        return build_don(self.config, (await self.snapshot()).probes)

    async def ledgers(self) -> LedgersView:
        snap = await self.snapshot()
        return build_ledgers(self.config, snap.chain, snap.ledger)
