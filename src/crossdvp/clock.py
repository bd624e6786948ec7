"""The clock every service reads, injected so tests control time without sleeping.

The payments ledger stamps holds and its feed's watermark with it; an oracle node uses it only for
scheduling (leader slots, retries, delivery staggering) — decisions use the ledgers' own final times
(DESIGN.md, "Time is the ledger's").
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests); thread-safe, since the ledger service reads it
    from worker threads. It never goes back."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self._now_ms = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError(f"a clock cannot go back (advance by {ms} ms)")
        with self._lock:
            self._now_ms += ms

    def advance_s(self, seconds: int) -> None:
        self.advance(seconds * 1000)

    def set_s(self, now_s: int) -> None:
        """Jump to `now_s` (tests of a ledger whose clock was set, e.g. after a restart)."""
        with self._lock:
            self._now_ms = now_s * 1000
