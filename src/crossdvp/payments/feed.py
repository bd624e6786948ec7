"""The event feed the oracle nodes read: ordered hold events with a cursor, and a time watermark.

`now_s` is a watermark in the sense of DESIGN.md: no event stamped at or before `now_s` can be
committed after the response. Why this holds:
- events are stamped inside the serialized write transaction (store.WriteTx) with the ledger time
  `max(clock, last stamp, last watermark)`, so stamps never decrease in commit (= cursor) order;
- the feed reads inside the same serialization (it waits for any in-flight writer, then reads
  everything committed) and persists the time it hands out as `watermark_ms`, so every later write
  stamps at or after it even if the wall clock steps back;
- a later write can still stamp in the *same second* as the watermark, so the feed reports the
  previous second: `now_s = watermark_ms // 1000 - 1`;
- when a page is cut by `limit`, `now_s` is also kept below the first event not returned.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from sqlalchemy import func, select

from crossdvp.payments.ledger import HoldEvent, hold_from_row
from crossdvp.payments.models import events, holds
from crossdvp.payments.store import Store

__all__ = ["FeedNotifier", "FeedPage", "latest_cursor", "read_feed"]


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: tuple[HoldEvent, ...]
    next_cursor: int
    now_s: int
    has_more: bool


def read_feed(store: Store, *, after: int, limit: int) -> FeedPage:
    """Events with cursor > `after` (at most `limit`), the cursor to continue from, and the watermark."""
    with store.write() as tx:
        query = (
            select(
                events.c.cursor,
                events.c.kind,
                events.c.time_ms.label("event_time_ms"),
                events.c.workflow_execution_id.label("event_execution_id"),
                holds,
            )
            .join(holds, holds.c.hold_id == events.c.hold_id)
            .where(events.c.cursor > after)
            .order_by(events.c.cursor)
            .limit(limit + 1)
        )
        rows = tx.conn.execute(query).all()
        tx.watermark_ms = max(tx.watermark_ms, tx.now_ms)
        tx.dirty = True
        now_s = tx.now_ms // 1000 - 1
        has_more = len(rows) > limit
        if has_more:
            now_s = min(now_s, rows[limit].event_time_ms // 1000 - 1)
            rows = rows[:limit]
    page = tuple(
        HoldEvent(
            cursor=int(row.cursor),
            kind=row.kind,
            time_s=row.event_time_ms // 1000,
            time_ms=int(row.event_time_ms),
            hold=hold_from_row(row),
            workflow_execution_id=row.event_execution_id,
        )
        for row in rows
    )
    next_cursor = page[-1].cursor if page else after
    return FeedPage(events=page, next_cursor=next_cursor, now_s=now_s, has_more=has_more)


def latest_cursor(store: Store) -> int:
    """The highest event cursor committed (a cheap read, used while long-polling)."""
    with store.read() as conn:
        return int(conn.execute(select(func.coalesce(func.max(events.c.cursor), 0))).scalar_one())


class FeedNotifier:
    """Wakes long-polls in this process when a write commits events. Other processes writing the
    same database are caught by the periodic re-check (`recheck_s`)."""

    def __init__(self) -> None:
        self._version = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def bump(self) -> None:
        with self._lock:
            self._version += 1

    async def wait_change(self, since: int, timeout_s: float, *, tick_s: float = 0.02) -> None:
        """Return when `version` moved past `since`, or after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.version == since:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(tick_s, remaining))
