"""EvmChainSource against a real anvil: the escrow's events and the token's holders, indexed
incrementally, and rebuilt when the chain drops the blocks it had indexed."""

from __future__ import annotations

import asyncio

import pytest

from crossdvp.chain.client import EvmClient, Sender
from crossdvp.console.config import ChainEndpoint
from crossdvp.console.sources import EvmChainSource
from tests.chain.asset_world import ONE_SHARE, build_world, settlement_id

pytestmark = pytest.mark.integration


def test_indexes_locks_and_holders_and_survives_a_reorg(
    evm: EvmClient, dev_senders: tuple[Sender, ...]
) -> None:
    world = build_world(evm, dev_senders)
    source = EvmChainSource(ChainEndpoint(evm.rpc_url, world.addresses), client=evm)

    facts = asyncio.run(source.facts())
    assert facts.ok and facts.token is not None
    assert (facts.token.symbol, facts.token.decimals, facts.token.total_supply) == (
        "OUSG",
        18,
        100 * ONE_SHARE,
    )
    assert facts.holders == ((world.seller.address, 100 * ONE_SHARE),)
    assert facts.events == ()

    before_lock = evm.snapshot()
    terms = world.terms(settlement_id("console"), amount=3 * ONE_SHARE)
    receipt = world.lock_leg(terms)
    facts = asyncio.run(source.facts())
    (locked,) = facts.events
    assert (locked.kind, locked.settlement_id, locked.leg_index) == (
        "locked",
        "0x" + terms.settlement_id.hex(),
        0,
    )
    assert (locked.amount, locked.party, locked.payee) == (
        3 * ONE_SHARE,
        world.seller.address,
        world.buyer.address,
    )
    assert locked.tx_hash == "0x" + receipt.tx_hash.hex() and locked.block_number == receipt.block_number
    assert locked.block_time_s == evm.get_block(receipt.block_number).timestamp
    assert dict(facts.holders) == {world.seller.address: 97 * ONE_SHARE, world.escrow: 3 * ONE_SHARE}

    evm.revert(before_lock)  # the lock's block is gone
    evm.mine(3)  # and the chain grew past it on another branch
    facts = asyncio.run(source.facts())
    assert facts.ok and facts.events == ()
    assert facts.holders == ((world.seller.address, 100 * ONE_SHARE),)
