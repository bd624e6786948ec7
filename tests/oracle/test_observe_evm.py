"""The EVM observer against a real anvil and the real contracts.

Covers: locks appear only once final, with ledger timestamps; resuming from a cursor over many ranges
without duplicates or gaps; a reorg deeper than the finality depth raises FinalityViolation (every
time, never absorbed); a reorg inside the non-final tip is invisible; RPC failures (dead port, an
erroring or silent proxy) are retryable and the same cursor works afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.errors import ConfigError
from crossdvp.oracle.errors import FinalityViolation, LedgerUnavailable
from crossdvp.oracle.observe_evm import FINALIZED, EvmObserver
from crossdvp.oracle.ports import Observed
from crossdvp.process import free_port
from crossdvp.settlement.decision import LockObservation
from tests.oracle.evm_world import World, deploy_world, lock, run

pytestmark = pytest.mark.integration


@pytest.fixture
def world(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> World:
    return deploy_world(evm, dev_senders)


def observer(anvil: Anvil, world: World, *, url: str | None = None, **kwargs: Any) -> EvmObserver:
    return EvmObserver(
        url or anvil.rpc_url,
        chain_id=anvil.chain_id,
        escrow=world.network.escrow,
        start_block=world.network.deployed_at_block,
        **kwargs,
    )


def poll(obs: EvmObserver, cursor: str | None) -> Observed:
    async def once() -> Observed:
        try:
            return await obs.poll(cursor)
        finally:
            await obs.aclose()

    return run(once)


def cursor_block(cursor: str) -> int:
    return int(cursor.split(":")[0])


def test_a_lock_is_reported_only_once_its_block_is_final(anvil: Anvil, world: World, evm: EvmClient) -> None:
    obs = observer(anvil, world, finality=3)
    settlement_id = b"\x01" * 32
    locked_in = lock(world, settlement_id, leg_index=2, amount=1_234)

    seen = poll(obs, None)
    assert seen.network == f"eip155:{anvil.chain_id}"
    assert seen.locks == ()
    assert cursor_block(seen.cursor) == locked_in - 3
    assert seen.final_time_s == evm.get_block(locked_in - 3).timestamp

    evm.mine(2)
    seen = poll(obs, seen.cursor)
    assert seen.locks == ()
    assert cursor_block(seen.cursor) == locked_in - 1

    evm.mine(1)
    seen = poll(obs, seen.cursor)
    block = evm.get_block(locked_in)
    assert seen.cursor == f"{locked_in}:0x{block.hash.hex()}"
    assert seen.final_time_s == block.timestamp
    (found,) = seen.locks
    assert found.network == f"eip155:{anvil.chain_id}"
    assert (found.settlement_id, found.leg_index, found.terms_hash) == (settlement_id, 2, b"\x22" * 32)
    assert (found.asset, found.amount_minor) == (world.network.token, 1_234)
    assert (found.payer, found.payee) == (world.seller.address, world.buyer.address)
    assert found.locked_at_s == block.timestamp
    assert found.deadline_s == world.contracts.escrow.get_lock(settlement_id, 2).deadline_s

    # Nothing new: same cursor, no duplicate, the watermark holds.
    again = poll(obs, seen.cursor)
    assert (again.locks, again.cursor, again.final_time_s) == ((), seen.cursor, seen.final_time_s)


def test_resuming_from_the_cursor_over_many_ranges_has_no_duplicates_or_gaps(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    expected = []
    for i in range(8):
        settlement_id = bytes([0x40 + i]) * 32
        last_locked_in = lock(world, settlement_id, amount=100 + i)
        expected.append(settlement_id)
        evm.mine(i % 4)  # empty blocks between locks, so locks straddle range boundaries
    head = evm.block_number()
    obs = observer(anvil, world, finality=0, max_block_range=3, max_ranges_per_poll=2)

    found: list[LockObservation] = []
    watermarks: list[int] = []
    cursor = None
    polls = 0
    while cursor is None or cursor_block(cursor) < head:
        seen = poll(obs, cursor)
        assert cursor is None or cursor_block(seen.cursor) - cursor_block(cursor) <= 6  # bounded step
        found.extend(seen.locks)
        watermarks.append(seen.final_time_s)
        cursor = seen.cursor
        polls += 1
    assert polls > 2
    assert [lock.settlement_id for lock in found] == expected
    assert [lock.amount_minor for lock in found] == [100 + i for i in range(8)]
    assert watermarks == sorted(watermarks)
    # a bare block number (an operator's starting point) is a valid cursor too
    assert [lock.settlement_id for lock in poll(obs, str(last_locked_in - 1)).locks] == expected[-1:]


def test_a_reorg_deeper_than_the_finality_depth_raises_and_keeps_raising(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    obs = observer(anvil, world, finality=2)
    snapshot = evm.snapshot()
    evm.mine(6)
    seen = poll(obs, None)
    read_as_final = cursor_block(seen.cursor)

    evm.revert(snapshot)
    # Different timestamps make the replacement blocks different blocks (empty blocks would repeat).
    evm.set_next_block_timestamp(evm.latest_block().timestamp + 500)
    evm.mine(8)
    assert evm.block_number() - 2 > read_as_final

    with pytest.raises(FinalityViolation) as raised:
        poll(obs, seen.cursor)
    assert not raised.value.retryable
    assert raised.value.block_number == read_as_final
    assert obs.finality_violations == 1
    with pytest.raises(FinalityViolation):
        poll(obs, seen.cursor)
    assert obs.finality_violations == 2


def test_a_reorg_within_the_non_final_tip_is_invisible(anvil: Anvil, world: World, evm: EvmClient) -> None:
    obs = observer(anvil, world, finality=3)
    before = poll(obs, None)
    snapshot = evm.snapshot()
    dropped, remined = b"\xd0" * 32, b"\xe0" * 32
    lock(world, dropped)
    lock(world, remined)
    tip = poll(obs, before.cursor)
    assert tip.locks == ()  # neither lock is final yet

    evm.revert(snapshot)  # both locks vanish before they were final
    evm.set_next_block_timestamp(evm.latest_block().timestamp + 100)
    relocked_in = lock(world, remined)
    evm.mine(3)

    seen = poll(obs, tip.cursor)  # the cursor taken during the reorged tip is still good
    assert [found.settlement_id for found in seen.locks] == [remined]
    assert seen.locks[0].locked_at_s == evm.get_block(relocked_in).timestamp
    assert obs.finality_violations == 0


def test_the_finalized_tag_bounds_what_is_read(anvil: Anvil, world: World, evm: EvmClient) -> None:
    final_lock, tip_lock = b"\xf1" * 32, b"\xf2" * 32
    lock(world, final_lock)
    evm.mine(70)  # anvil's `finalized` block trails the head by 64
    lock(world, tip_lock)
    obs = observer(anvil, world, finality=FINALIZED)
    finalized = int(evm.request("eth_getBlockByNumber", ["finalized", False])["number"], 16)
    seen = poll(obs, None)
    assert cursor_block(seen.cursor) == finalized
    assert seen.final_time_s == evm.get_block(finalized).timestamp
    assert [found.settlement_id for found in seen.locks] == [final_lock]


def test_a_start_block_ahead_of_finality_waits_with_a_true_watermark(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    head = evm.block_number()
    obs = EvmObserver(
        anvil.rpc_url, chain_id=anvil.chain_id, escrow=world.network.escrow, finality=0, start_block=head + 3
    )
    waiting = poll(obs, None)
    assert (waiting.locks, waiting.cursor) == ((), str(head + 2))
    assert waiting.final_time_s == evm.get_block(head).timestamp

    evm.mine(3)
    settlement_id = b"\x5a" * 32
    lock(world, settlement_id)
    seen = poll(obs, waiting.cursor)
    assert [found.settlement_id for found in seen.locks] == [settlement_id]


def test_an_endpoint_serving_another_chain_is_a_config_error(anvil: Anvil, world: World) -> None:
    obs = EvmObserver(anvil.rpc_url, chain_id=anvil.chain_id + 1, escrow=world.network.escrow, finality=0)
    with pytest.raises(ConfigError, match="serves chain"):
        poll(obs, None)


class FlakyProxy:
    """A minimal HTTP/1.1 proxy in front of anvil, written with asyncio streams.

    mode "forward" passes requests through; "error" answers 503; "rpc_error" answers a JSON-RPC error
    object; "hang" reads the request and never answers.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "forward"
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            async with httpx.AsyncClient() as upstream:
                while True:
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                    except (asyncio.IncompleteReadError, ConnectionError):
                        return
                    length = 0
                    for line in head.decode("latin-1").split("\r\n"):
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    body = await reader.readexactly(length)
                    if self.mode == "hang":
                        await asyncio.Event().wait()
                    if self.mode == "error":
                        status, payload = 503, b"upstream unavailable"
                    elif self.mode == "rpc_error":
                        error = {
                            "jsonrpc": "2.0",
                            "id": None,
                            "error": {"code": -32005, "message": "rate limited"},
                        }
                        status, payload = 200, json.dumps(error).encode()
                    else:
                        response = await upstream.post(
                            self.upstream, content=body, headers={"content-type": "application/json"}
                        )
                        status, payload = response.status_code, response.content
                    writer.write(
                        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    await writer.drain()
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"


def test_a_dead_endpoint_is_a_retryable_error(anvil: Anvil, world: World, dead_url: str) -> None:
    obs = observer(anvil, world, url=dead_url, finality=0, timeout_s=1.0)
    with pytest.raises(LedgerUnavailable) as raised:
        poll(obs, None)
    assert raised.value.retryable


def test_failing_rpc_is_retryable_and_the_same_cursor_works_afterwards(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    start = poll(observer(anvil, world, finality=0), None)
    settlement_id = b"\x77" * 32
    lock(world, settlement_id)

    async def scenario() -> tuple[list[LedgerUnavailable], Observed]:
        async with FlakyProxy(anvil.rpc_url) as proxy:
            obs = observer(anvil, world, url=proxy.url, finality=0, timeout_s=0.5)
            failures = []
            try:
                for mode in ("error", "rpc_error", "hang"):
                    proxy.mode = mode
                    try:
                        await obs.poll(start.cursor)
                    except LedgerUnavailable as exc:
                        failures.append(exc)
                proxy.mode = "forward"
                return failures, await obs.poll(start.cursor)
            finally:
                await obs.aclose()

    failures, recovered = run(scenario)
    assert len(failures) == 3
    assert all(exc.retryable for exc in failures)
    assert "timed out" in str(failures[2])
    assert [found.settlement_id for found in recovered.locks] == [settlement_id]
