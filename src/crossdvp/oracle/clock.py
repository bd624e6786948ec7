"""The node's clock, injected so that rounds, retries and delivery staggering are testable.

Only scheduling reads this clock (which slot is it, is a retry due). Decisions never do: they use the
ledgers' own final times (DESIGN.md, "Time is the ledger's").
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError(f"a clock cannot go back (advance by {ms} ms)")
        self._now_ms += ms

    def set(self, now_ms: int) -> None:
        self._now_ms = now_ms
