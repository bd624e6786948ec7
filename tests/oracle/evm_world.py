"""A deployed asset network on the test anvil, for the oracle's EVM adapter tests.

The real contracts (KeystoneForwarder configured with a 4-signer DON, f = 1; KYC registry; fund
token; DvPEscrow), a KYC-allowed seller holding shares with the escrow approved, and helpers to
lock and to build a signed report the way the node will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from eth_account import Account

from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.deploy import AssetNetwork, BoundAssetNetwork, deploy_asset_network
from crossdvp.oracle.ports import SignedReport
from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    decode_report,
    report_context,
    sign_report,
)

T = TypeVar("T")

#: Four DON signing keys (not funded: they only sign), f = 1.
DON_KEYS: tuple[bytes, ...] = tuple(bytes([i + 1]) * 32 for i in range(4))
DON = DonConfig(
    don_id=7,
    config_version=1,
    f=1,
    signers=tuple(str(Account.from_key(k).address).lower() for k in DON_KEYS),
)
SHARES = 10**24


@dataclass(frozen=True)
class World:
    client: EvmClient
    network: AssetNetwork
    contracts: BoundAssetNetwork
    admin: Sender
    seller: Sender
    buyer: Sender
    workflow: WorkflowIdentity


def deploy_world(client: EvmClient, senders: Sequence[Sender]) -> World:
    admin, seller, buyer = senders[0], senders[1], senders[2]
    workflow = WorkflowIdentity(
        workflow_cid=b"\x11" * 32,
        workflow_name="crossdvp-settlement",
        workflow_owner=admin.address,
        report_id=b"\x00\x01",
    )
    network = deploy_asset_network(client, admin, don=DON, workflow=workflow, grace_s=3_600)
    contracts = network.bind(client)
    contracts.registry.set_allowed_batch(admin, [seller.address, buyer.address], True)
    contracts.token.mint(admin, seller.address, SHARES)
    contracts.token.approve(seller, network.escrow, SHARES)
    return World(client, network, contracts, admin, seller, buyer, workflow)


def lock(
    world: World,
    settlement_id: bytes,
    *,
    leg_index: int = 0,
    amount: int = 1_000,
    deadline_s: int | None = None,
    terms_hash: bytes = b"\x22" * 32,
) -> int:
    """Lock `amount` shares seller -> buyer; returns the block number of the lock."""
    if deadline_s is None:
        deadline_s = world.client.latest_block().timestamp + 86_400
    receipt = world.contracts.escrow.lock(
        world.seller,
        settlement_id,
        leg_index,
        world.network.token,
        amount,
        world.buyer.address,
        deadline_s,
        terms_hash,
    )
    return receipt.block_number


def sign_items(
    items: Sequence[ReportItem],
    *,
    timestamp_s: int,
    workflow: WorkflowIdentity,
    signer_indexes: Sequence[int] = (0, 2),
) -> SignedReport:
    """A complete report over `items`, signed by the DON keys at `signer_indexes` (f + 1 = 2 of 4)."""
    raw = build_report(items, timestamp_s=timestamp_s, don=DON, workflow=workflow)
    context = report_context(DON)
    metadata, decoded = decode_report(raw)
    return SignedReport(
        raw=raw,
        context=context,
        signatures=tuple(sign_report(raw, context, DON_KEYS[i]) for i in signer_indexes),
        workflow_execution_id=metadata.workflow_execution_id,
        items=decoded,
    )


def signed_report(
    world: World, items: Sequence[ReportItem], *, signer_indexes: Sequence[int] = (0, 2)
) -> SignedReport:
    timestamp_s = world.client.latest_block().timestamp
    return sign_items(items, timestamp_s=timestamp_s, workflow=world.workflow, signer_indexes=signer_indexes)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one async scenario on a fresh event loop."""

    async def main() -> T:
        return await factory()

    return asyncio.run(main())
