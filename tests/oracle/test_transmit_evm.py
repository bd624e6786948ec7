"""The EVM deliverer against a real anvil, the genuine KeystoneForwarder and the real DvPEscrow."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import LockState
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, SignedReport
from crossdvp.oracle.transmit_evm import EvmDeliverer
from crossdvp.settlement.report import ReportItem, WorkflowIdentity
from crossdvp.settlement.terms import Decision
from tests.oracle.evm_world import World, deploy_world, lock, run, sign_items, signed_report

pytestmark = pytest.mark.integration

TERMS_HASH = b"\x22" * 32  # what evm_world.lock records


@pytest.fixture
def world(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> World:
    return deploy_world(evm, dev_senders)


def deliverer(anvil: Anvil, world: World, key_index: int = 5, **options: Any) -> EvmDeliverer:
    """A node's deliverer to this world's escrow, sending from anvil's dev key `key_index`."""
    return EvmDeliverer(
        anvil.rpc_url,
        chain_id=anvil.chain_id,
        forwarder=world.network.forwarder,
        escrow=world.network.escrow,
        transmitter_key=anvil.dev_keys[key_index],
        **options,
    )


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes each HTTP request on to the node and records the JSON-RPC methods it carried."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[list[str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append([call["method"] for call in (body if isinstance(body, list) else [body])])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def until_sent(self) -> list[list[str]]:
        """The requests up to the first that sent a transaction; forgets everything recorded."""
        sent = next(i for i, methods in enumerate(self.requests) if "eth_sendRawTransaction" in methods)
        taken, self.requests = self.requests[: sent + 1], []
        return taken


def recording_deliverer(anvil: Anvil, world: World) -> tuple[EvmDeliverer, RecordingTransport]:
    transport = RecordingTransport()
    return deliverer(anvil, world, transport=transport), transport


async def deliver_then_close(d: EvmDeliverer, report: SignedReport) -> DeliveryStatus:
    try:
        return await d.deliver(report)
    finally:
        await d.aclose()


async def status_then_close(d: EvmDeliverer, report: SignedReport) -> DeliveryStatus:
    try:
        return await d.status(report)
    finally:
        await d.aclose()


def test_a_report_signed_by_two_of_four_is_delivered_once(anvil: Anvil, world: World, evm: EvmClient) -> None:
    settlement_id = b"\x51" * 32
    lock(world, settlement_id, amount=5_000)
    report = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)])
    node = deliverer(anvil, world)

    assert run(lambda: status_then_close(node, report)).state == DeliveryState.NOT_DELIVERED
    first = run(lambda: deliver_then_close(node, report))
    assert first.state == DeliveryState.DELIVERED
    assert first.network == f"eip155:{anvil.chain_id}"
    assert first.reference is not None
    receipt = evm.wait(bytes.fromhex(first.reference[2:]))
    assert receipt.status == 1 and receipt.to == world.network.escrow  # deliver calls the forwarder
    assert world.contracts.escrow.get_lock(settlement_id, 0).state == LockState.SETTLED
    assert world.contracts.token.balance_of(world.buyer.address) == 5_000

    head = evm.block_number()
    second = run(lambda: deliver_then_close(node, report))
    assert (second.state, second.reference) == (DeliveryState.DELIVERED, first.reference)
    assert evm.block_number() == head  # nothing was sent

    # Another node, knowing nothing, reads the same outcome and finds the delivering transaction.
    other = run(lambda: status_then_close(deliverer(anvil, world, key_index=6), report))
    assert (other.state, other.reference) == (DeliveryState.DELIVERED, first.reference)


def test_two_nodes_delivering_at_once_both_end_delivered(anvil: Anvil, world: World, evm: EvmClient) -> None:
    settlement_id = b"\x52" * 32
    lock(world, settlement_id)
    report = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.ABORT)])
    a, b = deliverer(anvil, world, 5), deliverer(anvil, world, 6)
    start = evm.block_number()

    async def both() -> list[DeliveryStatus]:
        return list(await asyncio.gather(deliver_then_close(a, report), deliver_then_close(b, report)))

    results = run(both)
    assert [r.state for r in results] == [DeliveryState.DELIVERED, DeliveryState.DELIVERED]
    assert results[0].reference == results[1].reference
    processed = world.contracts.forwarder.report_processed_in(
        evm.wait(bytes.fromhex(str(results[0].reference)[2:]))
    )
    assert [event.result for event in processed] == [True]
    assert world.contracts.escrow.get_lock(settlement_id, 0).state == LockState.ABORTED
    assert evm.block_number() > start


def test_a_report_the_forwarder_refuses_is_failed_with_the_decoded_error(anvil: Anvil, world: World) -> None:
    settlement_id = b"\x53" * 32
    lock(world, settlement_id)
    good = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)])
    one_signature = SignedReport(
        good.raw, good.context, good.signatures[:1], good.workflow_execution_id, good.items
    )

    refused = run(lambda: deliver_then_close(deliverer(anvil, world), one_signature))
    assert refused.state == DeliveryState.FAILED
    assert "InvalidSignatureCount(2, 1)" in refused.detail
    assert world.contracts.escrow.get_lock(settlement_id, 0).state == LockState.LOCKED


def test_a_report_sent_straight_to_the_forwarder_is_executed_by_the_node(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    # Anyone holding a report may send it to the forwarder: the escrow, given no records, records
    # its decision pending; the node finds that in the delivering transaction and executes it.
    settlement_id = b"\x54" * 32
    for leg in range(6):
        lock(world, settlement_id, leg_index=leg)
    report = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)])
    forwarder, escrow = world.contracts.forwarder, world.contracts.escrow
    direct = forwarder.report(
        world.admin, world.network.escrow, report.raw, report.context, report.signatures
    )
    assert [event.result for event in forwarder.report_processed_in(direct)] == [True]
    assert [type(e).__name__ for e in escrow.events_in(direct)] == ["DecisionPendingEvent"]
    assert escrow.get_lock(settlement_id, 0).state == LockState.LOCKED

    # Two nodes at once: both may try to execute; the escrow pays each lock once.
    a, b = deliverer(anvil, world, 5), deliverer(anvil, world, 6)
    buyer_before = world.contracts.token.balance_of(world.buyer.address)

    async def both() -> list[DeliveryStatus]:
        return list(await asyncio.gather(deliver_then_close(a, report), deliver_then_close(b, report)))

    results = run(both)
    assert DeliveryState.PENDING in [r.state for r in results]
    assert any("recorded pending" in r.detail for r in results)
    assert all(escrow.get_lock(settlement_id, leg).state == LockState.SETTLED for leg in range(6))
    assert world.contracts.token.balance_of(world.buyer.address) == buyer_before + 6 * 1_000
    again = run(lambda: status_then_close(deliverer(anvil, world), report))
    assert (again.state, again.reference) == (DeliveryState.DELIVERED, "0x" + direct.tx_hash.hex())


def test_a_lock_older_than_the_first_part_read_is_found_further_back(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    settlement_id = b"\x5b" * 32
    lock(world, settlement_id, amount=700)
    evm.mine(300)  # the lock is now far below the 64 blocks read with the heads
    report = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)])
    delivered = run(lambda: deliver_then_close(deliverer(anvil, world), report))
    assert delivered.state == DeliveryState.DELIVERED
    receipt = evm.wait(bytes.fromhex(str(delivered.reference)[2:]))
    kinds = [type(e).__name__ for e in world.contracts.escrow.events_in(receipt)]
    assert kinds == ["SettledEvent"]  # executed with its records, not left pending


def test_with_confirmations_a_landed_delivery_is_pending_until_deep_enough(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    settlement_id = b"\x55" * 32
    lock(world, settlement_id)
    report = signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)])
    node = deliverer(anvil, world, confirmations=2)
    landed = run(lambda: deliver_then_close(node, report))
    assert landed.state == DeliveryState.PENDING
    assert landed.reference is not None
    head = evm.block_number()
    again = run(lambda: deliver_then_close(node, report))  # not sent twice while it matures
    assert (again.state, again.reference, evm.block_number()) == (
        DeliveryState.PENDING,
        landed.reference,
        head,
    )
    evm.mine(2)
    final = run(lambda: status_then_close(node, report))
    assert (final.state, final.reference) == (DeliveryState.DELIVERED, landed.reference)


def test_a_report_the_escrow_would_refuse_is_failed_without_sending(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    settlement_id = b"\x56" * 32
    lock(world, settlement_id)
    other_workflow = WorkflowIdentity(
        workflow_cid=world.workflow.workflow_cid,
        workflow_name="someone-elses-workflow",
        workflow_owner=world.workflow.workflow_owner,
        report_id=world.workflow.report_id,
    )
    report = sign_items(
        [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)],
        timestamp_s=evm.latest_block().timestamp,
        workflow=other_workflow,
    )
    head = evm.block_number()
    refused = run(lambda: deliver_then_close(deliverer(anvil, world), report))
    assert refused.state == DeliveryState.FAILED
    assert "InvalidWorkflowName" in refused.detail
    assert evm.block_number() == head


def test_a_report_is_sent_after_one_round_trip_and_the_nonce_is_kept_between_sends(
    anvil: Anvil, world: World
) -> None:
    reports = []
    for settlement_id in (b"\x57" * 32, b"\x58" * 32):
        lock(world, settlement_id)
        reports.append(signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)]))
    node, transport = recording_deliverer(anvil, world)
    # The settlement's head in the escrow, the chain's, and its events of the last blocks (which
    # rebuild that head); the first time, the chain's head is read first to place that range.
    records = [["eth_call", "eth_blockNumber", "eth_getLogs"]]
    one_round_trip = [
        "eth_call",  # the forwarder's outcome so far
        "eth_blockNumber",
        "eth_estimateGas",  # escrow.deliver, which routes through the forwarder
        "eth_getBlockByNumber",  # base fee and gas limit
        "eth_maxPriorityFeePerGas",
    ]

    async def both() -> list[DeliveryStatus]:
        try:
            first = await node.deliver(reports[0])
            first_sent = transport.until_sent()
            second = await node.deliver(reports[1])
            assert first_sent == [
                ["eth_blockNumber"],
                *records,
                one_round_trip,
                ["eth_getTransactionCount"],
                ["eth_sendRawTransaction"],
            ]
            assert transport.until_sent() == [*records, one_round_trip, ["eth_sendRawTransaction"]]
            return [first, second]
        finally:
            await node.aclose()

    assert [s.state for s in run(both)] == [DeliveryState.DELIVERED, DeliveryState.DELIVERED]
    for settlement_id in (b"\x57" * 32, b"\x58" * 32):
        assert world.contracts.escrow.get_lock(settlement_id, 0).state == LockState.SETTLED


def test_a_nonce_another_sender_took_is_read_again_and_the_report_sent(
    anvil: Anvil, world: World, evm: EvmClient
) -> None:
    reports = []
    for settlement_id in (b"\x59" * 32, b"\x5a" * 32):
        lock(world, settlement_id)
        reports.append(signed_report(world, [ReportItem(settlement_id, TERMS_HASH, Decision.SETTLE)]))
    node, transport = recording_deliverer(anvil, world)
    same_key = evm.account(anvil.dev_keys[5])

    async def both() -> list[DeliveryStatus]:
        try:
            first = await node.deliver(reports[0])
            transport.until_sent()
            # Another process sends from the transmitter key: the nonce this node counted is taken.
            evm.transfer_eth(same_key, world.buyer.address, 1)
            second = await node.deliver(reports[1])
            return [first, second]
        finally:
            await node.aclose()

    assert [s.state for s in run(both)] == [DeliveryState.DELIVERED, DeliveryState.DELIVERED]
    # The refused send, the nonce read again, the send that landed.
    sends = [m for m in transport.requests if m in (["eth_sendRawTransaction"], ["eth_getTransactionCount"])]
    assert sends[:3] == [["eth_sendRawTransaction"], ["eth_getTransactionCount"], ["eth_sendRawTransaction"]]
    assert world.contracts.escrow.get_lock(b"\x5a" * 32, 0).state == LockState.SETTLED
