"""DvPEscrow against a real anvil, through the genuine KeystoneForwarder: locks commit to one word per
settlement; `deliver` executes a report with the records rebuilt from the escrow's own events; stale
or missing records leave the decision pending for `execute`; owed payouts, claims, reclaims and
every rejection by its custom error name. "Nothing moved" is checked on balances, and every head
against the Python model of the hash chain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from crossdvp.chain.client import EvmClient, Sender, TxReceipt
from crossdvp.chain.contracts import (
    CLOSED_FLAG,
    AbortedEvent,
    ClaimedEvent,
    DecisionPendingEvent,
    DvPEscrow,
    EscrowEvent,
    ItemRecords,
    ItemSkippedEvent,
    LockedEvent,
    LockRecord,
    LockState,
    OwedEvent,
    ReclaimedEvent,
    SettledEvent,
    SkipReason,
    commit_head,
    pack_delivery,
    replay_records,
)
from crossdvp.chain.errors import ChainError, ContractRevert
from crossdvp.settlement import Decision, ReportItem, Terms, build_report, report_context, sign_report
from tests.chain.asset_world import (
    DON,
    DON_KEYS,
    GRACE_S,
    ONE_SHARE,
    OUTSIDER_KEY,
    WORKFLOW,
    World,
    build_world,
    item,
    settlement_id,
)

ZERO = "0x" + "00" * 20


@dataclass
class CommitWorld:
    """A World with the few steps these tests repeat."""

    w: World
    escrow: DvPEscrow

    def lock(
        self,
        terms: Terms,
        leg_index: int = 0,
        *,
        amount: int | None = None,
        payee: str | None = None,
        deadline_s: int | None = None,
        terms_hash: bytes | None = None,
    ) -> TxReceipt:
        """The seller locks leg `leg_index` of `terms`, with any field changed as given."""
        leg = terms.legs[leg_index]
        return self.escrow.lock(
            self.w.seller,
            terms.settlement_id,
            leg_index,
            leg.asset,
            leg.amount_minor if amount is None else amount,
            leg.payee if payee is None else payee,
            terms.deadline_s if deadline_s is None else deadline_s,
            terms.terms_hash if terms_hash is None else terms_hash,
        )

    def signed(
        self, items: Sequence[ReportItem], *, keys: Sequence[bytes] = DON_KEYS[:2], timestamp_s: int = 1
    ) -> tuple[bytes, bytes, list[bytes]]:
        raw = build_report(items, timestamp_s=timestamp_s, don=DON, workflow=WORKFLOW)
        context = report_context(DON)
        return raw, context, [sign_report(raw, context, key) for key in keys]

    def deliver(
        self,
        items: Sequence[ReportItem],
        records: Sequence[ItemRecords] | None = None,
        *,
        timestamp_s: int = 1,
    ) -> TxReceipt:
        """Deliver a signed report of `items` with `records` (default: each settlement's open records
        read back from the chain)."""
        raw, context, signatures = self.signed(items, timestamp_s=timestamp_s)
        if records is None:
            records = [(i.terms_hash, self.open(i.settlement_id)) for i in items]
        return self.escrow.deliver(self.w.admin, raw, context, signatures, records)

    def open(self, sid: bytes) -> list[LockRecord]:
        return self.escrow.open_records(sid, self.w.addresses.deployed_at_block)

    def holdings(self) -> tuple[int, ...]:
        return self.w.balances(self.w.seller.address, self.w.buyer.address, self.escrow.address)


@pytest.fixture
def cw(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> CommitWorld:
    world = build_world(evm, dev_senders)
    return CommitWorld(world, world.net.escrow)


def _reverts(error_name: str, action: Callable[[], object]) -> ContractRevert:
    with pytest.raises(ContractRevert) as caught:
        action()
    assert caught.value.error_name == error_name, str(caught.value)
    return caught.value


def _kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def _skips(events: Sequence[object]) -> list[SkipReason]:
    return [e.reason for e in events if isinstance(e, ItemSkippedEvent)]


def _record(cw: CommitWorld, terms: Terms, leg_index: int = 0) -> LockRecord:
    leg = terms.legs[leg_index]
    return LockRecord(
        token=leg.asset,
        amount=leg.amount_minor,
        locker=cw.w.seller.address,
        deadline_s=terms.deadline_s,
        leg_index=leg_index,
        state=LockState.LOCKED,
        payee=leg.payee,
        terms_hash=terms.terms_hash,
    )


# -- the off-chain model (no chain) ---------------------------------------------------------------


def _model_record(n: int) -> LockRecord:
    return LockRecord(
        token=f"0x{0x70 + n:040x}",
        amount=10 + n,
        locker=f"0x{0x10 + n:040x}",
        deadline_s=1_800_000_000,
        leg_index=n,
        state=LockState.LOCKED,
        payee=f"0x{0x20 + n:040x}",
        terms_hash=keccak(text="terms"),
    )


def _positioned() -> dict[str, Any]:
    return {"block_number": 1, "block_hash": bytes(32), "tx_hash": bytes(32), "log_index": 0}


def _locked(record: LockRecord) -> LockedEvent:
    return LockedEvent(
        settlement_id=b"s" * 32,
        leg_index=record.leg_index,
        token=record.token,
        locker=record.locker,
        payee=record.payee,
        amount=record.amount,
        deadline=record.deadline_s,
        terms_hash=record.terms_hash,
        **_positioned(),
    )


def test_replay_removes_executed_records_and_moves_an_owed_one_to_the_end() -> None:
    a, b, c = (_model_record(n) for n in range(3))
    sid = b"s" * 32
    events: list[EscrowEvent] = [
        _locked(a),
        _locked(b),
        _locked(c),
        OwedEvent(
            settlement_id=sid,
            leg_index=0,
            state=LockState.SETTLE_OWED,
            beneficiary=a.payee,
            amount=a.amount,
            record=a.digest,
            **_positioned(),
        ),
        SettledEvent(
            settlement_id=sid, leg_index=2, payee=c.payee, amount=c.amount, record=c.digest, **_positioned()
        ),
    ]
    assert replay_records(events) == [b, a.owed(LockState.SETTLE_OWED)]
    claimed = ClaimedEvent(
        settlement_id=sid,
        leg_index=0,
        beneficiary=a.payee,
        amount=a.amount,
        record=a.owed(LockState.SETTLE_OWED).digest,
        **_positioned(),
    )
    assert replay_records([*events, claimed]) == [b]
    assert commit_head([b, a]) != commit_head([a, b]) != 0  # order matters to the chain
    with pytest.raises(ChainError, match="not open"):
        replay_records(
            [
                _locked(a),
                AbortedEvent(
                    settlement_id=sid,
                    leg_index=1,
                    locker=b.locker,
                    amount=b.amount,
                    record=b.digest,
                    **_positioned(),
                ),
            ]
        )


def test_records_pack_with_or_without_the_terms_hash_and_a_delivery_counts_them() -> None:
    a = _model_record(1)
    full, short = a.packed(), a.packed(a.terms_hash)
    assert (len(full), len(short)) == (115, 83)
    assert full[82] == 0 and full[83:] == a.terms_hash and short[82] == 1
    assert int.from_bytes(full[:32], "big") == a.w0
    assert int.from_bytes(full[32:62], "big") == a.w1
    assert pack_delivery([(a.terms_hash, [a, a]), (b"x" * 32, [])]) == b"\x02" + short + short + b"\x00"
    with pytest.raises(ValueError, match="at most 255"):
        pack_delivery([(a.terms_hash, [a] * 256)])


# -- on the chain ---------------------------------------------------------------------------------

integration = pytest.mark.integration


@integration
def test_a_lock_commits_its_record_and_the_events_rebuild_it(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit lock"), amount=3 * ONE_SHARE)
    seller, buyer, escrow = cw.holdings()
    receipt = cw.lock(terms)
    assert cw.holdings() == (seller - 3 * ONE_SHARE, buyer, escrow + 3 * ONE_SHARE)
    record = _record(cw, terms)
    (event,) = cw.escrow.events_in(receipt)
    assert isinstance(event, LockedEvent)
    assert (event.leg_index, event.amount, event.locker, event.payee, event.deadline) == (
        0,
        3 * ONE_SHARE,
        cw.w.seller.address,
        cw.w.buyer.address,
        terms.deadline_s,
    )
    # Python's model of the chain is the contract's: head, digest, and the rebuilt list.
    assert cw.escrow.settlement_head(terms.settlement_id) == commit_head([record])
    assert cw.escrow.record_digest(record) == record.digest
    assert cw.open(terms.settlement_id) == [record]
    assert cw.escrow.records_match(terms.settlement_id, [record])
    assert not cw.escrow.records_match(terms.settlement_id, [])
    # A second leg appends to the same word.
    cw.lock(terms, 0, amount=ONE_SHARE)
    assert cw.open(terms.settlement_id) == [record, replace(record, amount=ONE_SHARE)]


@integration
def test_lock_rejections_move_nothing(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit rejections"))
    before = cw.holdings()
    _reverts("ZeroAmount", lambda: cw.lock(terms, amount=0))
    _reverts("AmountTooLarge", lambda: cw.lock(terms, amount=2**96))
    _reverts("PayeeRefused", lambda: cw.lock(terms, payee=ZERO))
    past = cw.w.evm.latest_block().timestamp - 1
    _reverts("DeadlinePassed", lambda: cw.lock(terms, deadline_s=past))
    _reverts("ERC20InsufficientBalance", lambda: cw.lock(terms, amount=10**6 * ONE_SHARE))
    assert cw.holdings() == before
    assert cw.escrow.settlement_head(terms.settlement_id) == 0


@integration
def test_lock_with_permit_needs_no_approve_on_either_entry_point(cw: CommitWorld) -> None:
    w = cw.w
    w.net.token.mint(w.admin, w.buyer.address, 5 * ONE_SHARE)  # the buyer never approved this escrow
    token = w.net.token
    for label, permit_deadline_ahead in (("packed", 0), ("plain", 60)):
        terms = w.terms(settlement_id(f"commit permit {label}"))
        permit_deadline = terms.deadline_s + permit_deadline_ahead
        permit = token.sign_permit(w.buyer.private_key, cw.escrow.address, ONE_SHARE, permit_deadline)
        receipt = cw.escrow.lock_with_permit(
            w.buyer,
            terms.settlement_id,
            0,
            token.address,
            ONE_SHARE,
            w.seller.address,
            terms.deadline_s,
            terms.terms_hash,
            permit,
        )
        selector = w.evm.w3.eth.get_transaction(HexBytes(receipt.tx_hash))["input"][:4]
        name = "lockWithPermitPacked" if label == "packed" else "lockWithPermit"
        assert bytes(selector) == cw.escrow.abi.function(name, 6 if label == "packed" else 11).selector
        expected = LockRecord(
            token=token.address,
            amount=ONE_SHARE,
            locker=w.buyer.address,
            deadline_s=terms.deadline_s,
            leg_index=0,
            state=LockState.LOCKED,
            payee=w.seller.address,
            terms_hash=terms.terms_hash,
        )
        assert cw.open(terms.settlement_id) == [expected]
    assert token.balance_of(w.buyer.address) == 3 * ONE_SHARE


@integration
def test_deliver_settles_closes_the_settlement_and_a_second_report_finds_nothing(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit settle"), amount=5 * ONE_SHARE)
    cw.lock(terms)
    record = _record(cw, terms)
    seller, buyer, escrow = cw.holdings()
    receipt = cw.deliver([item(terms, Decision.SETTLE)])
    assert cw.holdings() == (seller, buyer + 5 * ONE_SHARE, escrow - 5 * ONE_SHARE)
    (event,) = cw.escrow.events_in(receipt)
    assert isinstance(event, SettledEvent) and event.record == record.digest
    assert cw.escrow.settlement_head(terms.settlement_id) == CLOSED_FLAG
    assert cw.open(terms.settlement_id) == []
    # Closed: no new lock, and another report carrying the same decision (batched with another item,
    # so another payload and another forwarder transmission) pays nothing.
    _reverts("SettlementClosed", lambda: cw.lock(terms))
    other = cw.w.terms(settlement_id("commit settle, unknown"))
    batch = [item(terms, Decision.SETTLE), item(other, Decision.SETTLE)]
    again = cw.deliver(batch)
    assert _skips(cw.escrow.events_in(again)) == [SkipReason.ALREADY_FINAL, SkipReason.UNKNOWN_SETTLEMENT]
    assert cw.holdings() == (seller, buyer + 5 * ONE_SHARE, escrow - 5 * ONE_SHARE)
    # The same report again is the forwarder's replay: refused, nothing consumed.
    _reverts("AlreadyAttempted", lambda: cw.deliver(batch))


@integration
def test_deliver_aborts_and_an_unknown_settlement_is_skipped(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit abort"), amount=2 * ONE_SHARE)
    before = cw.holdings()
    cw.lock(terms)
    never = cw.w.terms(settlement_id("commit never locked"))
    receipt = cw.deliver([item(terms, Decision.ABORT), item(never, Decision.ABORT)])
    assert cw.holdings() == before
    events = cw.escrow.events_in(receipt)
    assert _kinds(events) == ["AbortedEvent", "ItemSkippedEvent"]
    assert _skips(events) == [SkipReason.UNKNOWN_SETTLEMENT]
    assert cw.escrow.settlement_head(terms.settlement_id) == CLOSED_FLAG


@integration
def test_a_leg_locked_twice_is_paid_once_and_the_other_lock_refunded(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit twice"), amount=ONE_SHARE)
    cw.lock(terms)
    cw.lock(terms)
    seller, buyer, escrow = cw.holdings()
    receipt = cw.deliver([item(terms, Decision.SETTLE)])
    assert _kinds(cw.escrow.events_in(receipt)) == ["SettledEvent", "AbortedEvent"]
    assert cw.holdings() == (seller + ONE_SHARE, buyer + ONE_SHARE, escrow - 2 * ONE_SHARE)
    # Under ABORT both are refunded.
    other = cw.w.terms(settlement_id("commit twice abort"), amount=ONE_SHARE)
    before = cw.holdings()
    cw.lock(other)
    cw.lock(other)
    cw.deliver([item(other, Decision.ABORT)])
    assert cw.holdings() == before


@integration
def test_a_lock_naming_other_terms_stays_open_for_its_locker(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit mismatch"), amount=ONE_SHARE)
    cw.lock(terms)
    cw.lock(terms, amount=2 * ONE_SHARE, terms_hash=keccak(text="other terms"))
    seller, buyer, escrow = cw.holdings()
    receipt = cw.deliver([item(terms, Decision.SETTLE)])
    events = cw.escrow.events_in(receipt)
    assert _kinds(events) == ["SettledEvent", "ItemSkippedEvent"]
    assert _skips(events) == [SkipReason.TERMS_HASH_MISMATCH]
    assert cw.holdings() == (seller, buyer + ONE_SHARE, escrow - ONE_SHARE)
    (left,) = cw.open(terms.settlement_id)
    assert (left.amount, left.state, left.terms_hash) == (
        2 * ONE_SHARE,
        LockState.LOCKED,
        keccak(text="other terms"),
    )
    assert cw.escrow.settlement_head(terms.settlement_id) == commit_head([left], closed=True)
    _reverts("ReclaimTooEarly", lambda: cw.escrow.reclaim(cw.w.seller, terms.settlement_id, [left], 0))
    cw.w.evm.increase_time(terms.deadline_s - cw.w.evm.latest_block().timestamp + GRACE_S + 10)
    _reverts("NotLocker", lambda: cw.escrow.reclaim(cw.w.buyer, terms.settlement_id, [left], 0))
    receipt = cw.escrow.reclaim(cw.w.seller, terms.settlement_id, [left], 0)
    (event,) = cw.escrow.events_in(receipt)
    assert isinstance(event, ReclaimedEvent) and event.amount == 2 * ONE_SHARE
    assert cw.holdings() == (seller + 2 * ONE_SHARE, buyer + ONE_SHARE, escrow - 3 * ONE_SHARE)
    assert cw.escrow.settlement_head(terms.settlement_id) == CLOSED_FLAG


@integration
def test_stale_records_leave_the_decision_pending_and_block_reclaim_until_execute(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit stale"), amount=ONE_SHARE)
    ok = cw.w.terms(settlement_id("commit stale neighbour"), amount=ONE_SHARE)
    cw.lock(terms)
    cw.lock(terms, 0, amount=2 * ONE_SHARE)
    cw.lock(ok)
    records = cw.open(terms.settlement_id)
    seller, buyer, escrow = cw.holdings()
    # A deliverer leaving a leg out cannot execute the rest: the item is recorded pending.
    receipt = cw.deliver(
        [item(terms, Decision.SETTLE), item(ok, Decision.SETTLE)],
        [(terms.terms_hash, records[:1]), (ok.terms_hash, cw.open(ok.settlement_id))],
    )
    events = cw.escrow.events_in(receipt)
    assert _kinds(events) == ["DecisionPendingEvent", "SettledEvent"]
    assert isinstance(events[0], DecisionPendingEvent) and events[0].decision == Decision.SETTLE
    assert cw.holdings() == (seller, buyer + ONE_SHARE, escrow - ONE_SHARE)
    assert cw.escrow.pending_decision(terms.settlement_id, terms.terms_hash) == Decision.SETTLE
    cw.w.evm.increase_time(terms.deadline_s - cw.w.evm.latest_block().timestamp + GRACE_S + 10)
    _reverts("DecisionIsPending", lambda: cw.escrow.reclaim(cw.w.seller, terms.settlement_id, records, 0))
    _reverts(
        "StaleRecords",
        lambda: cw.escrow.execute(cw.w.stranger, terms.settlement_id, terms.terms_hash, records[1:]),
    )
    other = keccak(text="no decision")
    _reverts(
        "NoPendingDecision", lambda: cw.escrow.execute(cw.w.stranger, terms.settlement_id, other, records)
    )
    cw.escrow.execute(cw.w.stranger, terms.settlement_id, terms.terms_hash, records)
    # The first record of leg 0 is paid; the second lock of the leg is refunded.
    assert cw.holdings() == (seller + 2 * ONE_SHARE, buyer + 2 * ONE_SHARE, escrow - 4 * ONE_SHARE)
    assert cw.escrow.settlement_head(terms.settlement_id) == CLOSED_FLAG


@integration
def test_a_report_sent_straight_to_the_forwarder_is_pending_until_executed(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit direct"), amount=ONE_SHARE)
    never = cw.w.terms(settlement_id("commit direct never"))
    cw.lock(terms)
    raw, context, signatures = cw.signed([item(terms, Decision.SETTLE), item(never, Decision.SETTLE)])
    before = cw.holdings()
    receipt = cw.w.net.forwarder.report(
        cw.w.admin, cw.escrow.address, raw, context, signatures, gas=1_000_000
    )
    (processed,) = cw.w.net.forwarder.report_processed_in(receipt)
    assert processed.result is True
    events = cw.escrow.events_in(receipt)
    assert _kinds(events) == ["DecisionPendingEvent", "ItemSkippedEvent"]
    assert cw.holdings() == before
    # The same report through deliver is now the forwarder's replay; execute finishes it.
    _reverts("AlreadyAttempted", lambda: cw.escrow.deliver(cw.w.admin, raw, context, signatures, []))
    cw.escrow.execute(cw.w.stranger, terms.settlement_id, terms.terms_hash, cw.open(terms.settlement_id))
    assert cw.holdings()[1] == before[1] + ONE_SHARE


@integration
def test_deliver_refused_by_the_forwarder_or_with_bad_records_consumes_nothing(cw: CommitWorld) -> None:
    terms = cw.w.terms(settlement_id("commit refused"), amount=ONE_SHARE)
    cw.lock(terms)
    records = cw.open(terms.settlement_id)
    before = cw.holdings()
    raw, context, _ = cw.signed([item(terms, Decision.SETTLE)])
    outsider = [sign_report(raw, context, OUTSIDER_KEY), sign_report(raw, context, DON_KEYS[0])]
    with pytest.raises(ContractRevert):
        cw.escrow.deliver(cw.w.admin, raw, context, outsider, [(terms.terms_hash, records)])
    raw, context, signatures = cw.signed([item(terms, Decision.SETTLE)])
    good = pack_delivery([(terms.terms_hash, records)])
    for bad in (good + b"\x00", good[:-1], b""):
        call = cw.escrow.call_data("deliver", raw, context, signatures, bad)
        with pytest.raises(ContractRevert) as caught:
            cw.w.evm.transact(cw.w.admin, call, gas=1_000_000)
        assert caught.value.error_name in ("MalformedRecords", ""), str(caught.value)
    # A payout without enough gas reverts the whole delivery (InsufficientGas), so it can be retried.
    call = cw.escrow.call_data("deliver", raw, context, signatures, good)
    with pytest.raises(ContractRevert):
        cw.w.evm.transact(cw.w.admin, call, gas=200_000)
    assert cw.holdings() == before
    assert cw.escrow.settlement_head(terms.settlement_id) == commit_head(records)
    cw.escrow.deliver(cw.w.admin, raw, context, signatures, [(terms.terms_hash, records)])
    assert cw.holdings()[1] == before[1] + ONE_SHARE


@integration
def test_a_payee_who_lost_kyc_is_owed_the_shares_and_claims_them_later(cw: CommitWorld) -> None:
    w = cw.w
    terms = w.terms(settlement_id("commit owed"), amount=4 * ONE_SHARE)
    cw.lock(terms)
    w.net.registry.set_allowed(w.admin, w.buyer.address, False)
    seller, buyer, escrow = cw.holdings()
    receipt = cw.deliver([item(terms, Decision.SETTLE)])
    (event,) = cw.escrow.events_in(receipt)
    assert isinstance(event, OwedEvent)
    assert (event.state, event.beneficiary, event.amount) == (
        LockState.SETTLE_OWED,
        w.buyer.address,
        4 * ONE_SHARE,
    )
    assert cw.holdings() == (seller, buyer, escrow)
    (owed,) = cw.open(terms.settlement_id)
    assert owed.state == LockState.SETTLE_OWED
    assert cw.escrow.settlement_head(terms.settlement_id) == commit_head([owed], closed=True)
    # Atomic: an ABORT report finds nothing Locked, and the locker cannot reclaim it.
    again = cw.deliver([item(terms, Decision.ABORT)])
    assert _skips(cw.escrow.events_in(again)) == [SkipReason.ALREADY_FINAL]
    w.evm.increase_time(terms.deadline_s - w.evm.latest_block().timestamp + GRACE_S + 10)
    _reverts("NotReclaimable", lambda: cw.escrow.reclaim(w.seller, terms.settlement_id, [owed], 0))
    _reverts("NotAllowed", lambda: cw.escrow.claim(w.stranger, terms.settlement_id, [owed], 0))
    w.net.registry.set_allowed(w.admin, w.buyer.address, True)
    receipt = cw.escrow.claim(w.stranger, terms.settlement_id, [owed], 0)
    (claimed,) = cw.escrow.events_in(receipt)
    assert isinstance(claimed, ClaimedEvent) and claimed.record == owed.digest
    assert cw.holdings() == (seller, buyer + 4 * ONE_SHARE, escrow - 4 * ONE_SHARE)
    assert cw.open(terms.settlement_id) == []
    _reverts("StaleRecords", lambda: cw.escrow.claim(w.stranger, terms.settlement_id, [owed], 0))


@integration
def test_only_the_forwarder_reaches_on_report(cw: CommitWorld) -> None:
    call = cw.escrow.call_data("onReport", b"\x00" * 64, b"")
    _reverts("UnauthorizedForwarder", lambda: cw.w.evm.transact(cw.w.stranger, call, gas=200_000))
    assert cw.escrow.forwarder() == cw.w.net.forwarder.address
    assert cw.escrow.grace_s() == GRACE_S
