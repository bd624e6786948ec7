"""The ledger's clock, injected so tests control time (deadlines, reclaim) without sleeping.

Ledger time is what makes a hold "before the deadline" and what the event feed reports as its
watermark; the ledger never reads the wall clock anywhere else.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The real clock (`time.time`)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to; thread-safe (the service reads it from worker threads)."""

    def __init__(self, start_s: int = 1_800_000_000) -> None:
        self._now_ms = start_s * 1000
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def set_s(self, now_s: int) -> None:
        with self._lock:
            self._now_ms = now_s * 1000

    def advance_s(self, seconds: int) -> None:
        with self._lock:
            self._now_ms += seconds * 1000
