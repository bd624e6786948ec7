"""The decision rule: definition, determinism, agreement between nodes, and monotonicity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from crossdvp.settlement import (
    Decision,
    InvalidObservation,
    LedgerView,
    Leg,
    LockObservation,
    Terms,
    Verdict,
    decide,
    lock_matches,
)
from tests.settlement.strategies import (
    ADDRESSES,
    DEADLINE,
    MISMATCH_FIELDS,
    World,
    final_times,
    later,
    lock_for,
    mutate,
    terms,
    worlds,
)


@st.composite
def world_and_times(draw: st.DrawFn) -> tuple[World, dict[str, int | None]]:
    world = draw(worlds())
    return world, draw(final_times(world))


@st.composite
def world_and_two_times(
    draw: st.DrawFn,
) -> tuple[World, dict[str, int | None], dict[str, int | None]]:
    world = draw(worlds())
    early = draw(final_times(world))
    return world, early, draw(later(early))


def _matching(world: World, views: dict[str, LedgerView], index: int) -> list[int]:
    """[the time of the leg's lock] if the leg is locked, else []: its earliest locks naming the
    terms' hash must all match (the escrow pays the first one under that hash)."""
    t = world.terms
    view = views.get(t.legs[index].network)
    if view is None:
        return []
    named = [
        lk
        for lk in view.locks
        if (lk.settlement_id, lk.leg_index, lk.terms_hash) == (t.settlement_id, index, t.terms_hash)
    ]
    if not named:
        return []
    first = min(lk.locked_at_s for lk in named)
    ok = all(lock_matches(t, index, lk) for lk in named if lk.locked_at_s == first)
    return [first] if ok else []


@given(world_and_times())
def test_verdict_follows_the_rule(case: tuple[World, dict[str, int | None]]) -> None:
    world, times = case
    t = world.terms
    views = world.views(times)
    verdict = decide(t, views)
    event(verdict.decision.name)
    matched = [_matching(world, views, i) for i in range(len(t.legs))]
    all_locked = all(matched)
    all_past = all(n in views and views[n].final_time_s > t.deadline_s for n in t.networks())
    if verdict.decision is Decision.SETTLE:
        # SETTLE only when every leg's lock matches, decided at the latest of them.
        assert all_locked
        assert verdict.decided_at_s == max(min(m) for m in matched)
        assert verdict.decided_at_s is not None and verdict.decided_at_s <= t.deadline_s
    elif verdict.decision is Decision.ABORT:
        # ABORT only when every involved network's final time passed the deadline, and not SETTLE.
        assert all_past and not all_locked
        assert verdict.decided_at_s == t.deadline_s
    else:
        assert not all_locked and not all_past
        assert verdict.decided_at_s is None


@given(world_and_times())
def test_decide_is_deterministic(case: tuple[World, dict[str, int | None]]) -> None:
    world, times = case
    views = world.views(times)
    first = decide(world.terms, views)
    # Same facts in another order, rebuilt objects, reversed lock order: same verdict.
    shuffled = {
        n: LedgerView(network=v.network, final_time_s=v.final_time_s, locks=tuple(reversed(v.locks)))
        for n, v in reversed(list(views.items()))
    }
    rebuilt = Terms.from_dict(world.terms.to_dict())
    assert decide(rebuilt, shuffled) == first
    assert decide(world.terms, views) == first


@given(world_and_two_times())
def test_later_observations_never_change_a_decided_verdict(
    case: tuple[World, dict[str, int | None], dict[str, int | None]],
) -> None:
    world, early, late = case
    before = decide(world.terms, world.views(early))
    after = decide(world.terms, world.views(late))
    event(f"{before.decision.name} -> {after.decision.name}")
    if before.decision is not Decision.PENDING:
        # Never SETTLE <-> ABORT, never back to PENDING, and the decision time (hence the report
        # timestamp) does not move either.
        assert (after.decision, after.decided_at_s) == (before.decision, before.decided_at_s)


@given(world_and_times(), st.data())
def test_two_nodes_that_decide_agree(case: tuple[World, dict[str, int | None]], data: st.DataObject) -> None:
    # Two nodes observe the same world up to independent final times (each a watermark).
    world, times_a = case
    times_b = data.draw(final_times(world))
    a = decide(world.terms, world.views(times_a))
    b = decide(world.terms, world.views(times_b))
    event(f"{a.decision.name} / {b.decision.name}")
    if a.decided and b.decided:
        assert (a.decision, a.decided_at_s) == (b.decision, b.decided_at_s)


@given(terms(), st.sampled_from(MISMATCH_FIELDS), st.data())
def test_a_mismatching_lock_counts_as_absent(t: Terms, field: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(t.legs) - 1))
    at = data.draw(st.integers(min_value=0, max_value=DEADLINE))
    good = [lock_for(t, i, at) for i in range(len(t.legs)) if i != index]
    bad = mutate(t, lock_for(t, index, at), field)
    assert not lock_matches(t, index, bad)
    final = data.draw(st.integers(min_value=0, max_value=DEADLINE + 10))
    networks = t.networks() | {bad.network}

    def views(extra: tuple[LockObservation, ...]) -> dict[str, LedgerView]:
        locks = [*good, *extra]
        return {n: LedgerView(n, final, tuple(lk for lk in locks if lk.network == n)) for n in networks}

    with_bad = decide(t, views((bad,)))
    assert with_bad == decide(t, views(()))
    assert with_bad.decision is not Decision.SETTLE
    # and the genuine lock does complete the settlement
    assert decide(t, views((lock_for(t, index, at),))).decision is Decision.SETTLE


@given(terms(min_legs=3, max_legs=8), st.data())
def test_multi_leg_terms_need_every_leg(t: Terms, data: st.DataObject) -> None:
    locks = [lock_for(t, i, i) for i in range(len(t.legs))]
    missing = data.draw(st.integers(min_value=0, max_value=len(t.legs) - 1))

    def views(locks: list[LockObservation], final: int) -> dict[str, LedgerView]:
        return {n: LedgerView(n, final, tuple(lk for lk in locks if lk.network == n)) for n in t.networks()}

    full = decide(t, views(locks, DEADLINE + 1))
    assert full == Verdict(Decision.SETTLE, len(t.legs) - 1, full.reason)
    partial = [lk for i, lk in enumerate(locks) if i != missing]
    assert decide(t, views(partial, DEADLINE)).decision is Decision.PENDING
    assert decide(t, views(partial, DEADLINE + 1)).decision is Decision.ABORT


def _three_networks() -> Terms:
    return Terms(
        settlement_id=b"\x07" * 32,
        deadline_s=100,
        legs=(
            Leg("eip155:1", ADDRESSES[0], 5, ADDRESSES[1], ADDRESSES[2]),
            Leg("payments:bank-a", "USD", 500, "acct-bob", "acct-alice"),
            Leg("eip155:31337", ADDRESSES[3], 7, ADDRESSES[2], ADDRESSES[1]),
            Leg("payments:bank-a", "EUR", 300, "acct-carol", "acct-alice"),
        ),
    )


def test_three_networks_settle_at_the_latest_lock() -> None:
    t = _three_networks()
    locks = [lock_for(t, 0, 10), lock_for(t, 1, 50), lock_for(t, 2, 30), lock_for(t, 3, 20)]
    views = {n: LedgerView(n, 60, tuple(lk for lk in locks if lk.network == n)) for n in t.networks()}
    verdict = decide(t, views)
    assert (verdict.decision, verdict.decided_at_s) == (Decision.SETTLE, 50)


def test_abort_needs_every_involved_network_past_the_deadline() -> None:
    t = _three_networks()
    locks = [lock_for(t, 0, 10)]
    past = {n: LedgerView(n, 101, tuple(lk for lk in locks if lk.network == n)) for n in t.networks()}
    assert decide(t, past) == Verdict(Decision.ABORT, 100, decide(t, past).reason)
    # one network exactly at the deadline: a lock stamped at the deadline could still appear there
    at_deadline = {**past, "eip155:31337": LedgerView("eip155:31337", 100)}
    assert decide(t, at_deadline).decision is Decision.PENDING
    # one network not observed at all
    missing = {n: v for n, v in past.items() if n != "payments:bank-a"}
    verdict = decide(t, missing)
    assert verdict.decision is Decision.PENDING and "payments:bank-a: not observed" in verdict.reason
    # views of unrelated networks change nothing
    assert decide(t, {**past, "eip155:5": LedgerView("eip155:5", 0)}).decision is Decision.ABORT


def test_lock_at_the_deadline_counts_and_one_after_does_not() -> None:
    t = _three_networks()
    locks = [lock_for(t, i, 100) for i in range(4)]
    views = {n: LedgerView(n, 200, tuple(lk for lk in locks if lk.network == n)) for n in t.networks()}
    assert decide(t, views).decision is Decision.SETTLE
    late = [*locks[:3], lock_for(t, 3, 101)]
    views = {n: LedgerView(n, 200, tuple(lk for lk in late if lk.network == n)) for n in t.networks()}
    assert decide(t, views).decision is Decision.ABORT


def test_a_legs_first_lock_under_the_terms_is_the_one_that_counts() -> None:
    """The escrow pays a leg's first lock naming the terms' hash: a later matching lock cannot make
    up for a first one that does not match, and one with another terms hash is no lock of it."""
    t = _three_networks()
    good = [lock_for(t, i, 10) for i in range(4)]
    wrong_first = replace(lock_for(t, 0, 5), amount_minor=4)
    other_terms = replace(lock_for(t, 0, 1), terms_hash=b"\x99" * 32, amount_minor=4)

    def verdict(locks: list[LockObservation]) -> Decision:
        views = {n: LedgerView(n, 60, tuple(lk for lk in locks if lk.network == n)) for n in t.networks()}
        return decide(t, views).decision

    assert verdict(good) is Decision.SETTLE
    assert verdict([wrong_first, *good]) is Decision.PENDING  # leg 0's first lock is the wrong one
    assert verdict([other_terms, *good]) is Decision.SETTLE  # not under these terms: not leg 0's lock
    later_wrong = replace(lock_for(t, 0, 20), amount_minor=4)
    assert verdict([*good, later_wrong]) is Decision.SETTLE  # the escrow refunds a later duplicate
    # Two locks in the same block: which came first is not observed, so both must match.
    same_time_wrong = replace(lock_for(t, 0, 10), amount_minor=4)
    assert verdict([*good, same_time_wrong]) is Decision.PENDING
    assert verdict([same_time_wrong, *good]) is Decision.PENDING


def test_a_lock_for_another_leg_index_does_not_count() -> None:
    # Legs 1 and 3 are both on payments:bank-a; a lock of leg 3's fields naming index 1 fits neither.
    t = _three_networks()
    swapped = replace(lock_for(t, 3, 5), leg_index=1)
    assert not lock_matches(t, 1, swapped)
    assert not lock_matches(t, 3, swapped)
    assert not lock_matches(t, 9, lock_for(t, 3, 5))


def test_checksummed_lock_addresses_match_lowercase_terms() -> None:
    t = Terms(
        settlement_id=b"\x01" * 32,
        deadline_s=10,
        legs=(
            Leg(
                "eip155:1",
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                1,
                "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            ),
        ),
    )
    assert t.legs[0].asset == "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    lock = replace(
        lock_for(t, 0, 1),
        asset="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        payer="0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359",
    )
    assert lock.asset == t.legs[0].asset
    assert lock_matches(t, 0, lock)


def test_views_must_be_keyed_by_their_network() -> None:
    t = _three_networks()
    with pytest.raises(InvalidObservation, match="views"):
        decide(t, {"eip155:1": LedgerView("eip155:31337", 5)})


def test_a_view_holds_only_its_own_network_locks() -> None:
    t = _three_networks()
    with pytest.raises(InvalidObservation, match="not on the view's network"):
        LedgerView("eip155:31337", 5, (lock_for(t, 0, 1),))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("leg_index", 256, "lock.leg_index"),
        ("settlement_id", b"\x01" * 31, "lock.settlement_id"),
        ("terms_hash", "0x" + "00" * 32, "lock.terms_hash"),
        ("amount_minor", -1, "lock.amount_minor"),
        ("locked_at_s", True, "lock.locked_at_s"),
        ("network", "eip155", "lock.network"),
        ("payer", None, "lock.payer"),
    ],
)
def test_lock_observation_rejects_bad_fields(field: str, value: Any, match: str) -> None:
    with pytest.raises(InvalidObservation, match=match):
        replace(lock_for(_three_networks(), 0, 1), **{field: value})


def test_verdict_time_is_set_exactly_when_decided() -> None:
    with pytest.raises(InvalidObservation):
        Verdict(Decision.PENDING, 5, "")
    with pytest.raises(InvalidObservation):
        Verdict(Decision.SETTLE, None, "")
