"""DvPEscrow against a real anvil: lock, report-driven settle and abort through the genuine
KeystoneForwarder, owed payouts when the token refuses, claim, reclaim, and every rejection by its
custom error name. "Nothing moved" is always checked on balances, not only on events."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from crossdvp.chain.client import Call, EvmClient, Sender
from crossdvp.chain.contracts import (
    AbortedEvent,
    ClaimedEvent,
    ItemSkippedEvent,
    LockedEvent,
    LockState,
    OwedEvent,
    ReclaimedEvent,
    SettledEvent,
    SkipReason,
    TransmissionState,
    load_artifact,
)
from crossdvp.chain.errors import ContractRevert
from crossdvp.settlement import Decision, ReportItem
from crossdvp.settlement.report import REPORT_METADATA_LENGTH, ReportMetadata
from tests.chain.asset_world import (
    DON,
    DON_KEYS,
    GRACE_S,
    ONE_SHARE,
    WORKFLOW,
    World,
    build_world,
    item,
    settlement_id,
)

pytestmark = pytest.mark.integration

ZERO = "0x" + "00" * 20
IRECEIVER_ID = keccak(text="onReport(bytes,bytes)")[:4]
IERC165_ID = bytes.fromhex("01ffc9a7")


@pytest.fixture
def world(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> World:
    return build_world(evm, dev_senders)


def _reverts(error_name: str, action: Callable[[], object]) -> ContractRevert:
    """Run `action()` and return its ContractRevert, asserting the custom error's name."""
    with pytest.raises(ContractRevert) as caught:
        action()
    assert caught.value.error_name == error_name, str(caught.value)
    return caught.value


# -- configuration --------------------------------------------------------------------------------


def test_config_is_what_deployment_passed_and_erc165_names_ireceiver(world: World) -> None:
    escrow = world.net.escrow
    assert escrow.forwarder() == world.net.forwarder.address
    assert escrow.workflow_owner() == WORKFLOW.workflow_owner
    assert escrow.workflow_name() == WORKFLOW.encoded_name
    assert escrow.workflow_id() == WORKFLOW.workflow_cid
    assert escrow.grace_s() == GRACE_S
    assert escrow.supports_interface(IRECEIVER_ID)
    assert escrow.supports_interface(IERC165_ID)
    assert not escrow.supports_interface(bytes.fromhex("ffffffff"))


# -- lock -----------------------------------------------------------------------------------------


def test_lock_pulls_the_shares_and_records_every_field(world: World) -> None:
    terms = world.terms(settlement_id("lock"), amount=3 * ONE_SHARE)
    before = world.holdings()
    receipt = world.lock_leg(terms)
    assert world.holdings() == (before[0] - 3 * ONE_SHARE, before[1], before[2] + 3 * ONE_SHARE)
    view = world.lock_view(terms.settlement_id)
    assert (view.token, view.amount, view.locker, view.deadline_s) == (
        world.token,
        3 * ONE_SHARE,
        world.seller.address,
        terms.deadline_s,
    )
    assert (view.state, view.payee, view.terms_hash) == (
        LockState.LOCKED,
        world.buyer.address,
        terms.terms_hash,
    )
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, LockedEvent)
    assert (event.settlement_id, event.leg_index, event.token, event.locker, event.payee) == (
        terms.settlement_id,
        0,
        world.token,
        world.seller.address,
        world.buyer.address,
    )
    assert (event.amount, event.deadline, event.terms_hash) == (
        3 * ONE_SHARE,
        terms.deadline_s,
        terms.terms_hash,
    )
    assert world.lock_view(terms.settlement_id, 1).state == LockState.NONE


def test_lock_event_finds_the_lock_of_a_leg_and_nothing_for_a_leg_never_locked(world: World) -> None:
    terms = world.terms(settlement_id("lock-event"))
    receipt = world.lock_leg(terms)
    world.lock_leg(world.terms(settlement_id("lock-event-later")))
    since = world.addresses.deployed_at_block
    event = world.net.escrow.lock_event(terms.settlement_id, 0, since)
    assert event is not None
    assert (event.tx_hash, event.leg_index, event.terms_hash) == (receipt.tx_hash, 0, terms.terms_hash)
    assert world.net.escrow.lock_event(terms.settlement_id, 1, since) is None
    assert world.net.escrow.lock_event(settlement_id("never-locked"), 0, since) is None


def test_lock_rejections_move_nothing(world: World) -> None:
    escrow, sid = world.net.escrow, settlement_id("rejections")
    deadline, th = world.deadline(), keccak(b"terms")
    before = world.holdings()

    def lock(amount: int = ONE_SHARE, payee: str = world.buyer.address, deadline_s: int = deadline) -> None:
        escrow.lock(world.seller, sid, 0, world.token, amount, payee, deadline_s, th, gas=400_000)

    _reverts("ZeroAmount", lambda: lock(amount=0))
    error = _reverts("AmountTooLarge", lambda: lock(amount=2**96))
    assert error.error_args == (2**96,)
    past = world.evm.latest_block().timestamp - 1
    error = _reverts("DeadlinePassed", lambda: lock(deadline_s=past))
    assert error.error_args[0] == past
    error = _reverts("PayeeRefused", lambda: lock(payee=world.stranger.address))  # not KYC'd
    assert error.error_args == (world.token, world.stranger.address)
    _reverts("PayeeRefused", lambda: lock(payee=ZERO))
    world.net.registry.set_blocked(world.admin, world.buyer.address)  # sanctioned
    _reverts("PayeeRefused", lambda: lock())
    world.net.registry.set_blocked(world.admin, world.buyer.address, False)
    world.net.token.approve(world.seller, world.escrow, ONE_SHARE - 1)
    _reverts("ERC20InsufficientAllowance", lambda: lock())
    assert world.holdings() == before
    assert world.lock_view(sid).state == LockState.NONE

    world.net.token.approve(world.seller, world.escrow, 2**256 - 1)
    lock()
    error = _reverts("LockExists", lambda: lock())
    assert error.error_args == (sid, 0)


def test_lock_by_a_holder_without_kyc_is_refused_by_the_token(world: World) -> None:
    world.net.token.mint(world.admin, world.seller.address, ONE_SHARE)
    world.net.registry.set_allowed(world.admin, world.seller.address, False)
    terms = world.terms(settlement_id("no kyc"))
    error = _reverts("NotAllowed", lambda: world.lock_leg(terms))
    assert error.error_args == (world.seller.address,)


def test_a_lock_stamped_exactly_at_the_deadline_counts_one_second_later_does_not(world: World) -> None:
    deadline = world.deadline(100)
    on_time = world.terms(settlement_id("on time"), deadline_s=deadline)
    late = world.terms(settlement_id("late"), deadline_s=deadline)
    world.evm.set_next_block_timestamp(deadline)
    world.lock_leg(on_time)
    assert world.evm.latest_block().timestamp == deadline
    world.evm.set_next_block_timestamp(deadline + 1)
    error = _reverts("DeadlinePassed", lambda: world.lock_leg(late))
    assert error.error_args == (deadline, deadline + 1)


def test_lock_with_permit_needs_no_approve_and_survives_a_front_run_permit(world: World) -> None:
    token, escrow = world.net.token, world.net.escrow
    token.approve(world.seller, world.escrow, 0)
    for label, front_run in (("permit", False), ("front-run", True)):
        terms = world.terms(settlement_id(label))
        permit = token.sign_permit(world.seller.private_key, world.escrow, ONE_SHARE, world.deadline())
        if front_run:  # someone submits the permit first; lockWithPermit must still go through
            token.permit(world.stranger, world.seller.address, world.escrow, ONE_SHARE, permit)
        before = world.holdings()
        leg = terms.legs[0]
        escrow.lock_with_permit(
            world.seller,
            terms.settlement_id,
            0,
            leg.asset,
            leg.amount_minor,
            leg.payee,
            terms.deadline_s,
            terms.terms_hash,
            permit,
        )
        assert world.holdings() == (before[0] - ONE_SHARE, before[1], before[2] + ONE_SHARE)
        assert world.lock_view(terms.settlement_id).state == LockState.LOCKED
        assert token.allowance(world.seller.address, world.escrow) == 0


def test_lock_with_a_bad_permit_and_no_allowance_is_refused(world: World) -> None:
    token = world.net.token
    token.approve(world.seller, world.escrow, 0)
    terms = world.terms(settlement_id("bad permit"))
    permit = token.sign_permit(
        world.buyer.private_key, world.escrow, ONE_SHARE, world.deadline()
    )  # wrong signer
    leg = terms.legs[0]
    before = world.holdings()
    _reverts(
        "ERC20InsufficientAllowance",
        lambda: world.net.escrow.lock_with_permit(
            world.seller,
            terms.settlement_id,
            0,
            leg.asset,
            leg.amount_minor,
            leg.payee,
            terms.deadline_s,
            terms.terms_hash,
            permit,
            gas=400_000,
        ),
    )
    assert world.holdings() == before


def test_a_token_without_can_transfer_is_not_asked_and_settles(world: World) -> None:
    """PlainToken has no canTransfer: the escrow's pre-check tolerates that (only the zero payee is
    refused outright), and the report pays out as with the fund token."""
    evm, seller, escrow = world.evm, world.seller, world.net.escrow
    plain = evm.deploy(world.admin, "PlainToken", "Plain", "PLN")
    abi = load_artifact("PlainToken").contract_abi

    def call(function: str, *args: object) -> Call:
        return Call(
            to=plain, data=abi.function(function, len(args)).encode_call(args), label=f"PlainToken.{function}"
        )

    def balance(account: str) -> int:
        (value,) = abi.function("balanceOf", 1).decode_output(evm.call(call("balanceOf", account)))
        return int(value)

    evm.transact(seller, call("mint", seller.address, 5 * ONE_SHARE))
    evm.transact(seller, call("approve", world.escrow, 2**256 - 1))
    payee = world.stranger.address  # not KYC'd: irrelevant to a plain token
    sid, th, deadline = settlement_id("plain token"), keccak(b"plain terms"), world.deadline()
    error = _reverts(
        "PayeeRefused", lambda: escrow.lock(seller, sid, 0, plain, ONE_SHARE, ZERO, deadline, th, gas=400_000)
    )
    assert error.error_args == (plain, ZERO)
    escrow.lock(seller, sid, 0, plain, 2 * ONE_SHARE, payee, deadline, th)
    assert (balance(seller.address), balance(world.escrow)) == (3 * ONE_SHARE, 2 * ONE_SHARE)
    world.deliver([ReportItem(sid, th, Decision.SETTLE)])
    assert (balance(payee), balance(world.escrow)) == (2 * ONE_SHARE, 0)
    assert world.lock_view(sid).state == LockState.SETTLED


# -- settle / abort through the forwarder ---------------------------------------------------------


def test_settle_report_signed_by_f_plus_one_pays_the_payee(world: World) -> None:
    terms = world.terms(settlement_id("settle"), amount=5 * ONE_SHARE)
    world.lock_leg(terms)
    seller, buyer, escrow = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    assert world.processed(receipt).result is True
    assert world.holdings() == (seller, buyer + 5 * ONE_SHARE, escrow - 5 * ONE_SHARE)
    view = world.lock_view(terms.settlement_id)
    assert view.state == LockState.SETTLED
    assert (view.token, view.amount, view.terms_hash) == (ZERO, 0, bytes(32))  # freed for the refund
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, SettledEvent)
    assert (event.settlement_id, event.leg_index, event.payee, event.amount) == (
        terms.settlement_id,
        0,
        world.buyer.address,
        5 * ONE_SHARE,
    )


def test_abort_report_refunds_the_locker(world: World) -> None:
    terms = world.terms(settlement_id("abort"), amount=2 * ONE_SHARE)
    before = world.holdings()
    world.lock_leg(terms)
    receipt = world.deliver([item(terms, Decision.ABORT)], keys=[DON_KEYS[2], DON_KEYS[3]])
    assert world.processed(receipt).result is True
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.ABORTED
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, AbortedEvent)
    assert (event.locker, event.amount) == (world.seller.address, 2 * ONE_SHARE)


def test_one_item_settles_every_chain_leg_of_its_settlement(
    world: World, dev_senders: tuple[Sender, ...]
) -> None:
    """Legs 0 and 3 of one settlement locked here by two lockers: both paid by one report item."""
    second_seller = dev_senders[4]
    world.net.registry.set_allowed(world.admin, second_seller.address)
    world.net.token.mint(world.admin, second_seller.address, ONE_SHARE)
    world.net.token.approve(second_seller, world.escrow, ONE_SHARE)
    terms = world.terms(settlement_id("multi-leg"))
    escrow, sid, th = world.net.escrow, terms.settlement_id, terms.terms_hash
    escrow.lock(world.seller, sid, 0, world.token, ONE_SHARE, world.buyer.address, terms.deadline_s, th)
    escrow.lock(second_seller, sid, 3, world.token, ONE_SHARE, world.buyer.address, terms.deadline_s, th)
    buyer_before = world.net.token.balance_of(world.buyer.address)
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    assert world.net.token.balance_of(world.buyer.address) == buyer_before + 2 * ONE_SHARE
    settled = [e for e in world.net.escrow.events_in(receipt) if isinstance(e, SettledEvent)]
    assert [e.leg_index for e in settled] == [0, 3]
    assert world.lock_view(sid, 3).state == LockState.SETTLED


def test_a_lock_naming_other_terms_is_never_paid_out_by_the_item(world: World) -> None:
    """Leg 0 names the terms, leg 1 (same settlement) names other terms: SETTLE pays leg 0 only,
    reports the mismatch, and leaves leg 1 to its locker's reclaim."""
    terms = world.terms(settlement_id("partly mismatched"))
    escrow, sid = world.net.escrow, terms.settlement_id
    world.lock_leg(terms)
    escrow.lock(
        world.seller, sid, 1, world.token, ONE_SHARE, world.buyer.address, terms.deadline_s, keccak(b"x")
    )
    seller, buyer, held = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    assert world.holdings() == (seller, buyer + ONE_SHARE, held - ONE_SHARE)
    events = escrow.events_in(receipt)
    assert [e.leg_index for e in events if isinstance(e, SettledEvent)] == [0]
    assert [e.reason for e in events if isinstance(e, ItemSkippedEvent)] == [SkipReason.TERMS_HASH_MISMATCH]
    assert (world.lock_view(sid, 0).state, world.lock_view(sid, 1).state) == (
        LockState.SETTLED,
        LockState.LOCKED,
    )


def test_a_bad_item_is_skipped_and_the_rest_of_the_batch_applies(world: World) -> None:
    good = world.terms(settlement_id("good"))
    final = world.terms(settlement_id("already final"))
    mismatched = world.terms(settlement_id("mismatch"))
    for terms in (good, final, mismatched):
        world.lock_leg(terms)
    world.deliver([item(final, Decision.ABORT)])
    unknown = world.terms(settlement_id("never locked"))
    wrong_hash = ReportItem(mismatched.settlement_id, keccak(b"other terms"), Decision.SETTLE)
    seller, buyer, escrow = world.holdings()
    receipt = world.deliver(
        [
            item(unknown, Decision.SETTLE),
            wrong_hash,
            item(final, Decision.SETTLE),
            item(good, Decision.SETTLE),
        ]
    )
    assert world.processed(receipt).result is True
    assert world.holdings() == (seller, buyer + ONE_SHARE, escrow - ONE_SHARE)
    events = world.net.escrow.events_in(receipt)
    skipped = [(e.settlement_id, e.reason) for e in events if isinstance(e, ItemSkippedEvent)]
    assert skipped == [
        (unknown.settlement_id, SkipReason.UNKNOWN_SETTLEMENT),
        (mismatched.settlement_id, SkipReason.TERMS_HASH_MISMATCH),
        (final.settlement_id, SkipReason.ALREADY_FINAL),
    ]
    assert [e.settlement_id for e in events if isinstance(e, SettledEvent)] == [good.settlement_id]
    assert world.lock_view(mismatched.settlement_id).state == LockState.LOCKED
    assert world.lock_view(final.settlement_id).state == LockState.ABORTED


def _metadata(payload: bytes) -> bytes:
    """Valid report metadata (our DON config and workflow) for a hand-made payload."""
    return ReportMetadata(
        version=1,
        workflow_execution_id=keccak(payload),
        timestamp=1_700_000_000,
        don_id=DON.don_id,
        don_config_version=DON.config_version,
        workflow_cid=WORKFLOW.workflow_cid,
        workflow_name=WORKFLOW.encoded_name,
        workflow_owner=WORKFLOW.workflow_owner,
        report_id=WORKFLOW.report_id,
    ).encode()


def test_an_invalid_decision_code_is_skipped_not_fatal(world: World) -> None:
    """The core never builds decision 3, so the payload is assembled by hand behind valid metadata."""
    terms = world.terms(settlement_id("decision 3"))
    world.lock_leg(terms)
    payload = encode(["(bytes32,bytes32,uint8)[]"], [[(terms.settlement_id, terms.terms_hash, 3)]])
    metadata = _metadata(payload)
    assert len(metadata) == REPORT_METADATA_LENGTH
    before = world.holdings()
    receipt = world.deliver_raw(metadata + payload)
    assert world.processed(receipt).result is True
    assert world.holdings() == before
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, ItemSkippedEvent)
    assert (event.decision, event.reason) == (3, SkipReason.INVALID_DECISION)
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda p: p[:-1], id="truncated"),
        pytest.param(lambda p: p + bytes(32), id="trailing-word"),
        pytest.param(lambda p: p[:-32] + (256).to_bytes(32, "big"), id="decision-not-uint8"),
        pytest.param(lambda p: (0x40).to_bytes(32, "big") + p[32:], id="wrong-head-offset"),
        pytest.param(lambda p: p[:32] + (2**255).to_bytes(32, "big") + p[64:], id="huge-length"),
    ],
)
def test_a_payload_that_is_not_the_canonical_encoding_fails_the_delivery(
    world: World, mangle: Callable[[bytes], bytes]
) -> None:
    terms = world.terms(settlement_id("mangled"))
    world.lock_leg(terms)
    payload = mangle(encode(["(bytes32,bytes32,uint8)[]"], [[(terms.settlement_id, terms.terms_hash, 1)]]))
    before = world.holdings()
    receipt = world.deliver_raw(_metadata(payload) + payload)
    assert world.processed(receipt).result is False
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED


def test_a_starved_delivery_fails_retryably_and_a_retry_with_gas_settles(world: World) -> None:
    """Too little gas for a payout reverts onReport (InsufficientGas) instead of marking it owed; the
    forwarder records FAILED, which it lets anyone retry."""
    terms = world.terms(settlement_id("starved"))
    world.lock_leg(terms)
    before = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)], gas=250_000)
    assert world.processed(receipt).result is False
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED
    execution_id = world.processed(receipt).workflow_execution_id
    info = world.net.forwarder.transmission_info(world.escrow, execution_id, WORKFLOW.report_id)
    assert info.state == TransmissionState.FAILED
    retry = world.deliver([item(terms, Decision.SETTLE)])
    assert world.processed(retry).result is True
    assert world.lock_view(terms.settlement_id).state == LockState.SETTLED


# -- owed payouts and claim -----------------------------------------------------------------------


def test_payee_losing_kyc_before_settle_makes_the_shares_owed_then_claimable(world: World) -> None:
    terms = world.terms(settlement_id("kyc revoked"), amount=4 * ONE_SHARE)
    world.lock_leg(terms)
    world.net.registry.set_allowed(world.admin, world.buyer.address, False)
    seller, buyer, escrow = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    # The decision is executed (the forwarder records success) but the shares wait in escrow.
    assert world.processed(receipt).result is True
    assert world.holdings() == (seller, buyer, escrow)
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, OwedEvent)
    assert (event.beneficiary, event.amount) == (world.buyer.address, 4 * ONE_SHARE)
    view = world.lock_view(terms.settlement_id)
    assert (view.state, view.payee, view.amount, view.terms_hash) == (
        LockState.SETTLE_OWED,
        world.buyer.address,
        4 * ONE_SHARE,
        terms.terms_hash,
    )
    # Atomicity: neither an ABORT report nor the locker can take the shares back now.
    again = world.deliver([item(terms, Decision.ABORT)])
    assert [e.reason for e in world.net.escrow.events_in(again) if isinstance(e, ItemSkippedEvent)] == [
        SkipReason.ALREADY_FINAL
    ]
    world.evm.increase_time(terms.deadline_s - world.evm.latest_block().timestamp + GRACE_S + 10)
    error = _reverts("NotReclaimable", lambda: world.net.escrow.reclaim(world.seller, terms.settlement_id, 0))
    assert error.error_args == (LockState.SETTLE_OWED,)
    # While the token still refuses the buyer, claim fails with the token's own error.
    error = _reverts("NotAllowed", lambda: world.net.escrow.claim(world.stranger, terms.settlement_id, 0))
    assert error.error_args == (world.buyer.address,)
    assert world.holdings() == (seller, buyer, escrow)
    world.net.registry.set_allowed(world.admin, world.buyer.address, True)
    claim = world.net.escrow.claim(world.stranger, terms.settlement_id, 0)  # anyone may trigger it
    assert world.holdings() == (seller, buyer + 4 * ONE_SHARE, escrow - 4 * ONE_SHARE)
    (claimed,) = world.net.escrow.events_in(claim)
    assert isinstance(claimed, ClaimedEvent)
    assert (claimed.beneficiary, claimed.amount) == (world.buyer.address, 4 * ONE_SHARE)
    assert world.lock_view(terms.settlement_id).state == LockState.SETTLED
    error = _reverts("NothingOwed", lambda: world.net.escrow.claim(world.stranger, terms.settlement_id, 0))
    assert error.error_args == (LockState.SETTLED,)


def test_locker_losing_kyc_before_abort_makes_the_refund_owed_then_claimable(world: World) -> None:
    terms = world.terms(settlement_id("abort owed"))
    seller_start = world.net.token.balance_of(world.seller.address)
    world.lock_leg(terms)
    world.net.registry.set_blocked(world.admin, world.seller.address)
    receipt = world.deliver([item(terms, Decision.ABORT)])
    (event,) = world.net.escrow.events_in(receipt)
    assert isinstance(event, OwedEvent)
    assert event.beneficiary == world.seller.address
    assert world.lock_view(terms.settlement_id).state == LockState.ABORT_OWED
    _reverts("NotAllowed", lambda: world.net.escrow.claim(world.buyer, terms.settlement_id, 0))
    world.net.registry.set_blocked(world.admin, world.seller.address, False)
    world.net.escrow.claim(world.buyer, terms.settlement_id, 0)
    assert world.net.token.balance_of(world.seller.address) == seller_start
    assert world.lock_view(terms.settlement_id).state == LockState.ABORTED


def test_claim_of_a_lock_that_owes_nothing_is_refused(world: World) -> None:
    terms = world.terms(settlement_id("nothing owed"))
    error = _reverts("NothingOwed", lambda: world.net.escrow.claim(world.buyer, terms.settlement_id, 0))
    assert error.error_args == (LockState.NONE,)
    world.lock_leg(terms)
    error = _reverts("NothingOwed", lambda: world.net.escrow.claim(world.buyer, terms.settlement_id, 0))
    assert error.error_args == (LockState.LOCKED,)


# -- reclaim --------------------------------------------------------------------------------------


def test_reclaim_only_by_the_locker_and_only_after_deadline_plus_grace(world: World) -> None:
    terms = world.terms(settlement_id("reclaim"), amount=2 * ONE_SHARE)
    before = world.holdings()
    world.lock_leg(terms)
    escrow, sid = world.net.escrow, terms.settlement_id
    available_at = terms.deadline_s + GRACE_S + 1
    error = _reverts("ReclaimTooEarly", lambda: escrow.reclaim(world.seller, sid, 0))
    assert error.error_args == (available_at,)
    world.evm.set_next_block_timestamp(available_at - 1)  # deadline + grace: still too early
    _reverts("ReclaimTooEarly", lambda: escrow.reclaim(world.seller, sid, 0))
    world.evm.set_next_block_timestamp(available_at)
    error = _reverts("NotLocker", lambda: escrow.reclaim(world.buyer, sid, 0))
    assert error.error_args == (world.buyer.address,)
    world.evm.set_next_block_timestamp(available_at)
    receipt = escrow.reclaim(world.seller, sid, 0)
    assert world.holdings() == before
    (event,) = escrow.events_in(receipt)
    assert isinstance(event, ReclaimedEvent)
    assert (event.locker, event.amount) == (world.seller.address, 2 * ONE_SHARE)
    assert world.lock_view(sid).state == LockState.RECLAIMED
    error = _reverts("NotReclaimable", lambda: escrow.reclaim(world.seller, sid, 0))
    assert error.error_args == (LockState.RECLAIMED,)
    # A reclaimed leg cannot be locked again, and a late report finds it final.
    _reverts("LockExists", lambda: world.lock_leg(world.terms(sid, deadline_s=world.deadline())))
    late = world.deliver([item(terms, Decision.SETTLE)])
    assert [e.reason for e in escrow.events_in(late) if isinstance(e, ItemSkippedEvent)] == [
        SkipReason.ALREADY_FINAL
    ]
    assert world.holdings() == before


def test_reclaim_after_settle_or_of_nothing_is_refused(world: World) -> None:
    terms = world.terms(settlement_id("settled then reclaim"))
    escrow, sid = world.net.escrow, terms.settlement_id
    error = _reverts("NotReclaimable", lambda: escrow.reclaim(world.seller, sid, 0))
    assert error.error_args == (LockState.NONE,)
    world.lock_leg(terms)
    world.deliver([item(terms, Decision.SETTLE)])
    world.evm.increase_time(terms.deadline_s - world.evm.latest_block().timestamp + GRACE_S + 10)
    before = world.holdings()
    error = _reverts("NotReclaimable", lambda: escrow.reclaim(world.seller, sid, 0))
    assert error.error_args == (LockState.SETTLED,)
    assert world.holdings() == before


# -- the leg mask: inline in leg 0's payee slot, overflow slot for legs >= 95 ---------------------
# Leg 0's payee slot also holds the settlement's "ever locked" bits for legs 0..94 (and a flag for
# the overflow slot): these tests lock legs in the orders that would expose a packing mistake
# (a payee clobbered by mask bits, mask bits clobbered by a payee write, a lost overflow leg).


def _kyc_payees(world: World, label: str, count: int) -> list[str]:
    """`count` distinct KYC'd payees holding nothing (full 160-bit addresses, derived from `label`)."""
    payees = [f"0x{keccak(text=f'{label}: payee {i}')[-20:].hex()}" for i in range(count)]
    world.net.registry.set_allowed_batch(world.admin, payees)
    return payees


def _settled(receipt_events: Sequence[object]) -> list[tuple[int, str, int]]:
    return [(e.leg_index, e.payee, e.amount) for e in receipt_events if isinstance(e, SettledEvent)]


def _skips(receipt_events: Sequence[object]) -> list[SkipReason]:
    return [e.reason for e in receipt_events if isinstance(e, ItemSkippedEvent)]


def test_a_leg_locked_before_leg_0_keeps_its_bit_and_both_are_paid_to_their_payees(world: World) -> None:
    """Leg 1 first writes leg 0's payee slot with its mask bit only; leg 0's own lock then adds its
    payee without losing that bit, and one SETTLE item pays each leg to its own payee."""
    terms = world.terms(settlement_id("leg 1 before leg 0"))
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    (payee1,) = _kyc_payees(world, "leg 1 before leg 0", 1)
    payee0 = world.buyer.address
    escrow.lock(world.seller, sid, 1, world.token, 2 * ONE_SHARE, payee1, deadline, th)
    leg0 = world.lock_view(sid, 0)
    assert (leg0.state, leg0.payee, leg0.token, leg0.amount) == (LockState.NONE, ZERO, ZERO, 0)
    escrow.lock(world.seller, sid, 0, world.token, ONE_SHARE, payee0, deadline, th)
    assert [(world.lock_view(sid, i).state, world.lock_view(sid, i).payee) for i in (0, 1)] == [
        (LockState.LOCKED, payee0),
        (LockState.LOCKED, payee1),
    ]

    def relock(leg: int) -> Callable[[], object]:
        return lambda: escrow.lock(
            world.seller, sid, leg, world.token, ONE_SHARE, payee0, deadline, th, gas=400_000
        )

    for leg in (0, 1):
        assert _reverts("LockExists", relock(leg)).error_args == (sid, leg)
    before = world.balances(payee0, payee1, world.escrow)
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    assert world.balances(payee0, payee1, world.escrow) == (
        before[0] + ONE_SHARE,
        before[1] + 2 * ONE_SHARE,
        before[2] - 3 * ONE_SHARE,
    )
    events = escrow.events_in(receipt)
    assert _settled(events) == [(0, payee0, ONE_SHARE), (1, payee1, 2 * ONE_SHARE)]
    assert _skips(events) == []
    assert [(world.lock_view(sid, i).state, world.lock_view(sid, i).payee) for i in (0, 1)] == [
        (LockState.SETTLED, payee0),
        (LockState.SETTLED, payee1),
    ]


@pytest.mark.parametrize(
    "legs",
    [
        pytest.param((0, 200), id="leg0-then-200"),
        pytest.param((200, 0), id="leg200-then-0"),
        pytest.param((255, 95, 94), id="boundary-without-leg0"),
    ],
)
def test_legs_beyond_the_inline_mask_settle_through_the_overflow_mask(
    world: World, legs: tuple[int, ...]
) -> None:
    terms = world.terms(settlement_id(f"overflow {legs}"))
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    payees = dict(zip(legs, _kyc_payees(world, f"overflow {legs}", len(legs)), strict=True))
    amounts = {leg: (i + 1) * ONE_SHARE for i, leg in enumerate(legs)}
    for leg in legs:
        escrow.lock(world.seller, sid, leg, world.token, amounts[leg], payees[leg], deadline, th)
    before = {leg: world.net.token.balance_of(payees[leg]) for leg in legs}
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    events = escrow.events_in(receipt)
    assert _settled(events) == [(leg, payees[leg], amounts[leg]) for leg in sorted(legs)]
    assert _skips(events) == []
    for leg in legs:
        assert world.net.token.balance_of(payees[leg]) == before[leg] + amounts[leg]
        view = world.lock_view(sid, leg)
        assert (view.state, view.payee) == (LockState.SETTLED, payees[leg])
    if 0 not in legs:
        leg0 = world.lock_view(sid, 0)
        assert (leg0.state, leg0.payee) == (LockState.NONE, ZERO)
    # The mask outlives the payouts: a later item finds every lock final, not an unknown settlement.
    # (ABORT: the same SETTLE payload again would be the same forwarder transmission.)
    again = world.deliver([item(terms, Decision.ABORT)])
    assert _skips(escrow.events_in(again)) == [SkipReason.ALREADY_FINAL]


def test_a_settlement_locked_only_at_leg_3_reads_leg_0_as_never_locked_and_settles_leg_3(
    world: World,
) -> None:
    terms = world.terms(settlement_id("only leg 3"))
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    escrow.lock(world.seller, sid, 3, world.token, 2 * ONE_SHARE, world.buyer.address, deadline, th)
    never = (ZERO, 0, ZERO, 0, LockState.NONE, ZERO, bytes(32))

    def leg0_fields() -> tuple[object, ...]:
        v = world.lock_view(sid, 0)
        return (v.token, v.amount, v.locker, v.deadline_s, v.state, v.payee, v.terms_hash)

    assert leg0_fields() == never
    _reverts("NothingOwed", lambda: escrow.claim(world.stranger, sid, 0))
    _reverts("NotReclaimable", lambda: escrow.reclaim(world.seller, sid, 0))
    seller, buyer, held = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    assert world.holdings() == (seller, buyer + 2 * ONE_SHARE, held - 2 * ONE_SHARE)
    events = escrow.events_in(receipt)
    assert _settled(events) == [(3, world.buyer.address, 2 * ONE_SHARE)]
    assert _skips(events) == []
    assert world.lock_view(sid, 3).state == LockState.SETTLED
    assert leg0_fields() == never
    again = world.deliver([item(terms, Decision.ABORT)])
    assert _skips(escrow.events_in(again)) == [SkipReason.ALREADY_FINAL]
    # Leg 0 can still be locked (its slot held only mask bits), and the next item pays it. Its own
    # terms hash keeps the report distinct from the first (same payload, same transmission id).
    th0 = keccak(b"only leg 3: later terms for leg 0")
    escrow.lock(world.seller, sid, 0, world.token, ONE_SHARE, world.buyer.address, deadline, th0)
    leg0 = world.lock_view(sid, 0)
    assert (leg0.state, leg0.payee, leg0.amount) == (LockState.LOCKED, world.buyer.address, ONE_SHARE)
    late = world.deliver([ReportItem(sid, th0, Decision.SETTLE)])
    assert _settled(escrow.events_in(late)) == [(0, world.buyer.address, ONE_SHARE)]
    assert _skips(escrow.events_in(late)) == []


def test_abort_and_terms_mismatch_with_inline_masks(world: World) -> None:
    """Leg 2 names other terms and is locked first; legs 0 and 1 name the item's terms. ABORT
    refunds legs 0 and 1 and reports the mismatch of leg 2, which stays Locked until an item with
    its own terms settles it; an unknown settlement in the same batch is skipped as unknown."""
    terms = world.terms(settlement_id("inline abort and mismatch"))
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    other = keccak(b"other terms for leg 2")
    (payee2,) = _kyc_payees(world, "inline abort and mismatch", 1)
    start = world.holdings()
    escrow.lock(world.seller, sid, 2, world.token, 4 * ONE_SHARE, payee2, deadline, other)
    world.lock_leg(terms)  # leg 0, one share to the buyer
    escrow.lock(world.seller, sid, 1, world.token, 2 * ONE_SHARE, world.buyer.address, deadline, th)
    unknown = world.terms(settlement_id("inline abort: never locked"))
    receipt = world.deliver([item(unknown, Decision.ABORT), item(terms, Decision.ABORT)])
    events = escrow.events_in(receipt)
    aborted = [(e.leg_index, e.locker, e.amount) for e in events if isinstance(e, AbortedEvent)]
    assert aborted == [(0, world.seller.address, ONE_SHARE), (1, world.seller.address, 2 * ONE_SHARE)]
    skipped = [(e.settlement_id, e.reason) for e in events if isinstance(e, ItemSkippedEvent)]
    assert skipped == [
        (unknown.settlement_id, SkipReason.UNKNOWN_SETTLEMENT),
        (sid, SkipReason.TERMS_HASH_MISMATCH),
    ]
    assert world.holdings() == (start[0] - 4 * ONE_SHARE, start[1], start[2] + 4 * ONE_SHARE)
    assert [world.lock_view(sid, i).state for i in (0, 1, 2)] == [
        LockState.ABORTED,
        LockState.ABORTED,
        LockState.LOCKED,
    ]
    assert (world.lock_view(sid, 0).payee, world.lock_view(sid, 2).payee) == (world.buyer.address, payee2)
    # Leg 2 is still Locked under other terms: the mismatch, not "all final", is what a retry reports.
    retry = world.deliver([item(terms, Decision.SETTLE)])
    assert _settled(escrow.events_in(retry)) == []
    assert _skips(escrow.events_in(retry)) == [SkipReason.TERMS_HASH_MISMATCH]
    own = world.deliver([ReportItem(sid, other, Decision.SETTLE)])
    assert _settled(escrow.events_in(own)) == [(2, payee2, 4 * ONE_SHARE)]
    assert _skips(escrow.events_in(own)) == []
    assert world.net.token.balance_of(payee2) == 4 * ONE_SHARE
    final = world.deliver([item(terms, Decision.ABORT)])
    assert _skips(escrow.events_in(final)) == [SkipReason.ALREADY_FINAL]


def test_an_owed_leg_0_is_claimed_by_its_payee_while_other_legs_bits_share_its_slot(world: World) -> None:
    """Legs 1 and 200 (inline bit and overflow flag in leg 0's payee slot) are locked before leg 0;
    the buyer (leg 0's payee) loses KYC, so SETTLE pays legs 1 and 200 and leaves leg 0 owed. The
    owed restore and the claim must both read leg 0's payee through the mask bits."""
    terms = world.terms(settlement_id("owed leg 0 with mask bits"), amount=4 * ONE_SHARE)
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    payee1, payee200 = _kyc_payees(world, "owed leg 0 with mask bits", 2)
    escrow.lock(world.seller, sid, 1, world.token, 2 * ONE_SHARE, payee1, deadline, th)
    escrow.lock(world.seller, sid, 200, world.token, 3 * ONE_SHARE, payee200, deadline, th)
    world.lock_leg(terms)  # leg 0: four shares to the buyer
    world.net.registry.set_allowed(world.admin, world.buyer.address, False)
    seller, buyer, held = world.holdings()
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    events = escrow.events_in(receipt)
    assert _settled(events) == [(1, payee1, 2 * ONE_SHARE), (200, payee200, 3 * ONE_SHARE)]
    owed = [(e.leg_index, e.beneficiary, e.amount) for e in events if isinstance(e, OwedEvent)]
    assert owed == [(0, world.buyer.address, 4 * ONE_SHARE)]
    assert world.holdings() == (seller, buyer, held - 5 * ONE_SHARE)
    leg0 = world.lock_view(sid, 0)
    assert (leg0.state, leg0.payee, leg0.amount, leg0.locker, leg0.terms_hash) == (
        LockState.SETTLE_OWED,
        world.buyer.address,
        4 * ONE_SHARE,
        world.seller.address,
        th,
    )
    error = _reverts("NotAllowed", lambda: escrow.claim(world.stranger, sid, 0))
    assert error.error_args == (world.buyer.address,)
    world.net.registry.set_allowed(world.admin, world.buyer.address, True)
    claim = escrow.claim(world.stranger, sid, 0)
    assert world.holdings() == (seller, buyer + 4 * ONE_SHARE, held - 9 * ONE_SHARE)
    (claimed,) = escrow.events_in(claim)
    assert isinstance(claimed, ClaimedEvent)
    assert (claimed.leg_index, claimed.beneficiary, claimed.amount) == (0, world.buyer.address, 4 * ONE_SHARE)
    leg0 = world.lock_view(sid, 0)
    assert (leg0.state, leg0.payee) == (LockState.SETTLED, world.buyer.address)
    # Every bit survived the owed round trip: a late item finds all three legs final.
    late = world.deliver([item(terms, Decision.ABORT)])
    assert _skips(escrow.events_in(late)) == [SkipReason.ALREADY_FINAL]
