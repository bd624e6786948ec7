"""The payments deliverer against an in-memory ledger (httpx.MockTransport): request shape, status
mapping and error classes. test_transmit_payments.py runs it against the real service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from crossdvp.oracle.errors import LedgerUnavailable
from crossdvp.oracle.ports import DeliveryState, SignedReport
from crossdvp.oracle.transmit_payments import PaymentsDeliverer
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision

NETWORK = "payments:test-ledger"
SID = bytes(range(32))
TERMS_HASH = bytes(range(32, 64))


def run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


def signed_report() -> SignedReport:
    return SignedReport(
        raw=b"\x01" * 120,
        context=b"\x00" * 96,
        signatures=(b"\x02" * 65, b"\x03" * 65),
        workflow_execution_id=b"\xaa" * 32,
        items=(ReportItem(SID, TERMS_HASH, Decision.SETTLE),),
    )


class FakeReports:
    def __init__(self, post_status: int) -> None:
        self.post_status = post_status
        self.stored: dict[str, dict[str, Any]] = {}
        self.posts = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            body = json.loads(request.content)
            if self.post_status < 300:
                self.stored["0x" + "aa" * 32] = body
            return httpx.Response(
                self.post_status, json={"detail": "no"} if self.post_status >= 400 else body
            )
        execution_id = request.url.path.rsplit("/", 1)[-1]
        if execution_id in self.stored:
            return httpx.Response(200, json=self.stored[execution_id])
        return httpx.Response(404, json={"detail": "unknown report"})


def deliverer(fake: FakeReports) -> PaymentsDeliverer:
    return PaymentsDeliverer(
        "http://ledger.test", "oracle-key", network=NETWORK, transport=httpx.MockTransport(fake.handler)
    )


def test_deliver_posts_hex_and_confirms_by_reading_back() -> None:
    fake = FakeReports(200)

    async def scenario() -> tuple[Any, Any, Any]:
        d = deliverer(fake)
        before = await d.status(signed_report())
        delivered = await d.deliver(signed_report())
        after = await d.status(signed_report())
        await d.aclose()
        return before, delivered, after

    before, delivered, after = run(scenario)
    assert before.state == DeliveryState.NOT_DELIVERED
    assert delivered.state == after.state == DeliveryState.DELIVERED
    assert delivered.reference == "0x" + "aa" * 32
    body = fake.stored["0x" + "aa" * 32]
    assert body["report"] == "0x" + "01" * 120
    assert body["signatures"] == ["0x" + "02" * 65, "0x" + "03" * 65]


def test_a_refused_report_is_failed_with_the_ledgers_reason() -> None:
    status = run(lambda: deliverer(FakeReports(422)).deliver(signed_report()))
    assert status.state == DeliveryState.FAILED
    assert "422" in status.detail


def test_ledger_5xx_on_delivery_is_retryable() -> None:
    with pytest.raises(LedgerUnavailable):
        run(lambda: deliverer(FakeReports(503)).deliver(signed_report()))
