"""The decision rule: step 3 of the protocol (DESIGN.md "Decide"), as a pure function.

Every node runs `decide` over what it observed *at finality* on each network:

- SETTLE if every leg has a final lock that matches the terms exactly and was stamped no later than
  the deadline; decided at the latest of those lock times. A leg's lock is its earliest lock naming
  the terms' hash (`leg_lock`): the one the escrow pays.
- ABORT if not SETTLE and every involved network's final time is past the deadline; decided at the
  deadline.
- PENDING otherwise (including when a view for an involved network is missing).

Why honest nodes agree without voting: a `LedgerView` is a watermark (every lock stamped at or before
`final_time_s` is in it), a matching lock must be stamped at or before the deadline, and locks never
disappear. So once a network's final time passes the deadline, the set of matching locks on it is
complete and fixed; SETTLE and ABORT are each stable under more observations, and two nodes that both
decide cannot decide differently. The decision times are derived from ledger facts only, so every node
computes the same report timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crossdvp.settlement import _validate as v
from crossdvp.settlement.errors import InvalidObservation
from crossdvp.settlement.terms import Decision, Terms

__all__ = ["LedgerView", "LockObservation", "Verdict", "decide", "leg_lock", "lock_matches"]

_MAX_UINT256 = 2**256 - 1


@dataclass(frozen=True, slots=True)
class LockObservation:
    """One FINAL lock seen on a ledger: an escrow `Locked` event or a ledger hold.

    Fields are the facts as the ledger recorded them; they need not match any terms (a mismatching
    lock is a fact too, and `decide` treats it as absent). On eip155 networks asset/payer/payee are
    lowercased so a checksummed address from an RPC compares equal to the terms' lowercase one.
    `locked_at_s` is the ledger's time of the lock (block timestamp / ledger clock).

    Raises InvalidObservation when: network is not a network id; leg_index is not in 0..255;
    settlement_id or terms_hash is not 32 bytes; asset/payer/payee is not a string; amount_minor,
    deadline_s or locked_at_s is not a non-negative int (amounts and deadlines up to 2**256-1).
    """

    network: str
    leg_index: int
    settlement_id: bytes
    terms_hash: bytes
    asset: str
    amount_minor: int
    payer: str
    payee: str
    deadline_s: int
    locked_at_s: int

    def __post_init__(self) -> None:
        err = InvalidObservation
        v.check_network(self.network, "lock.network", err)
        v.check_int(self.leg_index, "lock.leg_index", 0, 255, err)
        object.__setattr__(
            self, "settlement_id", v.check_bytes(self.settlement_id, "lock.settlement_id", 32, err)
        )
        object.__setattr__(self, "terms_hash", v.check_bytes(self.terms_hash, "lock.terms_hash", 32, err))
        v.check_int(self.amount_minor, "lock.amount_minor", 0, _MAX_UINT256, err)
        v.check_int(self.deadline_s, "lock.deadline_s", 0, _MAX_UINT256, err)
        v.check_int(self.locked_at_s, "lock.locked_at_s", 0, _MAX_UINT256, err)
        for name in ("asset", "payer", "payee"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise err(f"lock.{name} must be a string, got {type(value).__name__}")
            if v.is_eip155(self.network):
                object.__setattr__(self, name, value.lower())


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What a node has observed on one network, all of it final.

    `final_time_s` is a watermark: every lock stamped at or before it is in `locks`. Observers must keep
    this promise (chain: the timestamp of the last final block; ledger: the event feed's `now_s`);
    `decide` relies on it to know that no matching lock can still appear.

    Raises InvalidObservation when: network is not a network id; final_time_s is not a non-negative
    int; locks is not a tuple (or list) of LockObservation all on `network`.
    """

    network: str
    final_time_s: int
    locks: tuple[LockObservation, ...] = ()

    def __post_init__(self) -> None:
        v.check_network(self.network, "view.network", InvalidObservation)
        v.check_int(self.final_time_s, "view.final_time_s", 0, _MAX_UINT256, InvalidObservation)
        locks: object = self.locks
        if isinstance(locks, list):
            locks = tuple(locks)
        if not isinstance(locks, tuple):
            raise InvalidObservation(f"view.locks must be a tuple, got {type(locks).__name__}")
        for index, lock in enumerate(locks):
            if not isinstance(lock, LockObservation):
                raise InvalidObservation(f"view.locks[{index}] must be a LockObservation")
            if lock.network != self.network:
                raise InvalidObservation(
                    f"view.locks[{index}] is on {lock.network!r}, not on the view's network {self.network!r}"
                )
        object.__setattr__(self, "locks", locks)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of `decide`. `decided_at_s` is None exactly when the decision is PENDING.

    For SETTLE it is the latest ledger time among the matching locks; for ABORT the deadline. It is the
    item's contribution to the report timestamp. `reason` is for humans and logs only.

    Raises InvalidObservation when decided_at_s is None for a decided verdict or set for PENDING.
    """

    decision: Decision
    decided_at_s: int | None
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))
        if (self.decision is Decision.PENDING) != (self.decided_at_s is None):
            raise InvalidObservation(
                f"decided_at_s must be None exactly for PENDING, got {self.decision.name} "
                f"with decided_at_s={self.decided_at_s}"
            )

    @property
    def decided(self) -> bool:
        return self.decision is not Decision.PENDING


def leg_lock(terms: Terms, leg_index: int, locks: Sequence[LockObservation]) -> LockObservation | None:
    """The lock that locks leg `leg_index` of `terms`, or None if the leg counts as not locked.

    A leg's lock is its earliest lock (by ledger time) naming the terms' hash, of that settlement and
    leg on the leg's network, and it must match the terms exactly (`lock_matches`). The escrow pays,
    of a leg's locks under a decision's terms hash, the first one locked (and refunds any later one)
    whatever its other fields, so a SETTLE decided on a later, matching lock would let a first,
    mismatching one be paid instead. Locks stamped at the same earliest time (one block) must all
    match: which of them came first is not in the observations, and the answer must not depend on
    the order a view lists them in.
    """
    if not 0 <= leg_index < len(terms.legs):
        return None
    network = terms.legs[leg_index].network
    named = [
        lock
        for lock in locks
        if lock.settlement_id == terms.settlement_id
        and lock.leg_index == leg_index
        and lock.network == network
        and lock.terms_hash == terms.terms_hash
    ]
    if not named:
        return None
    first_s = min(lock.locked_at_s for lock in named)
    earliest = [lock for lock in named if lock.locked_at_s == first_s]
    if all(lock_matches(terms, leg_index, lock) for lock in earliest):
        return earliest[0]
    return None


def lock_matches(terms: Terms, leg_index: int, lock: LockObservation) -> bool:
    """Whether `lock` locks leg `leg_index` of `terms` exactly as the terms say.

    Every field must be equal: network, settlement_id, leg_index, terms_hash, asset, amount, payer,
    payee and deadline; and the lock must be stamped no later than the deadline (a ledger must refuse a
    late lock, but a late one is treated as absent even if a ledger accepted it, so that ABORT stays
    final). A leg_index the terms do not have matches nothing.
    """
    if not 0 <= leg_index < len(terms.legs):
        return False
    leg = terms.legs[leg_index]
    # Most selective comparison first: views may carry the locks of many settlements.
    return (
        lock.settlement_id == terms.settlement_id
        and lock.leg_index == leg_index
        and lock.network == leg.network
        and lock.terms_hash == terms.terms_hash
        and lock.asset == leg.asset
        and lock.amount_minor == leg.amount_minor
        and lock.payer == leg.payer
        and lock.payee == leg.payee
        and lock.deadline_s == terms.deadline_s
        and lock.locked_at_s <= terms.deadline_s
    )


def decide(terms: Terms, views: Mapping[str, LedgerView]) -> Verdict:
    """The decision for `terms` given the final views of the networks, keyed by network id.

    Views of networks the terms do not involve, and locks of other settlements, are ignored (a view
    may be a whole network's). See the module docstring for the rule.
    A leg's lock is the earliest lock of that leg naming the terms' hash (`leg_lock`): if a ledger
    holds several, that one must match, as it is the one the escrow pays. With watermarked views a
    later-observed lock is stamped later, so neither the leg's lock nor the decision time moves.

    Raises InvalidObservation when a key of `views` differs from its view's network.
    """
    for key, keyed_view in views.items():
        if key != keyed_view.network:
            raise InvalidObservation(f"views[{key!r}] is the view of {keyed_view.network!r}")

    lock_times: list[int] = []
    unlocked: list[int] = []
    for index, leg in enumerate(terms.legs):
        view = views.get(leg.network)
        lock = None if view is None else leg_lock(terms, index, view.locks)
        if lock is not None:
            lock_times.append(lock.locked_at_s)
        else:
            unlocked.append(index)

    if not unlocked:
        return Verdict(
            Decision.SETTLE,
            max(lock_times),
            f"all {len(terms.legs)} legs locked as agreed",
        )

    waiting: list[str] = []
    for network in sorted(terms.networks()):
        network_view = views.get(network)
        if network_view is None:
            waiting.append(f"{network}: not observed")
        elif network_view.final_time_s <= terms.deadline_s:
            waiting.append(
                f"{network}: final time {network_view.final_time_s} <= deadline {terms.deadline_s}"
            )
    if not waiting:
        return Verdict(
            Decision.ABORT,
            terms.deadline_s,
            f"deadline {terms.deadline_s} passed on every network; legs without a matching lock: {unlocked}",
        )
    return Verdict(
        Decision.PENDING,
        None,
        f"legs without a matching lock: {unlocked}; waiting for {'; '.join(waiting)}",
    )
