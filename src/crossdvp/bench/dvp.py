"""End-to-end DvP throughput and latency on a real devnet (anvil, payments ledger, N oracle nodes).

One run, on one devnet it starts and stops (every process by PID, through crossdvp.devnet):

1. the two-transfer ceiling on the devnet's own anvil, with its own block batching (interval
   mining), before any DvP traffic (crossdvp.bench.ceiling);
2. a burst: K settlements registered with every node, 200 per call (not timed: registration commits no one),
   then K pre-signed `lockWithPermit` transactions sent as JSON-RPC batches and K holds placed
   through the ledger's batch endpoint, at once. Timed from the first send to the moment the last
   settlement has both legs executed and final: `dvp_per_s`;
3. a paced run at half the burst's rate (open loop: each settlement is sent at its scheduled time,
   whatever happened to the previous ones), for the latency from "the later lock is final" to
   "both legs are executed and final" (crossdvp.bench.monitor defines each moment).

A settlement that does not complete within the timeout fails the run: a throughput figure that
silently dropped some settlements would overstate the system.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils.crypto import keccak

from crossdvp.bench.ceiling import CeilingResult, measure_transfer_ceiling
from crossdvp.bench.monitor import LedgerMonitor, chain_poll_s_for
from crossdvp.bench.profile import profiled_all
from crossdvp.bench.rpc import RawRpc, SignedTx, TxSigner
from crossdvp.chain.anvil import dev_keys
from crossdvp.chain.client import EvmClient
from crossdvp.client.config import DeskConfig
from crossdvp.devnet import DevnetOptions, devnet_down, devnet_up, load_state
from crossdvp.devnet.keyfiles import read_secret
from crossdvp.devnet.nodeconfig import NodeTiming
from crossdvp.devnet.state import receipt_timeout_s
from crossdvp.errors import ConfigError, CrossDvpError
from crossdvp.oracle.api import MAX_REGISTER_BATCH
from crossdvp.payments.client import PaymentsClient
from crossdvp.settlement.terms import Leg, Terms

__all__ = ["DvpResult", "DvpRun", "measure_dvp", "percentile"]

Progress = Callable[[str], None]

_SHARE = 10**15  # 0.001 fund share per DvP: the seller's 10,000 shares last for millions
_CASH_MINOR = 100
_LOCK_GAS = 300_000
_ETH = 10**18
_DEADLINE_AHEAD_S = 3_600
_HOLD_BATCH = 100
_TICK_S = 0.1


class BenchError(CrossDvpError):
    """The DvP run could not produce a trustworthy figure (a settlement never completed, a lock or
    hold was refused, a node did not accept terms)."""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class DvpRun:
    settlements: int
    elapsed_s: float
    latencies_ms: tuple[float, ...]
    offered_per_s: float | None  # None for the burst (everything offered at once)
    # Part of each latency: later lock final -> both legs executed (chain settle block seen, hold
    # settled), before the chain's confirmation depth is waited out.
    executed_ms: tuple[float, ...] = ()

    @property
    def dvp_per_s(self) -> float:
        return self.settlements / self.elapsed_s

    def latency_summary(self) -> dict[str, float | None]:
        return {
            "p50": round(percentile(self.latencies_ms, 50), 1),
            "p95": round(percentile(self.latencies_ms, 95), 1),
            "p99": round(percentile(self.latencies_ms, 99), 1),
            "max": round(max(self.latencies_ms), 1),
            "executed_p50": round(percentile(self.executed_ms, 50), 1) if self.executed_ms else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "settlements": self.settlements,
            "elapsed_s": round(self.elapsed_s, 3),
            "dvp_per_s": round(self.dvp_per_s, 1),
            "offered_per_s": None if self.offered_per_s is None else round(self.offered_per_s, 1),
            "latency_ms": self.latency_summary(),
        }


@dataclass(frozen=True, slots=True)
class DvpResult:
    nodes: int
    max_batch: int  # the nodes' report batch size
    ceiling: CeilingResult
    burst: DvpRun
    paced: DvpRun | None
    block_time_s: float  # seconds between the devnet's blocks (may be fractional: 0.1)
    finality_depth: int
    # As the devnet's chain reported it (anvil's default included), not as asked for.
    block_gas_limit: int

    @property
    def ratio(self) -> float:
        return self.burst.dvp_per_s / self.ceiling.two_transfer_ceiling_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "max_batch": self.max_batch,
            "dvp_per_s": round(self.burst.dvp_per_s, 1),
            "two_transfer_ceiling_per_s": round(self.ceiling.two_transfer_ceiling_per_s, 1),
            "ratio": round(self.ratio, 3),
            "latency_ms": (self.paced or self.burst).latency_summary(),
            "block_time_s": self.block_time_s,
            "finality_depth": self.finality_depth,
            "block_gas_limit": self.block_gas_limit,
            "ceiling": self.ceiling.to_dict(),
            "burst": self.burst.to_dict(),
            "paced": None if self.paced is None else self.paced.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class _Order:
    terms: Terms
    lock: SignedTx
    hold: dict[str, Any]


class _Harness:
    """The devnet's parties, keys and endpoints, and the pre-signing of orders."""

    def __init__(self, directory: Path, progress: Progress) -> None:
        self.progress = progress
        self.config = DeskConfig.from_devnet(directory)
        state = load_state(directory)
        chain, _, _ = state.require_complete()
        self.finality_depth = chain.finality_depth
        self.block_time_s = chain.block_time_s
        self.evm = EvmClient(self.config.rpc_url, timeout_s=receipt_timeout_s(chain.block_time_s))
        self.block_gas_limit = self.evm.latest_block().gas_limit
        self.net = self.config.asset.bind(self.evm)
        self.admin = self.evm.account(dev_keys()[0])
        seller, buyer = self.config.parties["seller"], self.config.parties["buyer"]
        self.seller_key = self.config.chain_key(seller)
        self.seller = self.evm.account(self.seller_key)
        self.buyer_address = buyer.chain_address
        self.buyer_api_key = self.config.payments_key(buyer)
        self.buyer_account = buyer.accounts["USD"]
        self.seller_account = seller.accounts["USD"]
        self.oracle_api_key = read_secret(state.nodes[0].payments_key_file)
        # Room for a fee cap far above the base fee (full blocks raise it 12.5% each).
        self.evm.transfer_eth(self.admin, self.seller.address, 1_000 * _ETH)
        _, name, version, chain_id, contract, _, _ = self.net.token._read("eip712Domain")
        self._domain = {"name": name, "version": version, "chainId": chain_id, "verifyingContract": contract}
        self._permit_nonce = self.net.token.nonces(self.seller.address)
        base_fee = self.evm.latest_block().base_fee_per_gas or 10**9
        self._signer = TxSigner(
            self.seller_key,
            chain_id=self.evm.chain_id,
            first_nonce=self.evm.nonce(self.seller.address),
            max_fee_wei=base_fee * 200 + 10**9,
        )
        self._http = httpx.Client(timeout=30)
        self._counter = 0

    def close(self) -> None:
        self._http.close()

    def orders(self, count: int, tag: str) -> list[_Order]:
        """`count` DvPs (shares seller -> buyer against cash buyer -> seller), locks pre-signed."""
        deadline = self.evm.latest_block().timestamp + _DEADLINE_AHEAD_S
        token = self.net.token.address
        out: list[_Order] = []
        for _ in range(count):
            self._counter += 1
            terms = Terms(
                settlement_id=keccak(text=f"crossdvp bench dvp {tag} {self._counter}"),
                deadline_s=deadline,
                legs=(
                    Leg(self.config.asset.network, token, _SHARE, self.seller.address, self.buyer_address),
                    Leg(
                        self.config.payments_network,
                        "USD",
                        _CASH_MINOR,
                        self.buyer_account,
                        self.seller_account,
                    ),
                ),
            )
            v, r, s = self._permit(deadline)
            call = self.net.escrow.call_data(
                "lockWithPermit", terms.settlement_id, 0, token, _SHARE, self.buyer_address, deadline,
                terms.terms_hash, deadline, v, r, s,
            )  # fmt: skip
            hold = {
                "settlement_id": terms.settlement_id,
                "leg_index": 1,
                "terms_hash": terms.terms_hash,
                "payer_account": self.buyer_account,
                "payee_account": self.seller_account,
                "currency": "USD",
                "amount_minor": _CASH_MINOR,
                "deadline_s": deadline,
            }
            out.append(_Order(terms=terms, lock=self._signer.sign(call, gas=_LOCK_GAS), hold=hold))
        return out

    def _permit(self, deadline: int) -> tuple[int, bytes, bytes]:
        message = {
            "owner": Account.from_key(self.seller_key).address,
            "spender": self.net.escrow.address,
            "value": _SHARE,
            "nonce": self._permit_nonce,
            "deadline": deadline,
        }
        self._permit_nonce += 1
        signed = Account.sign_typed_data(
            self.seller_key,
            domain_data=self._domain,
            message_types={
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ]
            },
            message_data=message,
        )
        return int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")

    def register(self, orders: Sequence[_Order]) -> None:
        """Register every order's terms with every node through POST /v1/settlements/batch (200 a call,
        8 calls in flight). Raises BenchError if a node refuses one: a settlement some node does not
        know could stall the run."""
        chunks = [orders[i : i + MAX_REGISTER_BATCH] for i in range(0, len(orders), MAX_REGISTER_BATCH)]
        jobs = [(node.url, chunk) for chunk in chunks for node in self.config.nodes]

        def post(job: tuple[str, Sequence[_Order]]) -> str | None:
            url, chunk = job
            body = {"settlements": [o.terms.to_dict() for o in chunk]}
            response = self._http.post(f"{url}/v1/settlements/batch", json=body)
            if response.status_code != 200:
                return f"{url}: HTTP {response.status_code}"
            refused = [r for r in response.json()["results"] if r["status"] not in (200, 201)]
            return None if not refused else f"{url}: {refused[0]}"

        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            failures = [f for f in pool.map(post, jobs) if f is not None]
        if failures:
            raise BenchError(f"{len(failures)} registration calls refused, first: {failures[0]}")
        self.progress(
            f"registered {len(orders)} settlements with {len(self.config.nodes)} nodes "
            f"in {time.perf_counter() - began:.1f}s (not timed)"
        )


def _send(rpc: RawRpc, ledger: PaymentsClient, orders: Sequence[_Order], placed: dict[bytes, float]) -> None:
    """Send the locks (one JSON-RPC batch per 250) and place the holds (one call per 100)."""
    rpc.send_raw([o.lock for o in orders])
    for start in range(0, len(orders), _HOLD_BATCH):
        part = orders[start : start + _HOLD_BATCH]
        results = ledger.place_holds([o.hold for o in part])
        now = time.perf_counter()
        for order, result in zip(part, results, strict=True):
            if result.get("status") != 201:
                raise BenchError(f"the ledger refused a bench hold: {result}")
            placed[order.terms.settlement_id] = now


def _collect(
    monitor: LedgerMonitor, orders: Sequence[_Order], placed: dict[bytes, float], timeout_s: float
) -> tuple[float, list[float], list[float]]:
    """Wait until every order has both legs executed and final; returns (last completion stamp,
    latencies in ms, executed parts in ms). Raises BenchError on timeout or a monitor failure."""
    give_up = time.monotonic() + timeout_s
    sids = [o.terms.settlement_id for o in orders]
    while True:
        if monitor.errors:
            raise BenchError(f"the ledger monitor failed: {monitor.errors[0]}")
        with monitor.stamps.lock:
            done: list[tuple[float, float, float]] = []
            for sid in sids:
                lock_block = monitor.stamps.lock_block.get(sid)
                settle_block = monitor.stamps.settle_block.get(sid)
                hold_settled = monitor.stamps.hold_settled.get(sid)
                if lock_block is None or settle_block is None or hold_settled is None:
                    break
                lock_final = monitor.final_at(lock_block)
                settle_final = monitor.final_at(settle_block)
                if lock_final is None or settle_final is None:
                    break
                later_lock_final = max(lock_final, placed[sid])
                both_final = max(settle_final, hold_settled)
                executed = max(monitor.stamps.block_seen[settle_block], hold_settled)
                done.append(
                    (both_final, (both_final - later_lock_final) * 1000, (executed - later_lock_final) * 1000)
                )
        if len(done) == len(sids):
            return max(d[0] for d in done), [d[1] for d in done], [d[2] for d in done]
        if time.monotonic() > give_up:
            raise BenchError(
                f"only {len(done)} of {len(sids)} settlements completed within {timeout_s:g}s "
                "(see the devnet's node logs)"
            )
        time.sleep(0.05)


def _burst(
    h: _Harness,
    monitor: LedgerMonitor,
    count: int,
    timeout_s: float,
    profile: AbstractContextManager[None],
) -> DvpRun:
    """The timed burst; `profile` covers it from the first send to the last settlement (not the
    registration before it)."""
    orders = h.orders(count, "burst")
    h.register(orders)
    placed: dict[bytes, float] = {}
    with profile:
        with (
            RawRpc(h.config.rpc_url) as rpc,
            PaymentsClient(h.config.payments_url, h.buyer_api_key) as ledger,
        ):
            began = time.perf_counter()
            _send(rpc, ledger, orders, placed)
        finished, latencies, executed = _collect(monitor, orders, placed, timeout_s)
    return DvpRun(
        settlements=count,
        elapsed_s=finished - began,
        latencies_ms=tuple(latencies),
        offered_per_s=None,
        executed_ms=tuple(executed),
    )


def _paced(h: _Harness, monitor: LedgerMonitor, rate: float, duration_s: float, timeout_s: float) -> DvpRun:
    count = max(1, round(rate * duration_s))
    orders = h.orders(count, "paced")
    h.register(orders)
    placed: dict[bytes, float] = {}
    with RawRpc(h.config.rpc_url) as rpc, PaymentsClient(h.config.payments_url, h.buyer_api_key) as ledger:
        began = time.perf_counter()
        sent = 0
        while sent < count:
            due = min(count, math.floor((time.perf_counter() - began) * rate) + 1)
            if due > sent:
                _send(rpc, ledger, orders[sent:due], placed)
                sent = due
            time.sleep(_TICK_S)
    finished, latencies, executed = _collect(monitor, orders, placed, timeout_s)
    return DvpRun(
        settlements=count,
        elapsed_s=finished - began,
        latencies_ms=tuple(latencies),
        offered_per_s=rate,
        executed_ms=tuple(executed),
    )


def _profiling(directory: Path, profile_dir: Path | None) -> AbstractContextManager[None]:
    """py-spy on node-0 and the payments ledger of the devnet, if asked for."""
    if profile_dir is None:
        return nullcontext()
    state = load_state(directory)
    records = [state.process(name) for name in ("node-0", "payments")]
    return profiled_all({r.name: r.pid for r in records if r is not None}, profile_dir)


def measure_dvp(
    directory: Path,
    *,
    nodes: int,
    settlements: int,
    paced_s: float,
    ceiling_transfers: int,
    paced_rate: float | None = None,
    progress: Progress = lambda _line: None,
    timeout_s: float = 300.0,
    profile_dir: Path | None = None,
    max_batch: int = 100,
    block_gas_limit: int | None = None,
    block_time_s: float = 1,
    finality_depth: int = 2,
) -> DvpResult:
    """Start a devnet of `nodes` nodes in `directory`, measure (module docstring), stop it.

    `paced_s` = 0 skips the paced run (latency then comes from the burst); `paced_rate` (DvPs/s)
    replaces its default rate, half the burst's. `block_gas_limit`, `block_time_s` (seconds, may be
    fractional) and `finality_depth` are the devnet's (None: anvil's default gas limit, 30,000,000).
    Rejects (ConfigError) settlements < 1, paced_s < 0, paced_rate <= 0, or a block gas limit, block
    time or finality depth DevnetOptions refuses. Raises BenchError if the run
    cannot produce a trustworthy figure, DevnetError if the devnet does not start.
    """
    if settlements < 1 or paced_s < 0 or (paced_rate is not None and not paced_rate > 0):
        raise ConfigError(
            "settlements must be >= 1, paced_s >= 0 and paced_rate > 0, "
            f"got {settlements}/{paced_s}/{paced_rate}"
        )
    devnet_options = DevnetOptions(
        directory,
        nodes=nodes,
        block_time_s=block_time_s,
        finality_depth=finality_depth,
        block_gas_limit=block_gas_limit,
        timing=NodeTiming(max_batch=max_batch),
    )
    devnet_up(devnet_options, progress)
    try:
        h = _Harness(directory, progress)
        try:
            progress(
                f"measuring the two-transfer ceiling on the devnet's anvil ({ceiling_transfers} transfers)"
            )
            # Stamped as finely as the monitor stamps blocks: a tenth of a block on short blocks.
            poll_s = chain_poll_s_for(h.block_time_s)
            ceiling = measure_transfer_ceiling(
                h.evm,
                h.admin,
                transfers=ceiling_transfers,
                mining="node",
                label=f"devnet{nodes}",
                poll_s=poll_s,
            )
            progress(
                f"ceiling: {ceiling.transfers_per_s:,.0f} transfers/s, "
                f"two-transfer ceiling {ceiling.two_transfer_ceiling_per_s:,.0f}/s"
            )
            monitor = LedgerMonitor(
                rpc_url=h.config.rpc_url,
                escrow=h.net.escrow.address,
                locked_topic=h.net.escrow.abi.event("Locked").topic0,
                settled_topic=h.net.escrow.abi.event("Settled").topic0,
                payments_url=h.config.payments_url,
                oracle_api_key=h.oracle_api_key,
                finality_depth=h.finality_depth,
                chain_poll_s=poll_s,
            )
            monitor.start()
            try:
                progress(f"burst: {settlements} DvPs on {nodes} nodes")
                burst = _burst(h, monitor, settlements, timeout_s, _profiling(directory, profile_dir))
                progress(f"burst: {burst.dvp_per_s:,.1f} DvP/s")
                paced = None
                if paced_s > 0:
                    rate = burst.dvp_per_s / 2 if paced_rate is None else paced_rate
                    progress(f"paced: {rate:,.1f} DvP/s for {paced_s:g}s")
                    paced = _paced(h, monitor, rate, paced_s, timeout_s)
                    progress(f"paced: latency {paced.latency_summary()}")
            finally:
                monitor.stop()
        finally:
            h.close()
    finally:
        devnet_down(directory)
    return DvpResult(
        nodes=nodes,
        max_batch=max_batch,
        ceiling=ceiling,
        burst=burst,
        paced=paced,
        block_time_s=h.block_time_s,
        finality_depth=h.finality_depth,
        block_gas_limit=h.block_gas_limit,
    )
