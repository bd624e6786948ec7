"""deploy_asset_network wires the four contracts; the bindings drive a lock and a report end to end."""

from __future__ import annotations

import pytest
from eth_account import Account

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import (
    AbortedEvent,
    LockedEvent,
    LockState,
    ReclaimedEvent,
    SettledEvent,
    SkipReason,
    TransmissionState,
)
from crossdvp.chain.deploy import AssetNetwork, BoundAssetNetwork, deploy_asset_network
from crossdvp.chain.errors import ContractRevert
from crossdvp.errors import ConfigError
from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)
from crossdvp.settlement.terms import Decision

pytestmark = pytest.mark.integration

SIGNER_KEYS = tuple(bytes([i + 1]) * 32 for i in range(4))
DON = DonConfig(
    don_id=7, config_version=1, f=1, signers=tuple(Account.from_key(k).address.lower() for k in SIGNER_KEYS)
)
WORKFLOW = WorkflowIdentity(
    workflow_cid=bytes([0xC1]) * 32,
    workflow_name="crossdvp-settlement",
    workflow_owner="0x00000000000000000000000000000000000000aa",
    report_id=b"\x00\x01",
)
GRACE_S = 3600
SHARES = 10**18


@pytest.fixture
def network(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> tuple[AssetNetwork, BoundAssetNetwork]:
    deployed = deploy_asset_network(evm, dev_senders[0], don=DON, workflow=WORKFLOW, grace_s=GRACE_S)
    return deployed, deployed.bind(evm)


def _deliver(
    bound: BoundAssetNetwork, sender: Sender, items: list[ReportItem], timestamp_s: int
) -> tuple[bytes, bool]:
    raw = build_report(items, timestamp_s=timestamp_s, don=DON, workflow=WORKFLOW)
    context = report_context(DON)
    signatures = [sign_report(raw, context, key) for key in SIGNER_KEYS[: DON.f + 1]]
    records = [(i.terms_hash, bound.escrow.open_records(i.settlement_id, 0)) for i in items]
    receipt = bound.escrow.deliver(sender, raw, context, signatures, records)
    (processed,) = bound.forwarder.report_processed_in(receipt)
    return raw, processed.result


def test_deploy_wires_forwarder_escrow_and_registry(
    evm: EvmClient, dev_senders: tuple[Sender, ...], network: tuple[AssetNetwork, BoundAssetNetwork]
) -> None:
    deployed, bound = network
    admin = dev_senders[0]
    assert deployed.chain_id == 31337
    assert deployed.network == "eip155:31337"
    assert len({deployed.registry, deployed.token, deployed.escrow, deployed.forwarder}) == 4

    (config,) = bound.forwarder.config_set_events(deployed.deployed_at_block, "latest")
    assert (config.don_id, config.config_version, config.f, config.signers) == (7, 1, 1, DON.signers)
    assert bound.forwarder.owner() == admin.address

    assert bound.escrow.forwarder() == deployed.forwarder
    assert bound.escrow.workflow_owner() == WORKFLOW.workflow_owner
    assert bound.escrow.workflow_name() == WORKFLOW.encoded_name
    assert bound.escrow.workflow_id() == WORKFLOW.workflow_cid
    assert bound.escrow.grace_s() == GRACE_S
    assert bound.registry.is_allowed(deployed.escrow)
    assert not bound.registry.is_allowed(dev_senders[1].address)

    assert bound.token.registry() == deployed.registry
    assert (bound.token.name(), bound.token.symbol(), bound.token.decimals()) == (
        "Tokenized Short-Term US Treasury Fund",
        "OUSG",
        18,
    )
    assert bound.token.has_role(bound.token.role("MINTER_ROLE"), admin.address)
    assert bound.registry.has_role(bound.registry.kyc_admin_role(), admin.address)


def test_asset_network_round_trips_and_rejects_bad_fields(
    network: tuple[AssetNetwork, BoundAssetNetwork],
) -> None:
    deployed, _ = network
    assert AssetNetwork.from_dict(deployed.to_dict()) == deployed
    broken = deployed.to_dict() | {"escrow": "0x12"}
    with pytest.raises(ConfigError, match="asset network escrow must be 0x"):
        AssetNetwork.from_dict(broken)
    missing = {k: v for k, v in deployed.to_dict().items() if k != "token"}
    with pytest.raises(ConfigError, match="lacks 'token'"):
        AssetNetwork.from_dict(missing)


def test_bind_refuses_another_chain(network: tuple[AssetNetwork, BoundAssetNetwork], evm: EvmClient) -> None:
    deployed, _ = network
    other = AssetNetwork.from_dict(deployed.to_dict() | {"chain_id": 1})
    with pytest.raises(ConfigError, match="deployed on chain 1"):
        other.bind(evm)


def test_deploy_rejects_a_negative_grace(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    with pytest.raises(ConfigError, match="grace_s"):
        deploy_asset_network(evm, dev_senders[0], don=DON, workflow=WORKFLOW, grace_s=-1)


def test_lock_with_zero_amount_is_decoded(
    evm: EvmClient, dev_senders: tuple[Sender, ...], network: tuple[AssetNetwork, BoundAssetNetwork]
) -> None:
    deployed, bound = network
    deadline = evm.latest_block().timestamp + 600
    with pytest.raises(ContractRevert) as caught:
        bound.escrow.lock(
            dev_senders[1], bytes(32), 0, deployed.token, 0, dev_senders[2].address, deadline, bytes(32)
        )
    assert caught.value.error_name == "ZeroAmount"
    assert str(caught.value) == "DvPEscrow.lock reverted: ZeroAmount()"


def test_lock_then_a_signed_settle_report_pays_every_payee(
    evm: EvmClient,
    anvil: Anvil,
    dev_senders: tuple[Sender, ...],
    network: tuple[AssetNetwork, BoundAssetNetwork],
) -> None:
    deployed, bound = network
    admin, relayer = dev_senders[0], dev_senders[9]
    sellers, buyers = dev_senders[1:4], dev_senders[4:7]
    bound.registry.set_allowed_batch(admin, [s.address for s in (*sellers, *buyers)])
    deadline = evm.latest_block().timestamp + 600
    items = []
    for i, (seller, buyer) in enumerate(zip(sellers, buyers, strict=True)):
        settlement_id, terms_hash = bytes([i + 1]) * 32, bytes([0xA0 + i]) * 32
        bound.token.mint(admin, seller.address, SHARES)
        bound.token.approve(seller, deployed.escrow, SHARES)
        receipt = bound.escrow.lock(
            seller, settlement_id, 0, deployed.token, SHARES, buyer.address, deadline, terms_hash
        )
        (locked,) = bound.escrow.events_in(receipt)
        assert isinstance(locked, LockedEvent)
        assert (locked.locker, locked.payee, locked.amount, locked.deadline) == (
            seller.address,
            buyer.address,
            SHARES,
            deadline,
        )
        assert bound.escrow.locked_events(receipt.block_number, receipt.block_number) == [locked]
        assert bound.escrow.get_lock(settlement_id, 0).state == LockState.LOCKED
        items.append(ReportItem(settlement_id=settlement_id, terms_hash=terms_hash, decision=Decision.SETTLE))
    # One item nobody locked: skipped with an event, the batch still applies.
    items.append(ReportItem(settlement_id=bytes([0xEE]) * 32, terms_hash=bytes(32), decision=Decision.SETTLE))

    raw, result = _deliver(bound, relayer, items, timestamp_s=deadline - 1)
    assert result is True
    for seller, buyer in zip(sellers, buyers, strict=True):
        assert bound.token.balance_of(buyer.address) == SHARES
        assert bound.token.balance_of(seller.address) == 0
    assert bound.escrow.get_lock(bytes([1]) * 32, 0).state == LockState.SETTLED
    settled = bound.escrow.settled_events(deployed.deployed_at_block, "latest")
    assert [e.payee for e in settled] == [b.address for b in buyers]
    assert all(isinstance(e, SettledEvent) for e in settled)
    (skipped,) = bound.escrow.item_skipped_events(deployed.deployed_at_block, "latest")
    assert skipped.reason == SkipReason.UNKNOWN_SETTLEMENT

    execution_id = raw[1:33]
    info = bound.forwarder.transmission_info(deployed.escrow, execution_id, WORKFLOW.report_id)
    assert info.state == TransmissionState.SUCCEEDED
    assert info.transmitter == deployed.escrow  # deliver calls the forwarder: the escrow transmits
    # The same report again: the forwarder refuses the replay.
    with pytest.raises(ContractRevert) as caught:
        _deliver(bound, relayer, items, timestamp_s=deadline - 1)
    assert caught.value.error_name == "AlreadyAttempted"


def test_deliver_gas_estimate_covers_every_payout_of_a_large_batch(
    evm: EvmClient, dev_senders: tuple[Sender, ...], network: tuple[AssetNetwork, BoundAssetNetwork]
) -> None:
    deployed, bound = network
    admin, seller, buyer, relayer = dev_senders[0], dev_senders[1], dev_senders[2], dev_senders[3]
    bound.registry.set_allowed_batch(admin, [seller.address, buyer.address])
    bound.token.mint(admin, seller.address, 20 * SHARES)
    bound.token.approve(seller, deployed.escrow, 20 * SHARES)
    deadline = evm.latest_block().timestamp + 600
    items = []
    for i in range(20):
        settlement_id, terms_hash = (i + 1).to_bytes(32, "big"), bytes([0x77]) * 32
        bound.escrow.lock(
            seller, settlement_id, 0, deployed.token, SHARES, buyer.address, deadline, terms_hash
        )
        items.append(ReportItem(settlement_id=settlement_id, terms_hash=terms_hash, decision=Decision.SETTLE))
    raw = build_report(items, timestamp_s=deadline - 1, don=DON, workflow=WORKFLOW)
    context = report_context(DON)
    signatures = [sign_report(raw, context, key) for key in SIGNER_KEYS[: DON.f + 1]]
    # deliver reverts unless every payout is affordable, so its own estimate lets every item apply.
    records = [(i.terms_hash, bound.escrow.open_records(i.settlement_id, 0)) for i in items]
    receipt = bound.escrow.deliver(relayer, raw, context, signatures, records)
    (processed,) = bound.forwarder.report_processed_in(receipt)
    assert processed.result is True
    assert bound.token.balance_of(buyer.address) == 20 * SHARES


def test_permit_lock_abort_and_reclaim_events_decode(
    evm: EvmClient,
    anvil: Anvil,
    dev_senders: tuple[Sender, ...],
    network: tuple[AssetNetwork, BoundAssetNetwork],
) -> None:
    deployed, bound = network
    admin, seller, buyer = dev_senders[0], dev_senders[1], dev_senders[2]
    bound.registry.set_allowed_batch(admin, [seller.address, buyer.address])
    bound.token.mint(admin, seller.address, 2 * SHARES)
    deadline = evm.latest_block().timestamp + 600
    aborted_id, reclaimed_id, terms_hash = bytes([0x0A]) * 32, bytes([0x0B]) * 32, bytes([0x33]) * 32
    # No approve: each lock carries an EIP-2612 permit signed with the seller's key.
    for sid in (aborted_id, reclaimed_id):
        permit = bound.token.sign_permit(anvil.dev_keys[1], deployed.escrow, SHARES, deadline)
        bound.escrow.lock_with_permit(
            seller, sid, 0, deployed.token, SHARES, buyer.address, deadline, terms_hash, permit
        )
    assert bound.token.balance_of(deployed.escrow) == 2 * SHARES
    assert bound.token.allowance(seller.address, deployed.escrow) == 0

    evm.set_next_block_timestamp(deadline + 1)
    evm.mine()
    abort = ReportItem(settlement_id=aborted_id, terms_hash=terms_hash, decision=Decision.ABORT)
    raw = build_report([abort], timestamp_s=deadline, don=DON, workflow=WORKFLOW)
    context = report_context(DON)
    signatures = [sign_report(raw, context, key) for key in SIGNER_KEYS[:2]]
    records = bound.escrow.open_records(aborted_id, 0)
    receipt = bound.escrow.deliver(buyer, raw, context, signatures, [(terms_hash, records)])
    (aborted,) = bound.escrow.events_in(receipt)
    assert isinstance(aborted, AbortedEvent)
    assert (aborted.settlement_id, aborted.locker, aborted.amount) == (aborted_id, seller.address, SHARES)

    open_records = bound.escrow.open_records(reclaimed_id, 0)
    with pytest.raises(ContractRevert) as caught:
        bound.escrow.reclaim(seller, reclaimed_id, open_records, 0)
    assert caught.value.error_name == "ReclaimTooEarly"
    assert caught.value.named_args == {"availableAt": deadline + GRACE_S + 1}
    evm.set_next_block_timestamp(deadline + GRACE_S + 1)
    (reclaimed,) = bound.escrow.events_in(bound.escrow.reclaim(seller, reclaimed_id, open_records, 0))
    assert isinstance(reclaimed, ReclaimedEvent)
    assert bound.escrow.get_lock(reclaimed_id, 0).state == LockState.RECLAIMED
    assert bound.token.balance_of(seller.address) == 2 * SHARES

    kinds = [type(e) for e in bound.escrow.all_events(deployed.deployed_at_block, "latest")]
    assert kinds == [LockedEvent, LockedEvent, AbortedEvent, ReclaimedEvent]
