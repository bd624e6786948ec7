"""Watches both ledgers during a DvP run and stamps, with the bench's own monotonic clock, the moment
each fact became visible: a block seen, an escrow Locked/Settled event in it, a hold settled on the
payment ledger. Latencies are differences of these stamps, so both ledgers are judged by one clock.

Finality follows the nodes' rule for a confirmation depth d: block b is final once the head is at
least b + d; its "final at" stamp is when we first saw block b + d. A hold is final when the ledger
commits it (the ledger has no reorgs): placed at the HTTP answer, settled when the event feed shows
`hold_settled`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from crossdvp.bench.rpc import RawRpc
from crossdvp.errors import CrossDvpError
from crossdvp.payments.client import PaymentsClient

__all__ = ["LedgerMonitor", "Stamps", "chain_poll_s_for"]

log = logging.getLogger(__name__)

_CHAIN_POLL_S = 0.02


def chain_poll_s_for(block_time_s: float) -> float:
    """How often to poll the chain head: every 20 ms, or ten times a block on shorter blocks, so a
    block's "seen" stamp is late by at most a tenth of a block time (plus one RPC round trip)."""
    return min(_CHAIN_POLL_S, block_time_s / 10)


@dataclass
class Stamps:
    """What the monitor saw, by settlement id (perf_counter seconds). Guarded by `lock`."""

    block_seen: dict[int, float] = field(default_factory=dict)
    lock_block: dict[bytes, int] = field(default_factory=dict)
    settle_block: dict[bytes, int] = field(default_factory=dict)
    hold_settled: dict[bytes, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LedgerMonitor:
    """Two daemon threads (chain poller, ledger feed long-poll) filling `stamps` until `stop()`."""

    def __init__(
        self,
        *,
        rpc_url: str,
        escrow: str,
        locked_topic: bytes,
        settled_topic: bytes,
        payments_url: str,
        oracle_api_key: str,
        finality_depth: int,
        chain_poll_s: float = _CHAIN_POLL_S,
    ) -> None:
        """`chain_poll_s`: the pause between two reads of the chain head (chain_poll_s_for of the
        chain's block time)."""
        self.stamps = Stamps()
        self.finality_depth = finality_depth
        self._chain_poll_s = chain_poll_s
        self._rpc_url = rpc_url
        self._escrow = escrow
        self._locked = "0x" + locked_topic.hex()
        self._settled = "0x" + settled_topic.hex()
        self._payments_url = payments_url
        self._oracle_key = oracle_api_key
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._guard, args=(self._watch_chain,), name="bench-chain", daemon=True),
            threading.Thread(
                target=self._guard, args=(self._watch_ledger,), name="bench-ledger", daemon=True
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _guard(self, target: object) -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:  # surfaced by the run, which then fails with it
            self.errors.append(exc)

    def final_at(self, block: int) -> float | None:
        """When block `block` became final (first sight of block + depth), or None if not yet."""
        return self.stamps.block_seen.get(block + self.finality_depth)

    def _watch_chain(self) -> None:
        with RawRpc(self._rpc_url, timeout_s=10) as rpc:
            last = rpc.block_number()
            while not self._stop.is_set():
                head = rpc.block_number()
                if head > last:
                    now = time.perf_counter()
                    logs = rpc.call(
                        "eth_getLogs",
                        [
                            {
                                "address": self._escrow,
                                "topics": [[self._locked, self._settled]],
                                "fromBlock": hex(last + 1),
                                "toBlock": hex(head),
                            }
                        ],
                    )
                    with self.stamps.lock:
                        for block in range(last + 1, head + 1):
                            self.stamps.block_seen[block] = now
                        for entry in logs:
                            sid = bytes.fromhex(entry["topics"][1][2:])
                            number = int(entry["blockNumber"], 16)
                            if entry["topics"][0] == self._locked:
                                self.stamps.lock_block[sid] = number
                            else:
                                self.stamps.settle_block[sid] = number
                    last = head
                time.sleep(self._chain_poll_s)

    def _watch_ledger(self) -> None:
        with PaymentsClient(self._payments_url, self._oracle_key, timeout_s=10) as ledger:
            cursor = 0
            while not self._stop.is_set():
                try:
                    feed = ledger.events(after=cursor, limit=1000, wait_s=0.5)
                except CrossDvpError as exc:
                    log.warning("bench: ledger feed read failed (%s); retrying", exc)
                    time.sleep(0.1)
                    continue
                now = time.perf_counter()
                with self.stamps.lock:
                    for event in feed.events:
                        if event.kind == "hold_settled":
                            self.stamps.hold_settled.setdefault(event.settlement_id, now)
                cursor = feed.next_cursor
