"""DvPEscrow against a real anvil, the lock side and report items: every field a lock records, the
token's and the deadline's refusals, permits (front-run, bad), several legs and lockers settled by one
item, items that do not apply (unknown settlement, other terms, an invalid decision code) and payloads
that are not the canonical encoding. test_escrow.py has the record list, pending decisions, owed
payouts, claims and reclaims."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from crossdvp.chain.client import Call, EvmClient, Sender
from crossdvp.chain.contracts import (
    AbortedEvent,
    ItemSkippedEvent,
    LockedEvent,
    LockState,
    SettledEvent,
    SkipReason,
    load_artifact,
)
from crossdvp.chain.errors import ContractRevert
from crossdvp.settlement import Decision, ReportItem, report_context, sign_report
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
    context = report_context(DON)
    raw = metadata + payload
    signatures = [sign_report(raw, context, key) for key in DON_KEYS[:2]]
    records = [(terms.terms_hash, world.open_records(terms.settlement_id))]
    receipt = world.net.escrow.deliver(world.admin, raw, context, signatures, records)
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
    with pytest.raises(ContractRevert) as refused:  # through the escrow: refused, nothing consumed
        world.deliver_raw(_metadata(payload) + payload)
    # onReport refused it inside the forwarder, or deliver's own read of the items did (no data).
    assert refused.value.error_name in ("ReportNotAccepted", ""), str(refused.value)
    receipt = world.forward_raw(_metadata(payload) + payload)  # straight to the forwarder: FAILED
    assert world.processed(receipt).result is False
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED


# -- owed payouts and claim -----------------------------------------------------------------------


# -- reclaim --------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "legs",
    [
        pytest.param((0, 200), id="leg0-then-200"),
        pytest.param((200, 0), id="leg200-then-0"),
        pytest.param((255, 95, 94), id="high-legs-without-leg0"),
    ],
)
def test_legs_in_any_order_and_up_to_255_settle_in_one_item(world: World, legs: tuple[int, ...]) -> None:
    terms = world.terms(settlement_id(f"overflow {legs}"))
    escrow, sid, th, deadline = world.net.escrow, terms.settlement_id, terms.terms_hash, terms.deadline_s
    payees = dict(zip(legs, _kyc_payees(world, f"overflow {legs}", len(legs)), strict=True))
    amounts = {leg: (i + 1) * ONE_SHARE for i, leg in enumerate(legs)}
    for leg in legs:
        escrow.lock(world.seller, sid, leg, world.token, amounts[leg], payees[leg], deadline, th)
    before = {leg: world.net.token.balance_of(payees[leg]) for leg in legs}
    receipt = world.deliver([item(terms, Decision.SETTLE)])
    events = escrow.events_in(receipt)
    assert _settled(events) == [(leg, payees[leg], amounts[leg]) for leg in legs]  # in lock order
    assert _skips(events) == []
    for leg in legs:
        assert world.net.token.balance_of(payees[leg]) == before[leg] + amounts[leg]
        view = world.lock_view(sid, leg)
        assert (view.state, view.payee) == (LockState.SETTLED, payees[leg])
    if 0 not in legs:
        leg0 = world.lock_view(sid, 0)
        assert (leg0.state, leg0.payee) == (LockState.NONE, ZERO)
    # The settlement is closed: a later item finds everything final, not an unknown settlement.
    # (ABORT: the same SETTLE payload again would be the same forwarder transmission.)
    again = world.deliver([item(terms, Decision.ABORT)])
    assert _skips(escrow.events_in(again)) == [SkipReason.ALREADY_FINAL]


def test_abort_with_a_leg_under_other_terms_refunds_the_rest(world: World) -> None:
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
