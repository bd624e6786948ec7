"""The payments observer against the real payments service.

Most tests run the service's app in-process with a manual ledger clock (exact ledger times); the last
starts `crossdvp payments serve` as a process to show the long-poll waking on a new hold and a ledger
that dies and comes back losing nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crossdvp.oracle.errors import LedgerUnavailable
from crossdvp.oracle.observe_payments import PaymentsObserver
from crossdvp.oracle.ports import Observed
from crossdvp.payments.auth import generate_key
from crossdvp.process import free_port
from tests.oracle.evm_world import run
from tests.oracle.payments_world import (
    BASE,
    NETWORK,
    START_S,
    TERMS_HASH,
    InProcess,
    Keys,
    in_process_ledger,
    place_hold,
    setup_ledger,
    start_ledger,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[InProcess]:
    with in_process_ledger(tmp_path) as here:
        yield here


def test_holds_are_observed_with_ledger_times_and_the_feed_watermark(ledger: InProcess) -> None:
    first, second = b"\x61" * 32, b"\x62" * 32

    async def scenario() -> list[Observed]:
        async with ledger.client() as client:
            await place_hold(client, ledger.keys, first, 700)
            ledger.clock.advance_s(5)
            await place_hold(client, ledger.keys, second, 800)
        ledger.clock.advance_s(10)
        obs = await PaymentsObserver.connect(BASE, ledger.keys.oracle, wait_s=0, transport=ledger.transport())
        try:
            seen = await obs.poll(None)
            again = await obs.poll(seen.cursor)
            return [seen, again]
        finally:
            await obs.aclose()

    seen, again = run(scenario)
    assert seen.network == NETWORK
    assert [lock.settlement_id for lock in seen.locks] == [first, second]
    assert [lock.locked_at_s for lock in seen.locks] == [START_S, START_S + 5]
    lock = seen.locks[0]
    assert (lock.network, lock.leg_index, lock.terms_hash) == (NETWORK, 1, TERMS_HASH)
    assert (lock.asset, lock.amount_minor, lock.payer, lock.payee) == ("USD", 700, "alice-usd", "bob-usd")
    assert lock.deadline_s == START_S + 3_600
    # The feed reports the second before the current one (a write may still land in this second).
    assert seen.final_time_s == START_S + 14
    assert (again.locks, again.cursor) == ((), seen.cursor)
    assert again.final_time_s >= seen.final_time_s


def test_paging_through_the_feed_yields_every_hold_once_with_a_safe_watermark(ledger: InProcess) -> None:
    ids = [bytes([0x70 + i]) * 32 for i in range(5)]

    async def scenario() -> list[Observed]:
        async with ledger.client() as client:
            for i, settlement_id in enumerate(ids):
                await place_hold(client, ledger.keys, settlement_id, 100 + i)
                ledger.clock.advance_s(i % 2)  # pairs of holds share a second
        ledger.clock.advance_s(3)
        obs = PaymentsObserver(
            BASE, ledger.keys.oracle, network=NETWORK, wait_s=0, limit=2, transport=ledger.transport()
        )
        polls: list[Observed] = []
        cursor = None
        try:
            for _ in range(4):
                polls.append(await obs.poll(cursor))
                cursor = polls[-1].cursor
        finally:
            await obs.aclose()
        return polls

    polls = run(scenario)
    found = [lock for seen in polls for lock in seen.locks]
    assert [lock.settlement_id for lock in found] == ids
    for i, seen in enumerate(polls):
        # watermark: no hold still to come (in a later page) is stamped at or before it
        later = [lock.locked_at_s for after in polls[i + 1 :] for lock in after.locks]
        assert all(t > seen.final_time_s for t in later)
    assert [seen.final_time_s for seen in polls] == sorted(seen.final_time_s for seen in polls)


@pytest.mark.integration
def test_against_a_served_ledger_the_long_poll_wakes_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys = Keys(admin=generate_key())
    database = tmp_path / "served.db"
    process = start_ledger(database, port, keys.admin, tmp_path)
    try:

        async def first_half() -> tuple[Observed, Observed]:
            async with httpx.AsyncClient(base_url=url) as client:
                await setup_ledger(client, keys)
                obs = await PaymentsObserver.connect(url, keys.oracle, wait_s=0)
                try:
                    empty = await obs.poll(None)
                    obs.wait_s = 20
                    # A poll waiting on the ledger returns when a hold is placed, not after wait_s.
                    waiting = asyncio.ensure_future(obs.poll(empty.cursor))
                    await asyncio.sleep(0)
                    await place_hold(client, keys, b"\x91" * 32)
                    return empty, await waiting
                finally:
                    await obs.aclose()

        empty, woke = run(first_half)
        assert empty.locks == ()
        assert [lock.settlement_id for lock in woke.locks] == [b"\x91" * 32]

        process.stop()

        async def while_down() -> None:
            obs = PaymentsObserver(url, keys.oracle, network=NETWORK, wait_s=0, timeout_s=1.0)
            try:
                await obs.poll(woke.cursor)
            finally:
                await obs.aclose()

        with pytest.raises(LedgerUnavailable) as raised:
            run(while_down)
        assert raised.value.retryable

        process = start_ledger(database, port, keys.admin, tmp_path)

        async def after_restart() -> Observed:
            async with httpx.AsyncClient(base_url=url) as client:
                await place_hold(client, keys, b"\x92" * 32)
            obs = PaymentsObserver(url, keys.oracle, network=NETWORK, wait_s=0)
            try:
                return await obs.poll(woke.cursor)
            finally:
                await obs.aclose()

        resumed = run(after_restart)
        assert [lock.settlement_id for lock in resumed.locks] == [b"\x92" * 32]
    finally:
        process.stop()
