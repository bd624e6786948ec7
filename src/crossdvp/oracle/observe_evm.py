"""Observe an EVM chain: the escrow's final `Locked` events and the chain's final-time watermark.

Step 3 of the protocol (DESIGN.md "Decide") needs, per network, every final lock and a final time
that is a watermark. On a chain both come from final blocks only: finality is prefix-closed, so once
block F is final every lock in blocks <= F is known, and F's timestamp is the watermark.

Finality is either a confirmation depth N (final = latest - N) or the node's `finalized` block tag.
Reading only final blocks makes reorgs shallower than the assumption invisible to the node. A reorg
deeper than it breaks the assumption the protocol's safety rests on, so it is never absorbed silently:
the cursor carries the hash of the last block read, every poll re-checks it, and a different hash
raises FinalityViolation (not retryable: an operator must look, raise the depth, or use `finalized`).

The observer is stateless (cursor in, cursor out): the node persists the cursor with the locks in one
transaction. Cursor = "<last fully processed block>:<its hash>". A bare "<block>" is accepted too (an
operator starting from a known block), and is then trusted without a hash check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from crossdvp.chain._abi import AbiEvent
from crossdvp.chain.client import DEFAULT_MAX_LOG_RANGE
from crossdvp.chain.contracts import load_artifact
from crossdvp.errors import ConfigError
from crossdvp.oracle._rpc import JsonRpcClient, hex_int, to_hex
from crossdvp.oracle.errors import FinalityViolation, LedgerUnavailable
from crossdvp.oracle.ports import Observed
from crossdvp.settlement.decision import LockObservation

__all__ = ["FINALIZED", "EvmObserver", "Finality", "locked_event"]

logger = logging.getLogger(__name__)

FINALIZED: Final = "finalized"
#: A confirmation depth (final = latest - depth) or the node's `finalized` block tag.
Finality = int | Literal["finalized"]

#: The escrow event the observer reads, and the argument names it relies on (spec: DvPEscrow).
_LOCKED_FIELDS = ("settlementId", "legIndex", "token", "locker", "payee", "amount", "deadline", "termsHash")


def locked_event() -> AbiEvent:
    """The `Locked` event of the compiled DvPEscrow ABI (its topic and decoder).

    Raises ConfigError if the artifact is missing or its Locked event lacks an argument the observer reads.
    """
    event = load_artifact("DvPEscrow").contract_abi.events.get("Locked")
    if event is None:
        raise ConfigError("the DvPEscrow artifact defines no `Locked` event; run `make contracts`")
    missing = [name for name in _LOCKED_FIELDS if name not in {p.name for p in event.inputs}]
    if missing:
        raise ConfigError(f"DvPEscrow.Locked lacks argument(s) {missing}; the observer cannot decode it")
    return event


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    hash: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class _Position:
    """Where a cursor points: the last fully processed block, and its hash if the cursor carried one."""

    block: int
    block_hash: str | None

    @classmethod
    def parse(cls, cursor: str | None, start_block: int) -> _Position:
        if cursor is None:
            return cls(start_block - 1, None)
        number, _, block_hash = cursor.partition(":")
        try:
            block = int(number)
        except ValueError:
            raise ConfigError(
                f"EVM observer cursor {cursor!r} is not '<block>' or '<block>:<hash>'"
            ) from None
        if block < -1 or (block_hash and not block_hash.startswith("0x")):
            raise ConfigError(f"EVM observer cursor {cursor!r} is not '<block>' or '<block>:<hash>'")
        return cls(block, block_hash.lower() or None)

    def format(self) -> str:
        return f"{self.block}:{self.block_hash}" if self.block_hash else str(self.block)


def _header(raw: object, what: str) -> _Header | None:
    """A block header from eth_getBlockByNumber, or None for a block the node does not have."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("hash"), str):
        raise LedgerUnavailable(f"malformed JSON-RPC response: {what} is {raw!r:.200}")
    return _Header(
        number=hex_int(raw.get("number"), f"{what}.number"),
        hash=str(raw["hash"]).lower(),
        timestamp=hex_int(raw.get("timestamp"), f"{what}.timestamp"),
    )


class EvmObserver:
    """Reads the escrow's final `Locked` events from one EVM chain (an `Observer`).

    `max_block_range` bounds one eth_getLogs call (providers cap it); at most `max_ranges_per_poll`
    ranges are read per poll, so catching up over many blocks proceeds in bounded steps, each with
    its own watermark. `finality_violations` counts deep reorgs detected (also raised, never absorbed).
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        chain_id: int,
        escrow: str,
        finality: Finality = 12,
        start_block: int = 0,
        max_block_range: int = DEFAULT_MAX_LOG_RANGE,
        max_ranges_per_poll: int = 10,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if finality != FINALIZED and (not isinstance(finality, int) or finality < 0):
            raise ConfigError(f"finality must be a confirmation depth >= 0 or 'finalized', got {finality!r}")
        if max_block_range < 1 or max_ranges_per_poll < 1:
            raise ConfigError("max_block_range and max_ranges_per_poll must be >= 1")
        if start_block < 0:
            raise ConfigError(f"start_block must be >= 0, got {start_block}")
        if not (escrow.startswith("0x") and len(escrow) == 42):
            raise ConfigError(f"escrow must be a 0x-prefixed 20-byte address, got {escrow!r}")
        self.chain_id = chain_id
        self.escrow = escrow.lower()
        self.finality: Finality = finality
        self.start_block = start_block
        self.max_block_range = max_block_range
        self.max_ranges_per_poll = max_ranges_per_poll
        self.finality_violations = 0
        self._network = f"eip155:{chain_id}"
        self._rpc = JsonRpcClient(rpc_url, timeout_s=timeout_s, transport=transport)
        self._locked = locked_event()
        self._locked_topic = "0x" + self._locked.topic0.hex()
        self._chain_checked = False

    @property
    def network(self) -> str:
        return self._network

    async def aclose(self) -> None:
        await self._rpc.aclose()

    def _violation(self, block: int, expected: str, actual: str | None, when: str) -> FinalityViolation:
        self.finality_violations += 1
        message = (
            f"{self._network}: block {block} was read as final with hash {expected}, {when} it is "
            f"{actual or 'missing'}; the chain reorganised deeper than finality={self.finality!r}. "
            "Observation of this network stops: raise the confirmation depth or use 'finalized'."
        )
        logger.error(message, extra={"network": self._network, "block": block})
        return FinalityViolation(message, block_number=block, expected_hash=expected, actual_hash=actual)

    async def poll(self, cursor: str | None) -> Observed:
        """Every final Locked event after `cursor`, the final-time watermark and the next cursor.

        Raises: LedgerUnavailable (retryable) on transport errors, timeouts, RPC errors, a malformed
        answer, or a node that is behind the cursor; ConfigError if the endpoint serves another chain
        or the cursor is malformed; FinalityViolation if a block read as final changed its hash.
        """
        position = _Position.parse(cursor, self.start_block)
        head_tag = FINALIZED if self.finality == FINALIZED else "latest"
        calls: list[tuple[str, Sequence[object]]] = [("eth_getBlockByNumber", [head_tag, False])]
        if position.block >= 0:
            calls.append(("eth_getBlockByNumber", [to_hex(position.block), False]))
        if not self._chain_checked:
            calls.append(("eth_chainId", []))
        replies = await self._rpc.batch(calls)
        if not self._chain_checked:
            served = hex_int(replies[-1], "eth_chainId")
            if served != self.chain_id:
                raise ConfigError(
                    f"RPC {self._rpc.url} serves chain {served}, configured chain_id is {self.chain_id}"
                )
            self._chain_checked = True
        head = _header(replies[0], f"{head_tag} block")
        if head is None:
            raise LedgerUnavailable(f"{self._network}: the node has no {head_tag!r} block yet")
        final_block = head.number if self.finality == FINALIZED else max(head.number - int(self.finality), 0)

        anchor = _header(replies[1], f"block {position.block}") if position.block >= 0 else None
        if position.block_hash is not None:
            if anchor is None:
                # Either a lagging RPC node or a chain that shrank below a block we read as final;
                # the hash check on a later poll tells which. Nothing is lost by waiting.
                raise LedgerUnavailable(
                    f"{self._network}: the RPC node does not have block {position.block} yet"
                )
            if anchor.hash != position.block_hash:
                raise self._violation(position.block, position.block_hash, anchor.hash, "now")

        if final_block == position.block and anchor is not None:
            return Observed(
                self._network, (), anchor.timestamp, _Position(anchor.number, anchor.hash).format()
            )
        if final_block < position.block:
            if position.block_hash is not None and anchor is not None:
                # The tip moved back within the non-final zone (or the RPC node lags): the block we
                # read as final still is, and its time stays the watermark.
                return Observed(self._network, (), anchor.timestamp, position.format())
            # A start block or bare cursor ahead of finality: nothing to read yet, and the final
            # block's own time is a true watermark (no lock can precede the configured start).
            final = head if head.number == final_block else await self._header_at(final_block)
            return Observed(self._network, (), final.timestamp, position.format())

        return await self._read_range(position.block + 1, final_block)

    async def _header_at(self, number: int) -> _Header:
        header = _header(
            await self._rpc.call("eth_getBlockByNumber", [to_hex(number), False]), f"block {number}"
        )
        if header is None:
            raise LedgerUnavailable(f"{self._network}: the RPC node does not have final block {number}")
        return header

    async def _read_range(self, first: int, final_block: int) -> Observed:
        span = self.max_block_range * self.max_ranges_per_poll
        last = min(final_block, first + span - 1)
        ranges = [
            (a, min(a + self.max_block_range - 1, last)) for a in range(first, last + 1, self.max_block_range)
        ]
        head_call = ("eth_getBlockByNumber", [to_hex(last), False])
        calls: list[tuple[str, Sequence[object]]] = [head_call]
        calls += [
            (
                "eth_getLogs",
                [
                    {
                        "address": self.escrow,
                        "topics": [self._locked_topic],
                        "fromBlock": to_hex(a),
                        "toBlock": to_hex(b),
                    }
                ],
            )
            for a, b in ranges
        ]
        replies = await self._rpc.batch(calls)
        before = _header(replies[0], f"block {last}")
        logs: list[Mapping[str, Any]] = []
        for reply in replies[1:]:
            if not isinstance(reply, list):
                raise LedgerUnavailable(f"malformed eth_getLogs response: {reply!r:.200}")
            logs.extend(reply)

        numbers = sorted({hex_int(log.get("blockNumber"), "log.blockNumber") for log in logs})
        if not numbers:
            # No lock in the range: nothing to pin to a chain but `last` itself, whose hash goes into
            # the cursor and is re-checked by the next poll (a reorg under an empty answer is caught
            # there, as any other). One round trip per new block instead of two.
            if before is None:
                raise LedgerUnavailable(f"{self._network}: the RPC node does not have final block {last}")
            return Observed(
                self._network, (), before.timestamp, _Position(before.number, before.hash).format()
            )
        replies = await self._rpc.batch(
            [head_call] + [("eth_getBlockByNumber", [to_hex(n), False]) for n in numbers]
        )
        after = _header(replies[0], f"block {last}")
        if before is None or after is None:
            raise LedgerUnavailable(f"{self._network}: the RPC node does not have final block {last}")
        # Re-reading the last block around eth_getLogs proves the logs come from the chain whose
        # hash goes into the cursor; the next poll then re-checks that hash.
        if before.hash != after.hash:
            raise self._violation(last, before.hash, after.hash, "while reading logs")
        headers: dict[int, _Header] = {}
        for number, raw in zip(numbers, replies[1:], strict=True):
            header = _header(raw, f"block {number}")
            if header is None:
                raise LedgerUnavailable(f"{self._network}: the RPC node does not have final block {number}")
            headers[number] = header

        logs.sort(
            key=lambda log: (
                hex_int(log.get("blockNumber"), "blockNumber"),
                hex_int(log.get("logIndex"), "logIndex"),
            )
        )
        locks = tuple(self._lock(log, headers) for log in logs)
        logger.debug(
            "observed blocks %d..%d: %d lock(s)", first, last, len(locks), extra={"network": self._network}
        )
        return Observed(self._network, locks, after.timestamp, _Position(after.number, after.hash).format())

    def _lock(self, log: Mapping[str, Any], headers: Mapping[int, _Header]) -> LockObservation:
        number = hex_int(log.get("blockNumber"), "log.blockNumber")
        header = headers[number]
        log_hash = str(log.get("blockHash", "")).lower()
        if log.get("removed") or log_hash != header.hash:
            raise self._violation(number, log_hash, header.hash, "by its header")
        try:
            topics = [bytes.fromhex(str(t).removeprefix("0x")) for t in log["topics"]]
            args = self._locked.decode(topics, bytes.fromhex(str(log["data"]).removeprefix("0x")))
        except (ValueError, TypeError, KeyError) as exc:
            # Our own escrow emitted it, so this is a wrong address or ABI, not a passing failure.
            raise ConfigError(f"undecodable Locked log in block {number} of {self.escrow}: {exc}") from exc
        return LockObservation(
            network=self._network,
            leg_index=int(args["legIndex"]),
            settlement_id=bytes(args["settlementId"]),
            terms_hash=bytes(args["termsHash"]),
            asset=str(args["token"]).lower(),
            amount_minor=int(args["amount"]),
            payer=str(args["locker"]).lower(),
            payee=str(args["payee"]).lower(),
            deadline_s=int(args["deadline"]),
            locked_at_s=header.timestamp,
        )
