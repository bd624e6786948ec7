"""A deployed asset network with funded, KYC'd parties and a DON, for the contract tests.

`World` wraps the adapter's bindings with the few steps every contract test repeats: lock a leg,
build and sign a report with f+1 of the DON's keys, deliver it through the genuine KeystoneForwarder,
and read balances. The DON keys are throwaway test keys derived from fixed strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from eth_utils.crypto import keccak

from crossdvp.chain.client import EvmClient, Sender, TxReceipt
from crossdvp.chain.contracts import LockRecord, LockView, ReportProcessedEvent
from crossdvp.chain.deploy import AssetNetwork, BoundAssetNetwork, deploy_asset_network
from crossdvp.settlement import (
    Decision,
    DonConfig,
    Leg,
    ReportItem,
    Terms,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import REPORT_METADATA_LENGTH, decode_payload

DON_KEYS: tuple[bytes, ...] = tuple(keccak(text=f"crossdvp contract tests: DON key {i}") for i in range(4))
OUTSIDER_KEY = keccak(text="crossdvp contract tests: not a DON key")
DON = DonConfig(
    don_id=7,
    config_version=1,
    f=1,
    signers=tuple(str(Account.from_key(k).address).lower() for k in DON_KEYS),
)
WORKFLOW = WorkflowIdentity(
    workflow_cid=keccak(text="crossdvp contract tests: workflow"),
    workflow_name="crossdvp-settlement",
    workflow_owner="0x00000000000000000000000000000000000c0de5",
    report_id=b"\x00\x01",
)
GRACE_S = 3_600
ONE_SHARE = 10**18
REPORT_GAS = 3_000_000
LEDGER_NETWORK = "payments:crossdvp-payments"


@dataclass
class World:
    evm: EvmClient
    admin: Sender  # deployer: owns the forwarder, holds every token and registry role
    seller: Sender  # KYC'd, holds shares, approved the escrow
    buyer: Sender  # KYC'd, holds nothing
    stranger: Sender  # funded with ether, not KYC'd
    addresses: AssetNetwork
    net: BoundAssetNetwork

    @property
    def token(self) -> str:
        return self.net.token.address

    @property
    def escrow(self) -> str:
        return self.net.escrow.address

    def deadline(self, seconds_ahead: int = 600) -> int:
        return self.evm.latest_block().timestamp + seconds_ahead

    def terms(self, settlement_id: bytes, *, amount: int = ONE_SHARE, deadline_s: int | None = None) -> Terms:
        """A two-leg DvP: shares seller -> buyer here, cash buyer -> seller on the payment ledger."""
        return Terms(
            settlement_id=settlement_id,
            deadline_s=self.deadline() if deadline_s is None else deadline_s,
            legs=(
                Leg(
                    network=f"eip155:{self.evm.chain_id}",
                    asset=self.token,
                    amount_minor=amount,
                    payer=self.seller.address,
                    payee=self.buyer.address,
                ),
                Leg(network=LEDGER_NETWORK, asset="USD", amount_minor=100_00, payer="buyer", payee="seller"),
            ),
        )

    def lock_leg(self, terms: Terms, leg_index: int = 0, *, locker: Sender | None = None) -> TxReceipt:
        leg = terms.legs[leg_index]
        return self.net.escrow.lock(
            locker or self.seller,
            terms.settlement_id,
            leg_index,
            leg.asset,
            leg.amount_minor,
            leg.payee,
            terms.deadline_s,
            terms.terms_hash,
        )

    def balances(self, *accounts: str) -> tuple[int, ...]:
        return tuple(self.net.token.balance_of(a) for a in accounts)

    def holdings(self) -> tuple[int, ...]:
        """Shares of seller, buyer and escrow: what 'nothing moved' compares."""
        return self.balances(self.seller.address, self.buyer.address, self.escrow)

    def lock_view(self, settlement_id: bytes, leg_index: int = 0) -> LockView:
        return self.net.escrow.get_lock(settlement_id, leg_index)

    def deliver(
        self,
        items: Sequence[ReportItem],
        *,
        keys: Sequence[bytes] = DON_KEYS[:2],
        don: DonConfig = DON,
        workflow: WorkflowIdentity = WORKFLOW,
        timestamp_s: int = 1_700_000_000,
        gas: int = REPORT_GAS,
    ) -> TxReceipt:
        """Build, sign (with `keys`, in order) and deliver a report through the forwarder."""
        raw = build_report(items, timestamp_s=timestamp_s, don=don, workflow=workflow)
        return self.deliver_raw(raw, keys=keys, don=don, gas=gas)

    def deliver_raw(
        self, raw: bytes, *, keys: Sequence[bytes] = DON_KEYS[:2], don: DonConfig = DON, gas: int = REPORT_GAS
    ) -> TxReceipt:
        """Deliver through `escrow.deliver`, with each item's open records read back from the chain."""
        context = report_context(don)
        signatures = [sign_report(raw, context, key) for key in keys]
        records = [(i.terms_hash, self.open_records(i.settlement_id)) for i in _items(raw)]
        return self.net.escrow.deliver(self.admin, raw, context, signatures, records, gas=gas)

    def forward_raw(
        self, raw: bytes, *, keys: Sequence[bytes] = DON_KEYS[:2], don: DonConfig = DON, gas: int = REPORT_GAS
    ) -> TxReceipt:
        """Send the report straight to the forwarder, as anyone holding it may (the escrow then
        records its decisions pending)."""
        context = report_context(don)
        signatures = [sign_report(raw, context, key) for key in keys]
        return self.net.forwarder.report(self.admin, self.escrow, raw, context, signatures, gas=gas)

    def open_records(self, settlement_id: bytes) -> list[LockRecord]:
        return self.net.escrow.open_records(settlement_id, self.addresses.deployed_at_block)

    def processed(self, receipt: TxReceipt) -> ReportProcessedEvent:
        (event,) = self.net.forwarder.report_processed_in(receipt)
        return event


def _items(raw: bytes) -> tuple[ReportItem, ...]:
    """The items of a report, or none if its payload does not decode (a test's malformed report)."""
    try:
        return decode_payload(raw[REPORT_METADATA_LENGTH:])
    except SettlementError:
        return ()


def item(terms: Terms, decision: Decision) -> ReportItem:
    return ReportItem(settlement_id=terms.settlement_id, terms_hash=terms.terms_hash, decision=decision)


def settlement_id(label: str) -> bytes:
    return keccak(text=f"crossdvp contract tests: settlement {label}")


def build_world(
    evm: EvmClient, dev_senders: Sequence[Sender], *, seller_shares: int = 100 * ONE_SHARE
) -> World:
    """Deploy a fresh asset network (forwarder configured with DON) and set up seller and buyer."""
    admin, seller, buyer, stranger = dev_senders[0], dev_senders[1], dev_senders[2], dev_senders[3]
    addresses = deploy_asset_network(evm, admin, don=DON, workflow=WORKFLOW, grace_s=GRACE_S)
    net = addresses.bind(evm)
    net.registry.set_allowed_batch(admin, [seller.address, buyer.address])
    net.token.mint(admin, seller.address, seller_shares)
    net.token.approve(seller, net.escrow.address, 2**256 - 1)
    return World(
        evm=evm, admin=admin, seller=seller, buyer=buyer, stranger=stranger, addresses=addresses, net=net
    )
