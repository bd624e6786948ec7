"""The seeded workload: which settlements a chaos run proposes, and how each party behaves.

`plan_trades(rng, n, parties)` is pure: it draws the kind, parties, amounts, deadline lead and
timing of every trade from `random.Random(seed)`, so a seed names one run. `execute_trade` then acts
the plan out against a `World`: registers the terms with every node, and has each party lock (or not,
or wrongly) on its own network. Outcomes are never taken from here: the invariant checker reads
them from the ledgers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx

from crossdvp.chain.errors import ChainError, ContractRevert
from crossdvp.chaos.world import Party, World
from crossdvp.payments.errors import PaymentsApiError
from crossdvp.settlement.terms import Leg, Terms

__all__ = [
    "TradeKind",
    "TradePlan",
    "TradeResult",
    "build_terms",
    "execute_trade",
    "plan_trades",
    "retrying",
]


class TradeKind(StrEnum):
    VALID = "valid"  # both legs locked as agreed: SETTLE
    BUYER_NEVER_FUNDS = "buyer_never_funds"  # ABORT, the seller's shares back
    SELLER_NEVER_LOCKS = "seller_never_locks"  # ABORT, the buyer's hold released
    WRONG_AMOUNT = "wrong_amount"  # the seller locks one unit less: ABORT
    WRONG_PAYER = "wrong_payer"  # another party locks the seller's leg: ABORT
    WRONG_TERMS_HASH = "wrong_terms_hash"  # the buyer's hold names other terms: ABORT, hold stays reclaimable
    LAST_SECOND = "last_second"  # the seller locks in the last second before the deadline
    FROZEN_ACCOUNT = "frozen_account"  # the buyer's account is frozen: the hold is refused, ABORT
    KYC_REVOKED = "kyc_revoked"  # the payee loses KYC between lock and settle: SETTLE, shares owed


@dataclass(frozen=True, slots=True)
class TradePlan:
    index: int
    kind: TradeKind
    seller: str
    buyer: str
    shares_minor: int
    cash_minor: int
    lead_s: int  # deadline = chain time at start + lead_s
    start_after_s: float  # offset from the run's start
    settlement_id: bytes


@dataclass(frozen=True, slots=True)
class TradeResult:
    plan: TradePlan
    terms: Terms
    steps: tuple[str, ...]  # what happened, for the report's detail ("seller locked", "hold refused: ...")
    error: str | None = None  # a harness step that failed unexpectedly (the trade is still checked)


# Kinds that need a dedicated party: freezing or de-KYC-ing a shared party would change the
# outcome of every other trade it is in.
_DEDICATED = {TradeKind.FROZEN_ACCOUNT: "frozen-buyer", TradeKind.KYC_REVOKED: "revoked-buyer"}


def plan_trades(
    rng: random.Random,
    count: int,
    sellers: Sequence[str],
    buyers: Sequence[str],
    *,
    spread_s: float,
    lead_s: tuple[int, int],
) -> list[TradePlan]:
    """`count` trades: every kind at least once when count >= the number of kinds, then drawn with
    valid DvPs the most common; start times spread over `spread_s`; parties reused so that several
    settlements are in flight per party."""
    kinds = list(TradeKind)
    chosen: list[TradeKind] = kinds[:count] if count < len(kinds) else list(kinds)
    weights = [6 if k is TradeKind.VALID else 1 for k in kinds]
    chosen += rng.choices(kinds, weights=weights, k=max(0, count - len(chosen)))
    rng.shuffle(chosen)
    plans: list[TradePlan] = []
    for index, kind in enumerate(chosen):
        buyer = _DEDICATED.get(kind, rng.choice(list(buyers)))
        plans.append(
            TradePlan(
                index=index,
                kind=kind,
                seller=rng.choice(list(sellers)),
                buyer=buyer,
                shares_minor=rng.randint(1, 50) * 10**15,
                cash_minor=rng.randint(100, 50_000),
                lead_s=rng.randint(*lead_s),
                start_after_s=round(rng.uniform(0, spread_s), 2),
                settlement_id=rng.randbytes(32),
            )
        )
    return sorted(plans, key=lambda p: p.start_after_s)


def build_terms(world: World, plan: TradePlan, deadline_s: int) -> Terms:
    seller, buyer = world.parties[plan.seller], world.parties[plan.buyer]
    return Terms(
        settlement_id=plan.settlement_id,
        deadline_s=deadline_s,
        legs=(
            Leg(
                network=world.asset.network,
                asset=world.asset.token,
                amount_minor=plan.shares_minor,
                payer=seller.chain_address,
                payee=buyer.chain_address,
            ),
            Leg(
                network=world.payments_network,
                asset=world.currency,
                amount_minor=plan.cash_minor,
                payer=buyer.account_id,
                payee=seller.account_id,
            ),
        ),
    )


def register(world: World, terms: Terms, *, give_up_s: float = 60.0) -> int:
    """Send the terms to every node until at least f+1 accepted (a node may be down right now);
    returns how many accepted. Nodes share terms with their peers, so f+1 is enough."""
    accepted: set[str] = set()
    end = time.monotonic() + give_up_s
    with httpx.Client(timeout=3.0) as http:
        while True:
            for node in world.state.nodes:
                if node.name in accepted:
                    continue
                try:
                    response = http.post(f"{node.url}/v1/settlements", json=terms.to_dict())
                except httpx.HTTPError:
                    continue
                if response.status_code in (200, 201, 409):
                    accepted.add(node.name)
            if len(accepted) >= world.don.f + 1 or time.monotonic() > end:
                return len(accepted)
            time.sleep(0.5)


def lock_shares(
    world: World, terms: Terms, locker: Party, *, amount: int | None = None, terms_hash: bytes | None = None
) -> str:
    """The locker's escrow lock of leg 0 (lockWithPermit); `amount`/`terms_hash` override to mismatch."""
    leg = terms.legs[0]
    value = leg.amount_minor if amount is None else amount
    with world.chain_writes.shared():
        permit = world.contracts.token.sign_permit(
            locker.chain_key, world.asset.escrow, value, terms.deadline_s
        )
        receipt = world.contracts.escrow.lock_with_permit(
            world.evm.account(locker.chain_key),
            terms.settlement_id,
            0,
            leg.asset,
            value,
            leg.payee,
            terms.deadline_s,
            terms.terms_hash if terms_hash is None else terms_hash,
            permit,
        )
    return "0x" + receipt.tx_hash.hex()


def place_hold(world: World, terms: Terms, payer: Party, *, terms_hash: bytes | None = None) -> str:
    leg = terms.legs[1]
    hold = world.client_of(payer).place_hold(
        settlement_id=terms.settlement_id,
        leg_index=1,
        terms_hash=terms.terms_hash if terms_hash is None else terms_hash,
        payer_account=leg.payer,
        payee_account=leg.payee,
        currency=leg.asset,
        amount_minor=leg.amount_minor,
        deadline_s=terms.deadline_s,
        idempotency_key=f"chaos-hold-{terms.settlement_id.hex()}",
    )
    return str(hold["hold_id"])


def _attempt(steps: list[str], what: str, action: Callable[[], str], retries: int = 3) -> None:
    """Run a party's step; a refusal is recorded (it is part of the scenario), a transport error
    during a fault is retried a few times, since a real party retries too."""
    for attempt in range(retries):
        try:
            steps.append(f"{what}: {action()}")
            return
        except (ChainError, PaymentsApiError) as exc:
            retryable = bool(getattr(exc, "retryable", False))
            if not retryable or attempt + 1 == retries:
                steps.append(f"{what} refused: {exc}")
                return
            time.sleep(1.0)


def retrying(action: Callable[[], object], tries: int = 15) -> None:
    """An operator step (freeze, KYC change, claim): retried while a fault makes its ledger
    unreachable. Raises the last error if it never succeeds or the error is not retryable."""
    for attempt in range(tries):
        try:
            action()
            return
        except (ChainError, PaymentsApiError) as exc:
            # Any chain error but a revert is worth another try: anvil with --prune-history refuses
            # now and then a "latest" read that races the next block, with a non-retryable code.
            final = isinstance(exc, ContractRevert) or (
                isinstance(exc, PaymentsApiError) and not exc.retryable
            )
            if final or attempt + 1 == tries:
                raise
            time.sleep(1.0)


def execute_trade(
    world: World, plan: TradePlan, *, sleep: Callable[[float], None] = time.sleep
) -> TradeResult:
    """Act one trade out (see TradeKind). Never raises for what a ledger refuses; records it. A
    harness step that fails otherwise (a ledger down mid-fault when the harness freezes an account)
    ends the trade with `error` set, but the terms are returned all the same: whatever was locked
    before must still be checked. Raises only if the chain's time cannot be read to set a deadline."""
    now = world.evm.latest_block().timestamp
    terms = build_terms(world, plan, now + plan.lead_s)
    steps: list[str] = []
    try:
        _act(world, plan, terms, steps, sleep)
    except Exception as exc:  # reported with the trade; the invariants judge what it left behind
        return TradeResult(plan, terms, tuple(steps), error=f"{type(exc).__name__}: {exc}")
    return TradeResult(plan, terms, tuple(steps))


def _act(
    world: World, plan: TradePlan, terms: Terms, steps: list[str], sleep: Callable[[float], None]
) -> None:
    steps.append(f"registered with {register(world, terms)} nodes")
    seller, buyer = world.parties[plan.seller], world.parties[plan.buyer]
    kind = plan.kind
    if kind is TradeKind.LAST_SECOND:
        _attempt(steps, "buyer hold", lambda: place_hold(world, terms, buyer))
        while world.evm.latest_block().timestamp < terms.deadline_s - 1:
            sleep(0.2)
        _attempt(steps, "seller last-second lock", lambda: lock_shares(world, terms, seller), retries=1)
        return
    if kind is TradeKind.FROZEN_ACCOUNT:
        retrying(lambda: world.ledger.freeze(buyer.account_id, True))
        try:
            _attempt(steps, "seller lock", lambda: lock_shares(world, terms, seller))
            _attempt(
                steps, "buyer hold on frozen account", lambda: place_hold(world, terms, buyer), retries=1
            )
        finally:
            retrying(lambda: world.ledger.freeze(buyer.account_id, False))
        return
    if kind is not TradeKind.SELLER_NEVER_LOCKS:
        if kind is TradeKind.WRONG_AMOUNT:
            _attempt(
                steps,
                "seller lock (amount - 1)",
                lambda: lock_shares(world, terms, seller, amount=plan.shares_minor - 1),
            )
        elif kind is TradeKind.WRONG_PAYER:
            other = next(
                p
                for n, p in world.parties.items()
                if n not in (plan.seller, plan.buyer) and n.startswith("seller")
            )
            _attempt(steps, f"{other.name} locks the seller's leg", lambda: lock_shares(world, terms, other))
        else:
            if kind is TradeKind.KYC_REVOKED:
                # The escrow refuses a lock whose payee cannot receive: restore KYC (another trade of
                # this kind may have revoked it) so the revocation lands between lock and settle.
                with world.chain_writes.shared():
                    retrying(
                        lambda: world.contracts.registry.set_blocked(world.admin, buyer.chain_address, False)
                    )
            _attempt(steps, "seller lock", lambda: lock_shares(world, terms, seller))
    if kind is not TradeKind.BUYER_NEVER_FUNDS:
        if kind is TradeKind.WRONG_TERMS_HASH:
            _attempt(
                steps,
                "buyer hold (other terms hash)",
                lambda: place_hold(world, terms, buyer, terms_hash=b"\xee" * 32),
            )
        else:
            _attempt(steps, "buyer hold", lambda: place_hold(world, terms, buyer))
    if kind is TradeKind.KYC_REVOKED:
        with world.chain_writes.shared():
            retrying(lambda: world.contracts.registry.set_blocked(world.admin, buyer.chain_address, True))
        steps.append("payee KYC revoked after both locks")
