"""Chain-side throughput against the report batch size: how fast the escrow locks and settles when
one report carries B decisions, on an anvil whose blocks we mine (`evm_mine`, automine off).

For each batch size B, N settlements (N a multiple of B) are locked with pre-signed `lock`
transactions sent as JSON-RPC batches, then settled by N/B pre-signed forwarder `report`
transactions, each signed by f+1 keys of the bench DON. Both phases are timed from the first send
to the last receipt. Every report must have settled all of its items (one Settled event each),
otherwise the run fails rather than print a figure for a partial delivery.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils.crypto import keccak

from crossdvp.bench.rpc import RawRpc, SignedTx, TxSigner
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.contracts import ItemRecords, LockRecord, LockState, pack_delivery
from crossdvp.chain.deploy import BoundAssetNetwork, deploy_asset_network
from crossdvp.chain.errors import ChainError
from crossdvp.chain.gas import BENCH_DON, BENCH_DON_KEYS, BENCH_WORKFLOW
from crossdvp.errors import ConfigError
from crossdvp.settlement import Decision, ReportItem, build_report, report_context, sign_report

__all__ = ["SweepPoint", "measure_settle_sweep"]

_SHARE = 10**15
_LOCK_GAS = 250_000
_REPORT_BASE_GAS = 400_000  # as crossdvp.chain.gas: the receiver needs headroom (63/64 rule)
_REPORT_ITEM_GAS = 80_000
_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class SweepPoint:
    batch_size: int
    settlements: int
    lock_s: float
    settle_s: float
    settle_gas_per_item: int
    reports: int

    @property
    def locks_per_s(self) -> float:
        return self.settlements / self.lock_s

    @property
    def settled_per_s(self) -> float:
        return self.settlements / self.settle_s

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "lock_s": round(self.lock_s, 3),
            "settle_s": round(self.settle_s, 3),
            "locks_per_s": round(self.locks_per_s, 1),
            "settled_per_s": round(self.settled_per_s, 1),
        }


def _mine_until(rpc: RawRpc, tx_hash: str, label: str) -> None:
    """evm_mine until `tx_hash` (the last of a sender's consecutive nonces) has a receipt."""
    give_up = time.monotonic() + _TIMEOUT_S
    while True:
        rpc.call("evm_mine")
        (receipt,) = rpc.receipts([tx_hash])
        if receipt is not None and receipt.get("blockNumber") is not None:
            return
        if time.monotonic() > give_up:
            raise ChainError(f"settle sweep: {label} not mined after {_TIMEOUT_S:g}s")


def _send_and_mine(rpc: RawRpc, txs: Sequence[SignedTx], label: str) -> tuple[float, list[dict[str, Any]]]:
    began = time.perf_counter()
    hashes = rpc.send_raw(txs)
    _mine_until(rpc, hashes[-1], label)
    elapsed = time.perf_counter() - began
    receipts = rpc.receipts(hashes)
    bad = [i for i, r in enumerate(receipts) if r is None or int(r["status"], 16) != 1]
    if bad:
        raise ChainError(f"settle sweep: {len(bad)} of {len(txs)} {label} transactions failed")
    return elapsed, [r for r in receipts if r is not None]


def measure_settle_sweep(
    client: EvmClient, dev_keys: Sequence[bytes], *, batch_sizes: Sequence[int], settlements: int
) -> list[SweepPoint]:
    """Deploy a fresh asset network on `client` (an anvil) and measure each batch size in turn.

    `dev_keys[0]` deploys and transmits reports, `dev_keys[1]` sells. Rejects (ConfigError) a batch
    size outside 1..1000 or `settlements` < 1. Leaves automine on when it returns or fails.
    """
    if settlements < 1 or any(not 1 <= b <= 1000 for b in batch_sizes):
        raise ConfigError(
            f"batch sizes must be in 1..1000 and settlements >= 1, got {batch_sizes}/{settlements}"
        )
    admin, seller = client.account(dev_keys[0]), client.account(dev_keys[1])
    net = deploy_asset_network(client, admin, don=BENCH_DON, workflow=BENCH_WORKFLOW, grace_s=3600).bind(
        client
    )
    net.registry.set_allowed(admin, seller.address)
    net.token.mint(admin, seller.address, 10**9 * 10**18)
    net.token.approve(seller, net.escrow.address, 2**256 - 1)
    points: list[SweepPoint] = []
    try:
        for round_index, batch in enumerate(batch_sizes):
            count = -(-max(batch, settlements) // batch) * batch
            points.append(_one(client, net, admin, seller, batch, count, round_index))
    finally:
        client.request("evm_setAutomine", [True])
    return points


def _one(
    client: EvmClient,
    net: BoundAssetNetwork,
    admin: Sender,
    seller: Sender,
    batch: int,
    count: int,
    round_index: int,
) -> SweepPoint:
    payees = [f"0x{0xBE_0000_0000 + round_index * 10**6 + i:040x}" for i in range(count)]
    for start in range(0, count, 200):
        net.registry.set_allowed_batch(admin, payees[start : start + 200])
    block = client.latest_block()
    fee_cap = (block.base_fee_per_gas or 10**9) * 120 + 10**9
    deadline = block.timestamp + 3600
    lock_signer = TxSigner(
        seller.private_key,
        chain_id=client.chain_id,
        first_nonce=client.nonce(seller.address),
        max_fee_wei=fee_cap,
    )
    items: list[ReportItem] = []
    records: list[ItemRecords] = []
    locks: list[SignedTx] = []
    for i, payee in enumerate(payees):
        sid = keccak(text=f"crossdvp settle sweep {round_index} {i}")
        terms_hash = keccak(text=f"crossdvp settle sweep terms {round_index} {i}")
        call = net.escrow.call_data("lock", sid, 0, net.token.address, _SHARE, payee, deadline, terms_hash)
        locks.append(lock_signer.sign(call, gas=_LOCK_GAS))
        items.append(ReportItem(settlement_id=sid, terms_hash=terms_hash, decision=Decision.SETTLE))
        # The record the lock appends, which the report's delivery hands back to the escrow.
        record = LockRecord(
            token=net.token.address,
            amount=_SHARE,
            locker=seller.address,
            deadline_s=deadline,
            leg_index=0,
            state=LockState.LOCKED,
            payee=payee,
            terms_hash=terms_hash,
        )
        records.append((terms_hash, [record]))
    context = report_context(BENCH_DON)
    report_signer = TxSigner(
        admin.private_key,
        chain_id=client.chain_id,
        first_nonce=client.nonce(admin.address),
        max_fee_wei=fee_cap,
    )
    report_gas = min(block.gas_limit, _REPORT_BASE_GAS + _REPORT_ITEM_GAS * batch)
    reports: list[SignedTx] = []
    for start in range(0, count, batch):
        raw = build_report(
            items[start : start + batch], timestamp_s=1, don=BENCH_DON, workflow=BENCH_WORKFLOW
        )
        signatures = [sign_report(raw, context, k) for k in BENCH_DON_KEYS[: BENCH_DON.f + 1]]
        delivery = pack_delivery(records[start : start + batch])
        call = net.escrow.call_data("deliver", raw, context, signatures, delivery)
        reports.append(report_signer.sign(call, gas=report_gas))
    client.request("evm_setAutomine", [False])
    try:
        with RawRpc(client.rpc_url) as rpc:
            lock_s, _ = _send_and_mine(rpc, locks, f"lock (batch {batch})")
            settle_s, receipts = _send_and_mine(rpc, reports, f"report (batch {batch})")
    finally:
        client.request("evm_setAutomine", [True])
    settled_topic = net.escrow.abi.event("Settled").topic0
    settled = sum(
        1
        for r in receipts
        for log in r["logs"]
        if log["address"].lower() == net.escrow.address
        and bytes.fromhex(log["topics"][0][2:]) == settled_topic
    )
    if settled != count:
        raise ChainError(
            f"settle sweep: batch {batch}: {settled} of {count} items settled; report gas too low?"
        )
    gas = sum(int(r["gasUsed"], 16) for r in receipts)
    return SweepPoint(
        batch_size=batch,
        settlements=count,
        lock_s=lock_s,
        settle_s=settle_s,
        settle_gas_per_item=gas // count,
        reports=len(reports),
    )
