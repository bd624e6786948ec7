"""Reports through the genuine KeystoneForwarder into DvPEscrow: what is accepted and what is not.

Rejected by the forwarder itself (the transaction reverts, nothing recorded): f signatures instead of
f+1, a signer outside the DON config, the same signer twice, a report naming a DON config the
forwarder does not have, a replay of a delivered report. Rejected by the escrow (the forwarder records
the delivery as failed): another workflow's owner, name or id. Rejected outright: onReport from
anyone but the forwarder. In every case nothing moves. Finally the settlement core's golden vector is
accepted by a forwarder configured with the vector's signers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import ItemSkippedEvent, LockState, SkipReason, TransmissionState
from crossdvp.chain.deploy import deploy_asset_network
from crossdvp.chain.errors import ContractRevert
from crossdvp.settlement import (
    Decision,
    DonConfig,
    Terms,
    WorkflowIdentity,
    build_report,
)
from crossdvp.settlement.report import FORWARDER_METADATA_LENGTH, REPORT_METADATA_LENGTH
from tests.chain.asset_world import (
    DON,
    DON_KEYS,
    OUTSIDER_KEY,
    REPORT_GAS,
    WORKFLOW,
    World,
    build_world,
    item,
    settlement_id,
)

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "settlement" / "vectors" / "report_v1.json"


@pytest.fixture
def world(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> World:
    return build_world(evm, dev_senders)


def _locked(world: World, label: str) -> Terms:
    """A two-leg DvP whose chain leg is locked."""
    terms = world.terms(settlement_id(label))
    world.lock_leg(terms)
    return terms


def _settle_report(terms: Terms, don: DonConfig = DON) -> bytes:
    return build_report([item(terms, Decision.SETTLE)], timestamp_s=1_700_000_000, don=don, workflow=WORKFLOW)


def _report(world: World, raw: bytes, keys: list[bytes], don: DonConfig = DON) -> None:
    """Deliver through the escrow (its deliver calls the forwarder, whose refusals revert it)."""
    world.deliver_raw(raw, keys=keys, don=don, gas=REPORT_GAS)


@pytest.mark.parametrize(
    ("keys", "error_name"),
    [
        pytest.param([DON_KEYS[0]], "InvalidSignatureCount", id="f-signatures"),
        pytest.param(DON_KEYS[:3], "InvalidSignatureCount", id="f-plus-two-signatures"),
        pytest.param([DON_KEYS[0], OUTSIDER_KEY], "InvalidSigner", id="signer-outside-config"),
        pytest.param([DON_KEYS[1], DON_KEYS[1]], "DuplicateSigner", id="same-signer-twice"),
    ],
)
def test_forwarder_rejects_bad_signature_sets_and_nothing_moves(
    world: World, keys: list[bytes], error_name: str
) -> None:
    terms = _locked(world, f"signatures {error_name} {len(keys)}")
    before = world.holdings()
    with pytest.raises(ContractRevert) as caught:
        _report(world, _settle_report(terms), keys)
    assert caught.value.error_name == error_name, str(caught.value)
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED


def test_a_report_for_another_don_config_is_rejected(world: World) -> None:
    """Same keys, but the metadata names config version 2, which the forwarder was never given."""
    terms = _locked(world, "other config")
    other = DonConfig(don_id=DON.don_id, config_version=2, f=DON.f, signers=DON.signers)
    before = world.holdings()
    with pytest.raises(ContractRevert) as caught:
        _report(world, _settle_report(terms, other), DON_KEYS[:2], don=other)
    assert caught.value.error_name == "InvalidConfig"
    assert caught.value.error_args == (other.config_id,)
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED


def test_a_delivered_report_replayed_is_rejected(world: World) -> None:
    terms = _locked(world, "replay")
    raw = _settle_report(terms)
    before = world.holdings()
    _report(world, raw, DON_KEYS[:2])
    after_first = world.holdings()
    assert after_first[1] == before[1] + terms.legs[0].amount_minor
    for keys in (DON_KEYS[:2], DON_KEYS[2:]):  # even re-signed by other signers: same transmission id
        with pytest.raises(ContractRevert) as caught:
            _report(world, raw, keys)
        assert caught.value.error_name == "AlreadyAttempted"
    assert world.holdings() == after_first


@pytest.mark.parametrize(
    ("field", "error_name"),
    [
        ("workflow_owner", "InvalidWorkflowOwner"),
        ("workflow_name", "InvalidWorkflowName"),
        ("workflow_cid", "InvalidWorkflowId"),
    ],
)
def test_a_report_from_another_workflow_is_recorded_as_failed_and_moves_nothing(
    world: World, field: str, error_name: str
) -> None:
    terms = world.terms(settlement_id(f"workflow {field}"))
    world.lock_leg(terms)
    fields = {
        "workflow_cid": WORKFLOW.workflow_cid,
        "workflow_name": WORKFLOW.workflow_name,
        "workflow_owner": WORKFLOW.workflow_owner,
        "report_id": WORKFLOW.report_id,
    }
    fields[field] = {
        "workflow_owner": "0x" + "66" * 20,
        "workflow_name": "another-workflow",
        "workflow_cid": keccak(b"another workflow"),
    }[field]
    other = WorkflowIdentity(**fields)  # type: ignore[arg-type]
    raw = build_report([item(terms, Decision.SETTLE)], timestamp_s=1, don=DON, workflow=other)
    before = world.holdings()
    # Through the escrow's deliver: refused, nothing consumed.
    with pytest.raises(ContractRevert) as refused:
        world.deliver_raw(raw)
    assert refused.value.error_name == "ReportNotAccepted"
    # Straight to the forwarder, as anyone may send it: the forwarder records the failure.
    receipt = world.forward_raw(raw)
    event = world.processed(receipt)
    assert event.result is False
    assert world.holdings() == before
    assert world.lock_view(terms.settlement_id).state == LockState.LOCKED
    info = world.net.forwarder.transmission_info(
        world.escrow, event.workflow_execution_id, WORKFLOW.report_id
    )
    assert info.state == TransmissionState.FAILED
    # Why it failed: replay the forwarder's call to onReport from the forwarder's address.
    call = world.net.escrow.call_data(
        "onReport", raw[FORWARDER_METADATA_LENGTH:REPORT_METADATA_LENGTH], raw[109:]
    )
    with pytest.raises(ContractRevert) as caught:
        world.evm.call(call, sender=world.net.forwarder.address)
    assert caught.value.error_name == error_name


def test_on_report_not_from_the_forwarder_is_rejected(world: World) -> None:
    raw = _settle_report(_locked(world, "direct"))
    metadata, payload = raw[FORWARDER_METADATA_LENGTH:REPORT_METADATA_LENGTH], raw[REPORT_METADATA_LENGTH:]
    before = world.holdings()
    with pytest.raises(ContractRevert) as caught:
        world.net.escrow.on_report(world.seller, metadata, payload, gas=500_000)
    assert caught.value.error_name == "UnauthorizedForwarder"
    assert caught.value.error_args == (world.seller.address,)
    assert world.holdings() == before
    # Even the forwarder's address needs well-formed metadata (64 bytes) to get past the checks.
    call = world.net.escrow.call_data("onReport", metadata[:-1], payload)
    with pytest.raises(ContractRevert) as caught:
        world.evm.call(call, sender=world.net.forwarder.address)
    assert caught.value.error_name == "MalformedMetadata"


def test_the_settlement_core_golden_vector_is_accepted_by_the_real_forwarder(
    evm: EvmClient, dev_senders: tuple[Sender, ...]
) -> None:
    vector = json.loads(VECTORS.read_text())
    inputs, expected = vector["inputs"], vector["expected"]
    don = DonConfig(
        don_id=inputs["don"]["don_id"],
        config_version=inputs["don"]["config_version"],
        f=inputs["don"]["f"],
        signers=tuple(inputs["don"]["signers"]),
    )
    workflow = WorkflowIdentity(
        workflow_cid=bytes.fromhex(inputs["workflow"]["workflow_cid"][2:]),
        workflow_name=inputs["workflow"]["workflow_name"],
        workflow_owner=inputs["workflow"]["workflow_owner"],
        report_id=bytes.fromhex(inputs["workflow"]["report_id"][2:]),
    )
    admin = dev_senders[0]
    net = deploy_asset_network(evm, admin, don=don, workflow=workflow, grace_s=60).bind(evm)
    raw = bytes.fromhex(expected["raw_report"][2:])
    context = bytes.fromhex(expected["report_context"][2:])
    signatures = [bytes.fromhex(s[2:]) for s in expected["signatures"]]
    receiver_id = net.forwarder.transmission_id(
        inputs["receiver"], bytes.fromhex(expected["workflow_execution_id"][2:]), workflow.report_id
    )
    assert "0x" + receiver_id.hex() == expected["transmission_id"]

    receipt = net.forwarder.report(admin, net.escrow.address, raw, context, signatures, gas=REPORT_GAS)
    (processed,) = net.forwarder.report_processed_in(receipt)
    assert processed.result is True
    assert "0x" + processed.workflow_execution_id.hex() == expected["workflow_execution_id"]
    # The escrow decoded the vector's payload: no locks here, so each item is an unknown settlement.
    skipped = [e for e in net.escrow.events_in(receipt) if isinstance(e, ItemSkippedEvent)]
    assert [("0x" + e.settlement_id.hex(), "0x" + e.terms_hash.hex(), e.decision) for e in skipped] == [
        (i["settlement_id"], i["terms_hash"], i["decision"]) for i in inputs["items"]
    ]
    assert {e.reason for e in skipped} == {SkipReason.UNKNOWN_SETTLEMENT}
    info = net.forwarder.transmission_info(
        net.escrow.address, processed.workflow_execution_id, workflow.report_id
    )
    assert info.state == TransmissionState.SUCCEEDED
