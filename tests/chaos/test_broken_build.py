"""The checker is known to work: on a real devnet, a deliberately broken DON — one that decides SETTLE
for the chain and ABORT for the ledger (as a node skipping the finality wait could) and delivers each
with f+1 genuine DON signatures — is flagged by the invariants read from the ledgers alone, while an
honest delivery of the same kind of trade is not."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossdvp.chain.client import Sender
from crossdvp.chaos.evidence import read_snapshot
from crossdvp.chaos.invariants import InvariantReport, ViolationKind, check_invariants
from crossdvp.chaos.workload import TradeKind, TradePlan, build_terms, lock_shares, place_hold
from crossdvp.chaos.world import Party, SignedReport, World
from crossdvp.devnet import DevnetOptions, devnet_down, devnet_up
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision, Terms


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory: Path = tmp_path_factory.mktemp("broken-devnet")
    state = devnet_up(DevnetOptions(directory))
    handle: World | None = None
    try:
        handle = World(state)
        yield handle
    finally:
        if handle is not None:
            handle.close()
        devnet_down(directory)


def _locked_trade(world: World, rng: random.Random, seller: Party, buyer: Party) -> Terms:
    """Both legs locked as agreed; the terms are never registered with the nodes, so the honest DON
    stays out of it and only the test's deliveries execute anything."""
    plan = TradePlan(
        index=0,
        kind=TradeKind.VALID,
        seller=seller.name,
        buyer=buyer.name,
        shares_minor=10**18,
        cash_minor=12_345,
        lead_s=60,
        start_after_s=0,
        settlement_id=rng.randbytes(32),
    )
    terms = build_terms(world, plan, world.evm.latest_block().timestamp + plan.lead_s)
    lock_shares(world, terms, seller)
    place_hold(world, terms, buyer)
    return terms


def _deliver_to_chain(world: World, transmitter: Sender, report: SignedReport, terms: Terms) -> None:
    """Deliver a one-item report through the escrow, with the settlement's records from the chain."""
    escrow = world.contracts.escrow
    records = escrow.open_records(terms.settlement_id, world.asset.deployed_at_block)
    escrow.deliver(transmitter, report.raw, report.context, report.signatures, [(terms.terms_hash, records)])


def _check(world: World, terms: list[Terms]) -> InvariantReport:
    snapshot = read_snapshot(
        evm=world.evm,
        asset=world.asset,
        payments=world.ledger,
        payments_network=world.payments_network,
        database_url=world.database_url,
        don=world.don,
        terms=terms,
        expected=world.expectations(),
    )
    return check_invariants(snapshot)


def test_an_equivocating_don_is_caught_and_an_honest_delivery_is_not(world: World) -> None:
    rng = random.Random(6)
    seller = world.add_party("broken-seller", rng.randbytes(32), shares_minor=10 * 10**18, cash_minor=0)
    buyer = world.add_party("broken-buyer", rng.randbytes(32), shares_minor=0, cash_minor=1_000_000)
    honest = _locked_trade(world, rng, seller, buyer)
    broken = _locked_trade(world, rng, seller, buyer)
    quorum = tuple(range(world.don.f + 1))
    now = world.evm.latest_block().timestamp
    transmitter = world.evm.account(world.admin.private_key)

    settle_both = world.sign(
        [ReportItem(honest.settlement_id, honest.terms_hash, Decision.SETTLE)],
        timestamp_s=now,
        signer_indices=quorum,
    )
    _deliver_to_chain(world, transmitter, settle_both, honest)
    world.ledger.post_report(settle_both.raw, settle_both.context, settle_both.signatures)
    report = _check(world, [honest])
    assert report.violations == (), [str(v) for v in report.violations]
    assert report.outcomes["settled"] == 1

    # The broken build: SETTLE to the escrow only, ABORT to the ledger only, both with f+1 signatures.
    settle = world.sign(
        [ReportItem(broken.settlement_id, broken.terms_hash, Decision.SETTLE)],
        timestamp_s=now,
        signer_indices=quorum,
    )
    abort = world.sign(
        [ReportItem(broken.settlement_id, broken.terms_hash, Decision.ABORT)],
        timestamp_s=now,
        signer_indices=quorum,
    )
    _deliver_to_chain(world, transmitter, settle, broken)
    world.ledger.post_report(abort.raw, abort.context, abort.signatures)

    report = _check(world, [honest, broken])
    kinds = {v.kind for v in report.violations}
    assert report.count(ViolationKind.ATOMICITY) == 1, [str(v) for v in report.violations]
    assert all(v.settlement_id == broken.settlement_id for v in report.violations if v.settlement_id)
    assert ViolationKind.DOUBLE_EXECUTION in kinds  # executed with both decisions
    assert ViolationKind.WRONG_DECISION in kinds  # the ledger refunded a trade both sides had locked
    assert report.count(ViolationKind.CONSERVATION) == 0  # nothing was created or lost, only split
    assert not report.ok
