"""A whole DvP through the node's network adapters only: observe both ledgers, decide, sign, deliver.

The four adapters and the pure core are exercised together against the real chain (anvil, real
contracts) and the real payments app, so the facts an observer reports must match the terms exactly
as the decision rule compares them (lowercase addresses, ledger account ids, terms hash, deadline),
and the one report must be accepted by both the forwarder and the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import LockState
from crossdvp.oracle.observe_evm import EvmObserver
from crossdvp.oracle.observe_payments import PaymentsObserver
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus
from crossdvp.oracle.transmit_evm import EvmDeliverer
from crossdvp.oracle.transmit_payments import PaymentsDeliverer
from crossdvp.settlement.decision import LedgerView, decide
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision, Leg, Terms
from tests.oracle.evm_world import World, deploy_world, lock, run, sign_items
from tests.oracle.payments_world import BASE, NETWORK, START_S, InProcess, call, in_process_ledger, place_hold

pytestmark = pytest.mark.integration


@pytest.fixture
def world(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> World:
    return deploy_world(evm, dev_senders)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[InProcess]:
    with in_process_ledger(tmp_path) as here:
        yield here


def test_a_dvp_observed_on_both_ledgers_settles_on_both(
    anvil: Anvil, world: World, ledger: InProcess
) -> None:
    chain = f"eip155:{anvil.chain_id}"
    deadline_s = START_S + 3_600  # in the future for both the chain and the ledger's manual clock
    terms = Terms(
        settlement_id=b"\xd1" * 32,
        deadline_s=deadline_s,
        legs=(
            Leg(chain, world.network.token, 2_500, world.seller.address, world.buyer.address),
            Leg(NETWORK, "USD", 99_000, "alice-usd", "bob-usd"),
        ),
    )
    locked_in = lock(
        world,
        terms.settlement_id,
        leg_index=0,
        amount=2_500,
        deadline_s=deadline_s,
        terms_hash=terms.terms_hash,
    )

    async def scenario() -> tuple[Any, list[DeliveryStatus], Any]:
        async with ledger.client() as client:
            hold = await place_hold(
                client, ledger.keys, terms.settlement_id, 99_000, leg_index=1, terms_hash=terms.terms_hash
            )
        ledger.clock.advance_s(2)
        chain_observer = EvmObserver(
            anvil.rpc_url,
            chain_id=anvil.chain_id,
            escrow=world.network.escrow,
            finality=0,
            start_block=world.network.deployed_at_block,
        )
        ledger_observer = PaymentsObserver(
            BASE, ledger.keys.oracle, network=NETWORK, transport=ledger.transport()
        )
        views = {}
        for observer in (chain_observer, ledger_observer):
            seen = await observer.poll(None)
            views[seen.network] = LedgerView(seen.network, seen.final_time_s, seen.locks)
            await observer.aclose()
        verdict = decide(terms, views)
        assert verdict.decision == Decision.SETTLE, verdict.reason
        assert verdict.decided_at_s is not None
        report = sign_items(
            [ReportItem(terms.settlement_id, terms.terms_hash, Decision.SETTLE)],
            timestamp_s=verdict.decided_at_s,
            workflow=world.workflow,
        )
        deliverers = (
            EvmDeliverer(
                anvil.rpc_url,
                chain_id=anvil.chain_id,
                forwarder=world.network.forwarder,
                escrow=world.network.escrow,
                transmitter_key=anvil.dev_keys[7],
            ),
            PaymentsDeliverer(BASE, ledger.keys.oracle, network=NETWORK, transport=ledger.transport()),
        )
        statuses = []
        for deliverer in deliverers:
            statuses.append(await deliverer.deliver(report))
            await deliverer.aclose()
        async with ledger.client() as client:
            settled = await call(client, ledger.keys.admin, "GET", f"/v1/holds/{hold['hold_id']}")
        return verdict, statuses, settled

    verdict, statuses, settled = run(scenario)
    assert [(s.network, s.state) for s in statuses] == [
        (chain, DeliveryState.DELIVERED),
        (NETWORK, DeliveryState.DELIVERED),
    ]
    assert world.contracts.escrow.get_lock(terms.settlement_id, 0).state == LockState.SETTLED
    assert world.contracts.token.balance_of(world.buyer.address) == 2_500
    assert settled["state"] == "settled"
    # decided at the later of the two locks' own ledger times (the hold was placed at START_S)
    assert verdict.decided_at_s == max(world.client.get_block(locked_in).timestamp, START_S)
