"""Hypothesis strategies and builders for the settlement core tests: terms over several networks, and
"worlds" of lock events from which watermarked ledger views are cut at chosen final times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from crossdvp.settlement import LedgerView, Leg, LockObservation, Terms

CHAINS = ("eip155:1", "eip155:31337")
LEDGERS = ("payments:bank-a", "payments:crossdvp-payments")
NETWORKS = CHAINS + LEDGERS
ADDRESSES = tuple("0x" + f"{i:02x}" * 20 for i in range(1, 6))
CURRENCIES = ("USD", "EUR")
ACCOUNTS = ("acct-alice", "acct-bob", "acct-carol")
SETTLEMENT_IDS = (b"\x01" * 32, b"\x02" * 32)
DEADLINE = 1_000


def lock_for(terms: Terms, leg_index: int, locked_at_s: int) -> LockObservation:
    """The lock that matches leg `leg_index` of `terms` exactly, stamped `locked_at_s`."""
    leg = terms.legs[leg_index]
    return LockObservation(
        network=leg.network,
        leg_index=leg_index,
        settlement_id=terms.settlement_id,
        terms_hash=terms.terms_hash,
        asset=leg.asset,
        amount_minor=leg.amount_minor,
        payer=leg.payer,
        payee=leg.payee,
        deadline_s=terms.deadline_s,
        locked_at_s=locked_at_s,
    )


def _other(value: str, pool: Sequence[str]) -> str:
    return next(p for p in pool if p != value)


def mutate(terms: Terms, lock: LockObservation, field: str) -> LockObservation:
    """`lock` with one field changed so that it no longer matches its leg."""
    leg = terms.legs[lock.leg_index]
    chain = leg.network.startswith("eip155:")
    if field == "amount_minor":
        return replace(lock, amount_minor=lock.amount_minor + 1)
    if field in ("payer", "payee", "asset"):
        pool = ADDRESSES if chain else (CURRENCIES if field == "asset" else ACCOUNTS)
        changes: dict[str, Any] = {field: _other(getattr(lock, field), pool)}
        return replace(lock, **changes)
    if field == "terms_hash":
        return replace(lock, terms_hash=bytes(32))
    if field == "settlement_id":
        return replace(lock, settlement_id=b"\xee" * 32)
    if field == "deadline_s":
        return replace(lock, deadline_s=lock.deadline_s + 1)
    if field == "leg_index":
        # An index the terms do not have: a lock naming another existing leg would be a lock of that leg.
        return replace(lock, leg_index=len(terms.legs) + lock.leg_index)
    if field == "network":
        return replace(lock, network=_other(leg.network, CHAINS if chain else LEDGERS))
    if field == "late":
        return replace(lock, locked_at_s=terms.deadline_s + 1)
    raise AssertionError(field)


MISMATCH_FIELDS = (
    "amount_minor",
    "payer",
    "payee",
    "asset",
    "terms_hash",
    "settlement_id",
    "deadline_s",
    "leg_index",
    "network",
    "late",
)


@st.composite
def legs(draw: st.DrawFn, network: str | None = None) -> Leg:
    network = network or draw(st.sampled_from(NETWORKS))
    if network.startswith("eip155:"):
        asset = draw(st.sampled_from(ADDRESSES))
        payer, payee = draw(st.sampled_from(ADDRESSES)), draw(st.sampled_from(ADDRESSES))
    else:
        asset = draw(st.sampled_from(CURRENCIES))
        payer, payee = draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(ACCOUNTS))
    amount = draw(st.integers(min_value=1, max_value=10**6))
    return Leg(network=network, asset=asset, amount_minor=amount, payer=payer, payee=payee)


@st.composite
def terms(draw: st.DrawFn, min_legs: int = 1, max_legs: int = 5) -> Terms:
    return Terms(
        settlement_id=draw(st.sampled_from(SETTLEMENT_IDS)),
        deadline_s=DEADLINE,
        legs=tuple(draw(st.lists(legs(), min_size=min_legs, max_size=max_legs))),
    )


@dataclass(frozen=True)
class World:
    """Everything that ever happens on every ledger: each event is final once its ledger's time passes it."""

    terms: Terms
    events: tuple[LockObservation, ...]

    def views(self, final_times: Mapping[str, int | None]) -> dict[str, LedgerView]:
        """Watermarked views: on each observed network, every event stamped <= its final time."""
        return {
            network: LedgerView(
                network=network,
                final_time_s=final,
                locks=tuple(e for e in self.events if e.network == network and e.locked_at_s <= final),
            )
            for network, final in final_times.items()
            if final is not None
        }


# Times cluster around the deadline, where the rule changes its answer.
_times = st.one_of(
    st.sampled_from((0, DEADLINE // 2, DEADLINE - 1, DEADLINE, DEADLINE + 1, DEADLINE + 50)),
    st.integers(min_value=0, max_value=DEADLINE + 100),
)
_lock_times = st.one_of(st.integers(min_value=0, max_value=DEADLINE), _times)
# A network's final time: mostly observed, often past the deadline, sometimes not observed at all.
_past = st.integers(min_value=DEADLINE + 1, max_value=DEADLINE + 200)
_final_times = st.one_of(st.none(), _times, _past, _times, _past)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Terms plus, per leg: no lock, a matching lock, a duplicate, or a mismatching one; plus noise."""
    t = draw(terms())
    events: list[LockObservation] = []
    for index in range(len(t.legs)):
        kind = draw(st.sampled_from(("none", "match", "match", "match", "twice", "mismatch")))
        if kind == "none":
            continue
        # Honest ledgers refuse late locks, but the rule must hold even if one accepted it.
        at = draw(_lock_times)
        lock = lock_for(t, index, at)
        if kind == "mismatch":
            lock = mutate(t, lock, draw(st.sampled_from(MISMATCH_FIELDS)))
        events.append(lock)
        if kind == "twice":
            events.append(replace(lock, locked_at_s=draw(_lock_times)))
    return World(terms=t, events=tuple(events))


def final_times(world: World) -> st.SearchStrategy[dict[str, int | None]]:
    """A final time (or None: not observed) for every network of the world's terms."""
    networks = sorted(world.terms.networks() | {e.network for e in world.events})
    return st.fixed_dictionaries({n: _final_times for n in networks})


def later(times: Mapping[str, int | None]) -> st.SearchStrategy[dict[str, int | None]]:
    """Final times no earlier than `times` on every network (a missing view may become observed)."""
    return st.fixed_dictionaries(
        {
            n: (_final_times if t is None else st.integers(min_value=t, max_value=DEADLINE + 200))
            for n, t in times.items()
        }
    )
