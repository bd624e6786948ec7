"""The seeded workload plan: a seed names one run, and a run has every trade kind."""

from __future__ import annotations

import random

from crossdvp.chaos.workload import TradeKind, plan_trades

SELLERS = ["seller-0", "seller-1"]
BUYERS = ["buyer-0", "buyer-1"]


def plan(seed: int, count: int = 30) -> list[object]:
    return list(plan_trades(random.Random(seed), count, SELLERS, BUYERS, spread_s=60, lead_s=(10, 20)))


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert plan(1) == plan(1)
    assert plan(1) != plan(2)


def test_every_kind_appears_and_trades_start_in_order_within_the_spread() -> None:
    plans = plan_trades(random.Random(3), 30, SELLERS, BUYERS, spread_s=60, lead_s=(10, 20))
    assert {p.kind for p in plans} == set(TradeKind)
    starts = [p.start_after_s for p in plans]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] <= 60
    assert all(10 <= p.lead_s <= 20 for p in plans)
    assert len({p.settlement_id for p in plans}) == 30


def test_parties_have_several_settlements_in_flight_and_special_kinds_get_dedicated_buyers() -> None:
    plans = plan_trades(random.Random(4), 40, SELLERS, BUYERS, spread_s=60, lead_s=(10, 20))
    assert max(sum(1 for p in plans if p.seller == s) for s in SELLERS) > 5
    for p in plans:
        if p.kind is TradeKind.FROZEN_ACCOUNT:
            assert p.buyer == "frozen-buyer"
        elif p.kind is TradeKind.KYC_REVOKED:
            assert p.buyer == "revoked-buyer"
        else:
            assert p.buyer in BUYERS
