"""FundToken against a real anvil: every party of every transfer, mint and burn must be allowed by
the KYC registry (transferFrom: also the caller); pause; roles; canTransfer; EIP-2612 permit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import FundToken, KYCRegistry
from crossdvp.chain.errors import ContractRevert

pytestmark = pytest.mark.integration

SHARE = 10**18
ZERO = "0x" + "00" * 20


@dataclass
class Fund:
    evm: EvmClient
    admin: Sender
    alice: Sender  # KYC'd holder
    bob: Sender  # KYC'd
    carol: Sender  # not KYC'd
    registry: KYCRegistry
    token: FundToken


@pytest.fixture
def fund(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> Fund:
    admin, alice, bob, carol = dev_senders[:4]
    registry = KYCRegistry.deploy(evm, admin, admin.address)
    token = FundToken.deploy(evm, admin, "Fund Share", "FS", registry.address, admin.address)
    registry.set_allowed_batch(admin, [alice.address, bob.address])
    token.mint(admin, alice.address, 10 * SHARE)
    return Fund(evm, admin, alice, bob, carol, registry, token)


def _reverts(error_name: str, action: Callable[[], object]) -> ContractRevert:
    with pytest.raises(ContractRevert) as caught:
        action()
    assert caught.value.error_name == error_name, str(caught.value)
    return caught.value


def test_metadata_and_roles(fund: Fund) -> None:
    token = fund.token
    assert (token.name(), token.symbol(), token.decimals()) == ("Fund Share", "FS", 18)
    assert token.registry() == fund.registry.address
    for role in ("DEFAULT_ADMIN_ROLE", "MINTER_ROLE", "PAUSER_ROLE", "AGENT_ROLE"):
        assert token.has_role(token.role(role), fund.admin.address), role
        assert not token.has_role(token.role(role), fund.alice.address), role


def test_mint_needs_minter_and_a_kyc_recipient(fund: Fund) -> None:
    token = fund.token
    error = _reverts(
        "AccessControlUnauthorizedAccount", lambda: token.mint(fund.alice, fund.alice.address, 1)
    )
    assert error.error_args == (fund.alice.address, token.role("MINTER_ROLE"))
    error = _reverts("NotAllowed", lambda: token.mint(fund.admin, fund.carol.address, 1))
    assert error.error_args == (fund.carol.address,)
    token.mint(fund.admin, fund.bob.address, 3)
    assert token.balance_of(fund.bob.address) == 3
    assert token.total_supply() == 10 * SHARE + 3


def test_burn_needs_minter_and_a_kyc_holder(fund: Fund) -> None:
    token = fund.token
    _reverts("AccessControlUnauthorizedAccount", lambda: token.burn(fund.alice, fund.alice.address, 1))
    token.burn(fund.admin, fund.alice.address, SHARE)
    assert token.balance_of(fund.alice.address) == 9 * SHARE
    fund.registry.set_allowed(fund.admin, fund.alice.address, False)
    error = _reverts("NotAllowed", lambda: token.burn(fund.admin, fund.alice.address, SHARE))
    assert error.error_args == (fund.alice.address,)
    assert token.total_supply() == 9 * SHARE


def test_transfer_needs_both_parties_allowed(fund: Fund) -> None:
    token = fund.token
    token.transfer(fund.alice, fund.bob.address, SHARE)
    assert token.balance_of(fund.bob.address) == SHARE
    error = _reverts("NotAllowed", lambda: token.transfer(fund.alice, fund.carol.address, SHARE))
    assert error.error_args == (fund.carol.address,)
    fund.registry.set_blocked(fund.admin, fund.bob.address)  # sanctioned sender
    error = _reverts("NotAllowed", lambda: token.transfer(fund.bob, fund.alice.address, SHARE))
    assert error.error_args == (fund.bob.address,)
    assert token.balance_of(fund.bob.address) == SHARE


def test_transfer_from_also_needs_the_caller_allowed(fund: Fund) -> None:
    token = fund.token
    token.approve(fund.alice, fund.carol.address, SHARE)
    error = _reverts(
        "NotAllowed", lambda: token.transfer_from(fund.carol, fund.alice.address, fund.bob.address, SHARE)
    )
    assert error.error_args == (fund.carol.address,)
    fund.registry.set_allowed(fund.admin, fund.carol.address)
    token.transfer_from(fund.carol, fund.alice.address, fund.bob.address, SHARE)
    assert token.balance_of(fund.bob.address) == SHARE
    assert token.allowance(fund.alice.address, fund.carol.address) == 0
    _reverts(
        "ERC20InsufficientAllowance",
        lambda: token.transfer_from(fund.carol, fund.alice.address, fund.bob.address, 1),
    )


def test_pause_stops_transfers_mints_and_burns(fund: Fund) -> None:
    token = fund.token
    _reverts("AccessControlUnauthorizedAccount", lambda: token.pause(fund.alice))
    _reverts("ExpectedPause", lambda: token.unpause(fund.admin))
    token.pause(fund.admin)
    assert token.paused()
    _reverts("EnforcedPause", lambda: token.transfer(fund.alice, fund.bob.address, 1))
    _reverts("EnforcedPause", lambda: token.mint(fund.admin, fund.bob.address, 1))
    _reverts("EnforcedPause", lambda: token.burn(fund.admin, fund.alice.address, 1))
    _reverts("EnforcedPause", lambda: token.pause(fund.admin))
    _reverts("AccessControlUnauthorizedAccount", lambda: token.unpause(fund.alice))
    token.unpause(fund.admin)
    token.transfer(fund.alice, fund.bob.address, 1)
    assert token.balance_of(fund.bob.address) == 1


def test_can_transfer_answers_the_compliance_question(fund: Fund) -> None:
    token, alice, bob, carol = fund.token, fund.alice.address, fund.bob.address, fund.carol.address
    assert token.can_transfer(alice, bob, SHARE)
    assert token.can_transfer(alice, bob, 10**30)  # balance is not part of the compliance check
    assert not token.can_transfer(alice, carol, 1)
    assert not token.can_transfer(carol, alice, 1)
    assert not token.can_transfer(alice, ZERO, 1)
    assert not token.can_transfer(ZERO, alice, 1)
    fund.registry.set_blocked(fund.admin, bob)
    assert not token.can_transfer(alice, bob, 1)
    fund.registry.set_blocked(fund.admin, bob, False)
    token.pause(fund.admin)
    assert not token.can_transfer(alice, bob, 1)


def test_only_the_agent_replaces_the_registry(fund: Fund) -> None:
    token = fund.token
    other = KYCRegistry.deploy(fund.evm, fund.admin, fund.admin.address)
    error = _reverts(
        "AccessControlUnauthorizedAccount", lambda: token.set_registry(fund.alice, other.address)
    )
    assert error.error_args == (fund.alice.address, token.role("AGENT_ROLE"))
    token.set_registry(fund.admin, other.address)
    assert token.registry() == other.address
    # Alice is not on the new registry: her shares are frozen until the agent onboards her there.
    _reverts("NotAllowed", lambda: token.transfer(fund.alice, fund.bob.address, 1))
    other.set_allowed_batch(fund.admin, [fund.alice.address, fund.bob.address])
    token.transfer(fund.alice, fund.bob.address, 1)


def test_permit_sets_an_allowance_from_a_signature(fund: Fund) -> None:
    token, alice, bob = fund.token, fund.alice, fund.bob
    deadline = fund.evm.latest_block().timestamp + 600
    permit = token.sign_permit(alice.private_key, bob.address, 5 * SHARE, deadline)
    token.permit(fund.carol, alice.address, bob.address, 5 * SHARE, permit)  # anyone may submit it
    assert token.allowance(alice.address, bob.address) == 5 * SHARE
    assert token.nonces(alice.address) == 1
    _reverts(
        "ERC2612InvalidSigner",
        lambda: token.permit(fund.carol, alice.address, bob.address, 5 * SHARE, permit),
    )
    forged = token.sign_permit(bob.private_key, bob.address, SHARE, deadline)
    _reverts("ERC2612InvalidSigner", lambda: token.permit(bob, alice.address, bob.address, SHARE, forged))
    expired = token.sign_permit(alice.private_key, bob.address, SHARE, deadline - 1000)
    _reverts("ERC2612ExpiredSignature", lambda: token.permit(bob, alice.address, bob.address, SHARE, expired))
