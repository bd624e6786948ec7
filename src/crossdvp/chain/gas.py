"""Gas of the escrow's hot paths, measured on a real anvil: the figures issue 7 competes on.

`measure_gas` deploys a fresh asset network on the chain it is given and measures `gasUsed` (after
refunds, as the chain charges it) of:

- `lock`: a lock of a new settlement by a seller who approved the escrow beforehand (the approve is
  not counted), with the escrow already holding shares (steady state);
- `lock_with_permit`: the same lock through `lockWithPermit` (EIP-2612 permit + lock, no approve),
  by a seller who has used a permit before (its nonce slot is already non-zero: steady state);
- `settle_item_batch_N`: the forwarder `report` transaction settling N settlements (one locked chain
  leg each, each paid to a distinct buyer who held no shares before), divided by N;
- `abort_item_batch_N`: the same with ABORT (refunds to the seller), divided by N.

Every report is checked to have been applied in full (one Settled/Aborted event per item) before its
gas is taken: a figure from a failed or partial delivery would be meaningless.
Reports go through `escrow.deliver` with each settlement's lock record (taken from its Locked event),
as the oracle nodes deliver them; `lock_with_permit` uses the escrow's packed entry point (the permit
signed for the lock's own deadline), as the desk does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_account import Account
from eth_utils.crypto import keccak

from crossdvp.chain.anvil import running_anvil
from crossdvp.chain.client import EvmClient, Sender, TxReceipt
from crossdvp.chain.contracts import AbortedEvent, LockedEvent, SettledEvent
from crossdvp.chain.deploy import BoundAssetNetwork, deploy_asset_network
from crossdvp.chain.errors import ChainError
from crossdvp.errors import ConfigError
from crossdvp.settlement import (
    Decision,
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)

__all__ = [
    "BENCH_DON",
    "BENCH_DON_KEYS",
    "BENCH_WORKFLOW",
    "GasFigures",
    "measure_gas",
    "measure_gas_on_anvil",
]

#: Throwaway DON keys for the measurement (derived from fixed strings; they sign nothing of value).
BENCH_DON_KEYS: tuple[bytes, ...] = tuple(keccak(text=f"crossdvp gas bench: DON key {i}") for i in range(4))
BENCH_DON = DonConfig(
    don_id=1,
    config_version=1,
    f=1,
    signers=tuple(str(Account.from_key(k).address).lower() for k in BENCH_DON_KEYS),
)
BENCH_WORKFLOW = WorkflowIdentity(
    workflow_cid=keccak(text="crossdvp gas bench: workflow"),
    workflow_name="crossdvp-settlement",
    workflow_owner="0x000000000000000000000000000000000000b0b0",
    report_id=b"\x00\x01",
)

_SHARE = 10**18
_LOCK_GAS = 400_000
_REPORT_BASE_GAS = 400_000
_REPORT_ITEM_GAS = 80_000  # generous per item; gasUsed, not the limit, is what is reported
_DEADLINE_AHEAD_S = 3_600


@dataclass(frozen=True, slots=True)
class GasFigures:
    """gasUsed per operation; the batch figures are per item (report transaction gas / batch size)."""

    lock: int
    lock_with_permit: int
    settle_item_batch_1: int
    settle_item_batch_100: int
    abort_item_batch_1: int
    abort_item_batch_100: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Bench:
    """One deployed asset network with a seller (approved the escrow) and a permit-only seller."""

    def __init__(self, client: EvmClient, admin: Sender, seller: Sender, permit_seller: Sender) -> None:
        self.client = client
        self.admin = admin
        self.seller = seller
        self.permit_seller = permit_seller
        addresses = deploy_asset_network(
            client, admin, don=BENCH_DON, workflow=BENCH_WORKFLOW, grace_s=_DEADLINE_AHEAD_S
        )
        self.net: BoundAssetNetwork = addresses.bind(client)
        self.escrow = self.net.escrow
        self.net.registry.set_allowed_batch(admin, [seller.address, permit_seller.address])
        self.net.token.mint(admin, seller.address, 10**9 * _SHARE)
        self.net.token.mint(admin, permit_seller.address, 10**9 * _SHARE)
        self.net.token.approve(seller, self.escrow.address, 2**256 - 1)
        self._locks: dict[bytes, LockedEvent] = {}
        self._next_id = 0
        self._next_payee = 0

    def _settlement_id(self) -> bytes:
        self._next_id += 1
        return keccak(text=f"crossdvp gas bench: settlement {self._next_id}")

    def fresh_payees(self, count: int) -> list[str]:
        """`count` new KYC'd buyers holding nothing (one registry transaction)."""
        payees = [f"0x{0xB0FE_0000_0000 + self._next_payee + i:040x}" for i in range(count)]
        self._next_payee += count
        self.net.registry.set_allowed_batch(self.admin, payees)
        return payees

    def lock_many(self, payees: Sequence[str]) -> tuple[list[ReportItem], list[TxReceipt]]:
        """One lock per payee, sent back to back and then awaited; returns (items, receipts)."""
        escrow, token = self.escrow, self.net.token.address
        deadline = self.client.latest_block().timestamp + _DEADLINE_AHEAD_S
        items: list[ReportItem] = []
        hashes: list[bytes] = []
        for payee in payees:
            sid, terms_hash = self._settlement_id(), keccak(text=f"terms for {payee}")
            call = escrow.call_data("lock", sid, 0, token, _SHARE, payee, deadline, terms_hash)
            hashes.append(self.client.send(self.seller, call, gas=_LOCK_GAS))
            items.append(ReportItem(settlement_id=sid, terms_hash=terms_hash, decision=Decision.SETTLE))
        receipts = [self.client.wait(h) for h in hashes]
        failed = [r for r in receipts if r.status != 1]
        if failed:
            raise ChainError(f"{len(failed)} of {len(receipts)} bench locks reverted (first: {failed[0]})")
        for receipt in receipts:
            for event in escrow.events_in(receipt):
                if isinstance(event, LockedEvent):
                    self._locks[event.settlement_id] = event
        return items, receipts

    def lock_with_permit(self) -> TxReceipt:
        escrow, token = self.escrow, self.net.token
        deadline = self.client.latest_block().timestamp + _DEADLINE_AHEAD_S
        (payee,) = self.fresh_payees(1)
        permit = token.sign_permit(self.permit_seller.private_key, escrow.address, _SHARE, deadline)
        return escrow.lock_with_permit(
            self.permit_seller,
            self._settlement_id(),
            0,
            token.address,
            _SHARE,
            payee,
            deadline,
            keccak(text="terms for the permit lock"),
            permit,
            gas=_LOCK_GAS,
        )

    def execute(self, items: Sequence[ReportItem], decision: Decision) -> int:
        """Deliver one report deciding every item `decision`; returns the report transaction's gas."""
        batch = [ReportItem(i.settlement_id, i.terms_hash, decision) for i in items]
        raw = build_report(batch, timestamp_s=1, don=BENCH_DON, workflow=BENCH_WORKFLOW)
        context = report_context(BENCH_DON)
        signatures = [sign_report(raw, context, key) for key in BENCH_DON_KEYS[: BENCH_DON.f + 1]]
        gas = _REPORT_BASE_GAS + _REPORT_ITEM_GAS * len(batch)
        records = [(i.terms_hash, [self._locks[i.settlement_id].lock_record]) for i in batch]
        receipt = self.escrow.deliver(self.admin, raw, context, signatures, records, gas=gas)
        wanted = SettledEvent if decision == Decision.SETTLE else AbortedEvent
        applied = sum(isinstance(e, wanted) for e in self.escrow.events_in(receipt))
        if applied != len(batch):
            raise ChainError(
                f"bench report applied {applied} of {len(batch)} {decision.name} items "
                f"(gas used {receipt.gas_used}); the figure would be meaningless"
            )
        return receipt.gas_used


def measure_gas(client: EvmClient, dev_keys: Sequence[bytes], *, large_batch: int = 100) -> GasFigures:
    """Deploy on `client` and measure (see the module docstring). `dev_keys[0:3]` must hold ether.

    `large_batch` is the size of the large batch (100 for the published figures; tests may use less,
    the field keeps its name). Raises ConfigError if `large_batch` < 2, ChainError if a bench transaction
    fails or a report is not applied in full, ContractRevert/RpcError from the chain.
    """
    if large_batch < 2:
        raise ConfigError(f"large_batch must be at least 2 to compare with batch 1, got {large_batch}")
    admin, seller, permit_seller = (client.account(k) for k in dev_keys[:3])
    bench = _Bench(client, admin, seller, permit_seller)
    # Warm-up: the escrow's first lock pays for its zero balance slot; steady state is what counts.
    bench.lock_many(bench.fresh_payees(1))

    settle_1, receipts = bench.lock_many(bench.fresh_payees(1))
    lock_gas = receipts[0].gas_used
    settle_item_1 = bench.execute(settle_1, Decision.SETTLE)
    settle_n, _ = bench.lock_many(bench.fresh_payees(large_batch))
    settle_item_n = bench.execute(settle_n, Decision.SETTLE) // large_batch

    abort_1, _ = bench.lock_many(bench.fresh_payees(1))
    abort_item_1 = bench.execute(abort_1, Decision.ABORT)
    abort_n, _ = bench.lock_many(bench.fresh_payees(large_batch))
    abort_item_n = bench.execute(abort_n, Decision.ABORT) // large_batch

    bench.lock_with_permit()  # warm-up: the seller's first permit creates its nonce slot
    return GasFigures(
        lock=lock_gas,
        lock_with_permit=bench.lock_with_permit().gas_used,
        settle_item_batch_1=settle_item_1,
        settle_item_batch_100=settle_item_n,
        abort_item_batch_1=abort_item_1,
        abort_item_batch_100=abort_item_n,
    )


def measure_gas_on_anvil(log_dir: Path, *, large_batch: int = 100) -> GasFigures:
    """Start a fresh anvil (logs in `log_dir`), measure, and stop it by PID however this ends."""
    with running_anvil(log_dir) as node:
        client = EvmClient(node.rpc_url)
        return measure_gas(client, node.dev_keys, large_batch=large_batch)
