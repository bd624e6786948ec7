"""`crossdvp bench`: every figure of issue 7, each beside a ceiling measured in the same run.

    run_bench(BenchOptions(...), progress=print) -> BenchReport   (.to_dict() is bench/results.json)

Order of the run (each step starts its own processes and stops them by PID before the next):
1. chain, on a fresh anvil: the escrow's gas (crossdvp.chain.gas), the HTLC and approve+transferFrom
   baselines (crossdvp.bench.baseline), settle throughput per report batch size with `evm_mine`
   block batching (crossdvp.bench.sweep) and the two-transfer ceiling with the same batching;
2. end to end, on a devnet per node count: the devnet's own two-transfer ceiling, the burst
   throughput and the paced latency (crossdvp.bench.dvp); every devnet's anvil gets the same block
   gas limit (`block_gas_limit`, None: anvil's default), block time (`block_time_s`, seconds, may be
   fractional) and finality depth, so the ceiling and the DvP rate share them;
3. the payment ledger on SQLite and PostgreSQL, and pgbench on the same server
   (crossdvp.bench.payments).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossdvp import __version__
from crossdvp.bench.baseline import BaselineGas, measure_baselines
from crossdvp.bench.ceiling import CeilingResult, measure_transfer_ceiling
from crossdvp.bench.dvp import DvpResult, measure_dvp
from crossdvp.bench.payments import PaymentsFigures, measure_payments
from crossdvp.bench.sweep import SweepPoint, measure_settle_sweep
from crossdvp.chain.anvil import running_anvil
from crossdvp.chain.client import EvmClient
from crossdvp.chain.gas import GasFigures, measure_gas
from crossdvp.devnet.up import check_block_gas_limit, check_block_time, check_finality_depth
from crossdvp.errors import ConfigError

__all__ = ["TARGETS", "BenchOptions", "BenchReport", "parse_sizes", "run_bench"]

Progress = Callable[[str], None]

#: Issue 7's targets, printed beside the figures (never asserted: the bench reports, it does not judge).
TARGETS: dict[str, Any] = {
    "dvp_per_s": ">= 1000",
    "ratio": ">= 0.5",
    "latency_ms": {"p50": "<= 100", "p99": "<= 500"},
    "gas_per_asset_leg": "<= 120000",
    "postgres_holds_per_s": ">= 1500",
    "sqlite_holds_per_s": ">= 1000",
}


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run. Rejections (ConfigError): a node count below 4, no node count, a batch size
    outside 1..1000, a non-positive size, a block gas limit outside 1,000,000..2**63-1, a block time
    that is not a finite number of seconds >= 0.05, or a finality depth below 1 (checked here, so a
    bad value stops the run before the first anvil starts)."""

    nodes: tuple[int, ...] = (4,)
    batch_sizes: tuple[int, ...] = (1, 10, 100, 500)
    # End to end at these node report batch sizes too (one more devnet each, at the first node count).
    report_batch_sizes: tuple[int, ...] = ()
    # The burst: big enough that the chain's block space, not the pipeline's fixed latency (lock
    # final, report, settle final: about 5 blocks), sets its duration. At 500 the permit-locks fill
    # about 3 blocks and the fixed latency is most of the run.
    settlements: int = 2000
    # The burst of each report-batch-size run (at a report batch of 1 one forwarder transaction
    # settles one DvP: 2000 would take many minutes and show nothing more).
    batch_axis_settlements: int = 500
    paced_s: float = 10.0
    # DvPs/s of the paced load; None: half of each run's own burst rate.
    paced_rate: float | None = None
    transfers: int = 2000
    sweep_settlements: int = 500
    # At 1,000 holds each batched phase lasted about 0.3 s, and per-connection warm-up (statement
    # preparation, the first compiles) was a visible part of it.
    payments_holds: int = 4000
    payments_clients: int = 4
    postgres_url: str | None = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    pgbench_s: int = 5
    chain: bool = True
    dvp: bool = True
    payments: bool = True
    # The end-to-end devnets' block gas limit (anvil's --gas-limit); None: anvil's 30,000,000, which
    # at about 210,000 gas per DvP caps a 1 s chain near 143 DvP/s. The chain part keeps the default.
    block_gas_limit: int | None = None
    # The end-to-end devnets' seconds between blocks (fractions allowed: 0.1) and the confirmations
    # their nodes wait for. The chain part mines its own blocks (evm_mine) and ignores both.
    block_time_s: float = 1
    finality_depth: int = 2
    work_dir: Path | None = None
    # Sample node-0 and the ledger (during the burst) and each ledger bench server with py-spy.
    profile_dir: Path | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if not self.nodes or any(n < 4 for n in self.nodes):
            raise ConfigError(f"--nodes: each node count must be >= 4 (n >= 3f+1, f >= 1), got {self.nodes}")
        if not self.batch_sizes or any(not 1 <= b <= 1000 for b in self.batch_sizes):
            raise ConfigError(f"--batch-sizes: each must be in 1..1000, got {self.batch_sizes}")
        if any(not 1 <= b <= 1000 for b in self.report_batch_sizes):
            raise ConfigError(f"--report-batch-sizes: each must be in 1..1000, got {self.report_batch_sizes}")
        sizes = (
            self.settlements,
            self.batch_axis_settlements,
            self.transfers,
            self.sweep_settlements,
            self.payments_holds,
            self.payments_clients,
        )
        if min(sizes) < 1 or self.paced_s < 0 or self.pgbench_s < 1:
            raise ConfigError(
                "--settlements, --batch-axis-settlements, --transfers, --sweep-settlements, "
                "--payments-holds must be >= 1"
            )
        if self.paced_rate is not None and not (math.isfinite(self.paced_rate) and self.paced_rate > 0):
            raise ConfigError(
                f"--paced-rate must be a positive number of DvPs per second, got {self.paced_rate}"
            )
        check_block_gas_limit(self.block_gas_limit)
        check_block_time(self.block_time_s)
        check_finality_depth(self.finality_depth)


@dataclass
class BenchReport:
    options: BenchOptions
    started_at_s: float
    gas: GasFigures | None = None
    baselines: BaselineGas | None = None
    sweep: list[SweepPoint] = field(default_factory=list)
    chain_ceiling: CeilingResult | None = None
    dvp: list[DvpResult] = field(default_factory=list)
    dvp_batches: list[DvpResult] = field(default_factory=list)
    payments: PaymentsFigures | None = None
    elapsed_s: float = 0.0
    # The machine is shared: its load during the run is part of reading the figures.
    load_average_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    load_average_end: tuple[float, float, float] | None = None

    def headline(self) -> DvpResult | None:
        return self.dvp[0] if self.dvp else None

    def to_dict(self) -> dict[str, Any]:
        head = self.headline()
        gas: dict[str, Any] | None = None
        if self.gas is not None:
            gas = {
                **self.gas.to_dict(),
                # A leg as the desk settles it: lockWithPermit (permit + lock, no approve
                # transaction) plus its share of a 100-item report.
                "per_asset_leg": self.gas.lock_with_permit + self.gas.settle_item_batch_100,
                "per_asset_leg_parts": {
                    "lock_with_permit": self.gas.lock_with_permit,
                    "settle_share_batch_100": self.gas.settle_item_batch_100,
                },
            }
        return {
            "dvp_per_s": None if head is None else round(head.burst.dvp_per_s, 2),
            "two_transfer_ceiling_per_s": None
            if head is None
            else round(head.ceiling.two_transfer_ceiling_per_s, 1),
            "ratio": None if head is None else round(head.ratio, 3),
            "latency_ms": None
            if head is None
            else {
                **(head.paced or head.burst).latency_summary(),
                "at_offered_dvp_per_s": None
                if head.paced is None
                else round(head.paced.offered_per_s or 0, 1),
                "samples": (head.paced or head.burst).settlements,
                "from": "later lock final on its ledger",
                "to": "both legs executed and final",
            },
            "gas": gas,
            "htlc_gas_per_leg": None if self.baselines is None else self.baselines.htlc_gas_per_leg,
            "approve_transfer_from_gas": None
            if self.baselines is None
            else self.baselines.approve_transfer_from,
            "baselines": None if self.baselines is None else self.baselines.to_dict(),
            "payments": None if self.payments is None else self.payments.to_dict(),
            "scaling": {
                "nodes": [d.to_dict() for d in self.dvp],
                "report_batch_sizes": [d.to_dict() for d in self.dvp_batches],
                "batch_sizes": [p.to_dict() for p in self.sweep],
                "batch_sizes_ceiling": None if self.chain_ceiling is None else self.chain_ceiling.to_dict(),
            },
            "targets": TARGETS,
            "run": {
                "command": self.options.command,
                "crossdvp": __version__,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
                "started_at_s": int(self.started_at_s),
                "elapsed_s": round(self.elapsed_s, 1),
                "load_average_start": [round(v, 2) for v in self.load_average_start],
                "load_average_end": None
                if self.load_average_end is None
                else [round(v, 2) for v in self.load_average_end],
                "settlements": self.options.settlements,
                "batch_axis_settlements": self.options.batch_axis_settlements,
                "paced_s": self.options.paced_s,
                "paced_rate": self.options.paced_rate,
                "block_gas_limit": self.options.block_gas_limit,  # as asked for; None: anvil's default
                "block_time_s": float(self.options.block_time_s),  # of the devnets, as asked for
                "finality_depth": self.options.finality_depth,
                "node_max_batch": 100,  # of the node-count runs; the batch-size runs name their own
            },
        }


def _chain(report: BenchReport, work: Path, progress: Progress) -> None:
    opts = report.options
    with running_anvil(work / "anvil") as node:
        client = EvmClient(node.rpc_url, timeout_s=60)
        progress(f"chain: gas of the escrow on a fresh anvil (pid {node.pid})")
        report.gas = measure_gas(client, node.dev_keys, large_batch=100)
        progress("chain: HTLC and approve+transferFrom baselines")
        report.baselines = measure_baselines(client, node.dev_keys[3:])
        progress(f"chain: settle throughput at report batch sizes {list(opts.batch_sizes)}")
        report.sweep = measure_settle_sweep(
            client, node.dev_keys[5:], batch_sizes=opts.batch_sizes, settlements=opts.sweep_settlements
        )
        progress(f"chain: two-transfer ceiling with evm_mine batching ({opts.transfers} transfers)")
        report.chain_ceiling = measure_transfer_ceiling(
            client, client.account(node.dev_keys[7]), transfers=opts.transfers, mining="evm_mine"
        )


def run_bench(options: BenchOptions, progress: Progress = lambda _line: None) -> BenchReport:
    """Run what `options` selects (module docstring) and return the figures. Raises the first
    measurement's error, after stopping every process it started; the work directory is kept on
    failure (its logs are the evidence) and removed on success unless it was given."""
    report = BenchReport(options=options, started_at_s=time.time())
    began = time.perf_counter()
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="crossdvp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if options.chain:
            _chain(report, work, progress)
        if options.dvp:
            runs = [(n, 100) for n in options.nodes]
            runs += [(options.nodes[0], b) for b in options.report_batch_sizes]
            for i, (n, max_batch) in enumerate(runs):
                name = f"devnet-{n}" if i < len(options.nodes) else f"devnet-{n}-batch-{max_batch}"
                progress(f"devnet: {n} nodes, reports of up to {max_batch}")
                result = measure_dvp(
                    work / name,
                    nodes=n,
                    settlements=options.settlements
                    if i < len(options.nodes)
                    else options.batch_axis_settlements,
                    paced_s=options.paced_s,
                    paced_rate=options.paced_rate,
                    ceiling_transfers=options.transfers,
                    progress=lambda line: progress(f"  {line}"),
                    profile_dir=options.profile_dir and options.profile_dir / name,
                    max_batch=max_batch,
                    block_gas_limit=options.block_gas_limit,
                    block_time_s=options.block_time_s,
                    finality_depth=options.finality_depth,
                )
                (report.dvp if i < len(options.nodes) else report.dvp_batches).append(result)
        if options.payments:
            progress("payments: holds over HTTP on SQLite and PostgreSQL, then pgbench")
            report.payments = measure_payments(
                holds=options.payments_holds,
                clients=options.payments_clients,
                postgres_url=options.postgres_url,
                pgbench_s=options.pgbench_s,
                profile_dir=options.profile_dir,
            )
    except BaseException:
        progress(f"bench failed; logs kept in {work}")
        raise
    if options.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    report.elapsed_s = time.perf_counter() - began
    report.load_average_end = os.getloadavg()
    return report


def parse_sizes(text: str, *, option: str, empty_ok: bool = False) -> tuple[int, ...]:
    """ "4,7,10" -> (4, 7, 10) ("" -> () if `empty_ok`). Raises ConfigError naming `option` for
    anything else."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values and not empty_ok:
        raise ConfigError(f"{option}: expected at least one integer")
    return values
