"""The payments observer and deliverer against an in-memory feed (httpx.MockTransport).

These pin the parsing, watermark and error-mapping rules; test_observe_payments.py runs the same
adapters against the real payments service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from crossdvp.oracle.errors import LedgerAccessDenied, LedgerUnavailable
from crossdvp.oracle.observe_payments import PaymentsObserver

NETWORK = "payments:test-ledger"
SID = bytes(range(32))
TERMS_HASH = bytes(range(32, 64))


def hold_event(
    cursor: int, time_s: int, *, kind: str = "hold_placed", nested: bool = False
) -> dict[str, Any]:
    hold = {
        "settlement_id": "0x" + SID.hex(),
        "leg_index": 1,
        "terms_hash": "0x" + TERMS_HASH.hex(),
        "payer_account": "acct-buyer",
        "payee_account": "acct-seller",
        "currency": "USD",
        "amount_minor": 100_000_00,
        "deadline_s": 2_000,
    }
    event: dict[str, Any] = {"cursor": cursor, "kind": kind, "time_s": time_s}
    if nested:
        event["hold"] = hold
    else:
        event.update(hold)
    return event


class FakeLedger:
    """A feed served from a list of events; records every request it saw."""

    def __init__(self, events: list[dict[str, Any]], now_s: int) -> None:
        self.events = events
        self.now_s = now_s
        self.requests: list[httpx.Request] = []
        self.fail_with: int | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, text="boom")
        if request.url.path == "/v1/info":
            return httpx.Response(
                200, json={"ledger_id": "test-ledger", "network": NETWORK, "time_s": self.now_s}
            )
        assert request.url.path == "/v1/events"
        assert request.headers["authorization"] == "Bearer oracle-key"
        after = int(request.url.params.get("after", "0"))
        limit = int(request.url.params["limit"])
        page = [e for e in self.events if e["cursor"] > after][:limit]
        next_cursor = page[-1]["cursor"] if page else after
        return httpx.Response(200, json={"events": page, "next_cursor": next_cursor, "now_s": self.now_s})


def observer(ledger: FakeLedger, **kwargs: Any) -> PaymentsObserver:
    return PaymentsObserver(
        "http://ledger.test",
        "oracle-key",
        network=NETWORK,
        wait_s=0,
        transport=httpx.MockTransport(ledger.handler),
        **kwargs,
    )


def run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


def test_hold_placed_events_become_locks_and_other_kinds_are_skipped() -> None:
    ledger = FakeLedger(
        [hold_event(1, 1_000), hold_event(2, 1_005, kind="hold_settled"), hold_event(3, 1_010, nested=True)],
        now_s=1_020,
    )

    async def scenario() -> Any:
        obs = observer(ledger)
        try:
            return await obs.poll(None)
        finally:
            await obs.aclose()

    seen = run(scenario)
    assert seen.network == NETWORK
    assert [lock.locked_at_s for lock in seen.locks] == [1_000, 1_010]
    lock = seen.locks[0]
    assert (lock.settlement_id, lock.terms_hash, lock.leg_index) == (SID, TERMS_HASH, 1)
    assert (lock.asset, lock.amount_minor, lock.payer, lock.payee) == (
        "USD",
        100_000_00,
        "acct-buyer",
        "acct-seller",
    )
    assert lock.deadline_s == 2_000
    assert seen.final_time_s == 1_020
    assert seen.cursor == "3"
    assert "after" not in ledger.requests[-1].url.params


def test_cursor_resumes_without_duplicates_and_full_pages_lower_the_watermark() -> None:
    # Three events share time 1_001: a page cut after the first of them must not claim 1_001 is complete.
    ledger = FakeLedger(
        [hold_event(1, 1_000), hold_event(2, 1_001), hold_event(3, 1_001), hold_event(4, 1_001)], 1_050
    )

    async def scenario() -> list[Any]:
        obs = observer(ledger, limit=2)
        polls = []
        cursor = None
        try:
            for _ in range(4):
                seen = await obs.poll(cursor)
                polls.append(seen)
                cursor = seen.cursor
        finally:
            await obs.aclose()
        return polls

    polls = run(scenario)
    assert [len(p.locks) for p in polls] == [2, 2, 0, 0]
    assert [p.cursor for p in polls] == ["2", "4", "4", "4"]
    # full pages: just before the last event's time; then the feed's own watermark
    assert [p.final_time_s for p in polls] == [1_000, 1_000, 1_050, 1_050]
    feed = [r for r in ledger.requests if r.url.path == "/v1/events"]
    assert [r.url.params.get("after") for r in feed] == [None, "2", "4", "4"]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_retryable(status: int) -> None:
    ledger = FakeLedger([hold_event(1, 1_000)], 1_010)
    ledger.fail_with = status

    async def scenario() -> None:
        obs = observer(ledger)
        try:
            await obs.poll("7")
        finally:
            await obs.aclose()

    with pytest.raises(LedgerUnavailable) as raised:
        run(scenario)
    assert raised.value.retryable


def test_rejected_key_is_not_retryable() -> None:
    ledger = FakeLedger([], 1_010)
    ledger.fail_with = 401
    with pytest.raises(LedgerAccessDenied) as raised:
        run(lambda: observer(ledger).poll(None))
    assert not raised.value.retryable


def test_malformed_event_is_reported_naming_the_field() -> None:
    bad = hold_event(1, 1_000)
    bad["amount_minor"] = "100"
    ledger = FakeLedger([bad], 1_010)
    with pytest.raises(LedgerUnavailable, match="amount_minor"):
        run(lambda: observer(ledger).poll(None))


def test_connect_reads_the_network_from_the_ledger() -> None:
    ledger = FakeLedger([], 1_010)

    async def scenario() -> str:
        obs = await PaymentsObserver.connect(
            "http://ledger.test", "oracle-key", wait_s=0, transport=httpx.MockTransport(ledger.handler)
        )
        await obs.aclose()
        return obs.network

    assert run(scenario) == NETWORK
