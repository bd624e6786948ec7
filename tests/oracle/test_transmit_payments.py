"""The payments deliverer against the real payments service (its app in-process, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossdvp.oracle.ports import DeliveryState, SignedReport
from crossdvp.oracle.transmit_payments import PaymentsDeliverer
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision
from tests.oracle.evm_world import run, sign_items
from tests.oracle.payments_world import (
    BASE,
    NETWORK,
    START_S,
    TERMS_HASH,
    WORKFLOW,
    InProcess,
    call,
    in_process_ledger,
    place_hold,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[InProcess]:
    with in_process_ledger(tmp_path) as here:
        yield here


def test_a_signed_report_is_delivered_once_and_confirmed(ledger: InProcess) -> None:
    settlement_id = b"\x81" * 32
    report = sign_items(
        [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)], timestamp_s=START_S, workflow=WORKFLOW
    )

    async def scenario() -> tuple[Any, ...]:
        async with ledger.client() as client:
            hold = await place_hold(client, ledger.keys, settlement_id, 900)
            node = PaymentsDeliverer(BASE, ledger.keys.oracle, network=NETWORK, transport=ledger.transport())
            try:
                before = await node.status(report)
                first = await node.deliver(report)
                second = await node.deliver(report)
            finally:
                await node.aclose()
            settled = await call(client, ledger.keys.admin, "GET", f"/v1/holds/{hold['hold_id']}")
            bob = await call(client, ledger.keys.admin, "GET", "/v1/accounts/bob-usd")
        return before, first, second, settled, bob

    before, first, second, settled, bob = run(scenario)
    assert before.state == DeliveryState.NOT_DELIVERED
    assert first.state == second.state == DeliveryState.DELIVERED
    assert first.reference == second.reference == "0x" + report.workflow_execution_id.hex()
    assert settled["state"] == "settled"
    assert bob["available_minor"] == 900


def test_a_report_the_ledger_refuses_is_failed(ledger: InProcess) -> None:
    settlement_id = b"\x82" * 32
    good = sign_items(
        [ReportItem(settlement_id, TERMS_HASH, Decision.ABORT)], timestamp_s=START_S, workflow=WORKFLOW
    )
    one_signature = SignedReport(
        good.raw, good.context, good.signatures[:1], good.workflow_execution_id, good.items
    )

    async def scenario() -> Any:
        node = PaymentsDeliverer(BASE, ledger.keys.oracle, network=NETWORK, transport=ledger.transport())
        try:
            return await node.deliver(one_signature), await node.status(one_signature)
        finally:
            await node.aclose()

    refused, status = run(scenario)
    assert refused.state == DeliveryState.FAILED
    assert "HTTP 422" in refused.detail
    assert status.state == DeliveryState.NOT_DELIVERED
