"""KYCRegistry against a real anvil: allow / block flags, the block override, batch onboarding, events,
and the KYC-admin role guarding every write."""

from __future__ import annotations

from typing import Any

import pytest

from crossdvp.chain.client import EvmClient, Sender, TxReceipt
from crossdvp.chain.contracts import KYCRegistry
from crossdvp.chain.errors import ContractRevert

pytestmark = pytest.mark.integration

ACCOUNTS = tuple(f"0x{i:040x}" for i in range(0xA11CE0, 0xA11CE5))


@pytest.fixture
def registry(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> KYCRegistry:
    return KYCRegistry.deploy(evm, dev_senders[0], dev_senders[0].address)


def _events(registry: KYCRegistry, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
    event = registry.abi.event(name)
    return [
        event.decode(log.topics, log.data)
        for log in receipt.logs
        if log.address == registry.address and log.topics[0] == event.topic0
    ]


def test_deployer_is_admin_and_kyc_admin(registry: KYCRegistry, dev_senders: tuple[Sender, ...]) -> None:
    admin = dev_senders[0].address
    assert registry.has_role(bytes(32), admin)  # DEFAULT_ADMIN_ROLE
    assert registry.has_role(registry.kyc_admin_role(), admin)
    assert not registry.has_role(registry.kyc_admin_role(), dev_senders[1].address)


def test_allow_then_disallow(registry: KYCRegistry, dev_senders: tuple[Sender, ...]) -> None:
    admin, account = dev_senders[0], ACCOUNTS[0]
    assert not registry.is_allowed(account)
    receipt = registry.set_allowed(admin, account, True)
    assert _events(registry, receipt, "AllowedSet") == [{"account": account, "allowed": True}]
    assert registry.is_allowed(account) and registry.allowed(account) and not registry.blocked(account)
    receipt = registry.set_allowed(admin, account, False)
    assert _events(registry, receipt, "AllowedSet") == [{"account": account, "allowed": False}]
    assert not registry.is_allowed(account) and not registry.allowed(account)


def test_block_overrides_allow_and_unblock_restores_it(
    registry: KYCRegistry, dev_senders: tuple[Sender, ...]
) -> None:
    admin, account = dev_senders[0], ACCOUNTS[1]
    registry.set_allowed(admin, account)
    receipt = registry.set_blocked(admin, account, True)
    assert _events(registry, receipt, "BlockedSet") == [{"account": account, "blocked": True}]
    assert registry.allowed(account) and registry.blocked(account)
    assert not registry.is_allowed(account)
    registry.set_allowed(admin, account, True)  # re-allowing does not lift the block
    assert not registry.is_allowed(account)
    registry.set_blocked(admin, account, False)
    assert registry.is_allowed(account) and not registry.blocked(account)
    # Blocking an account that was never allowed keeps it refused, and leaves `allowed` false.
    registry.set_blocked(admin, ACCOUNTS[2], True)
    assert not registry.allowed(ACCOUNTS[2]) and not registry.is_allowed(ACCOUNTS[2])


def test_batch_allows_every_account_with_one_event_each(
    registry: KYCRegistry, dev_senders: tuple[Sender, ...]
) -> None:
    admin = dev_senders[0]
    receipt = registry.set_allowed_batch(admin, ACCOUNTS, True)
    assert [e["account"] for e in _events(registry, receipt, "AllowedSet")] == list(ACCOUNTS)
    assert all(registry.is_allowed(a) for a in ACCOUNTS)
    registry.set_allowed_batch(admin, ACCOUNTS[:2], False)
    assert [registry.is_allowed(a) for a in ACCOUNTS] == [False, False, True, True, True]


def test_every_write_needs_the_kyc_admin_role(registry: KYCRegistry, dev_senders: tuple[Sender, ...]) -> None:
    admin, outsider = dev_senders[0], dev_senders[1]
    role = registry.kyc_admin_role()
    for write in (
        lambda: registry.set_allowed(outsider, ACCOUNTS[0], True),
        lambda: registry.set_allowed_batch(outsider, ACCOUNTS, True),
        lambda: registry.set_blocked(outsider, ACCOUNTS[0], True),
    ):
        with pytest.raises(ContractRevert) as caught:
            write()
        assert caught.value.error_name == "AccessControlUnauthorizedAccount"
        assert caught.value.error_args == (outsider.address, role)
    assert not any(registry.allowed(a) or registry.blocked(a) for a in ACCOUNTS)
    registry.grant_role(admin, role, outsider.address)
    registry.set_allowed(outsider, ACCOUNTS[0], True)
    assert registry.is_allowed(ACCOUNTS[0])
