"""A chaos run end to end: devnet up, take the nodes over, onboard parties, run the seeded workload
while the scheduler injects faults, let everything finish, then check the invariants on the
ledgers' own state and report.

Every process is stopped in a `finally`: the nodes and payments service the cluster (re)started, by
their PIDs, then the devnet's own recorded processes through `devnet_down`.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crossdvp.chain.errors import ChainError
from crossdvp.chaos.evidence import read_snapshot
from crossdvp.chaos.faults import ALL_FAULTS, Cluster, FaultKind, FaultScheduler, interval_mining_s
from crossdvp.chaos.invariants import InvariantReport, check_invariants
from crossdvp.chaos.report import ChaosReport
from crossdvp.chaos.workload import TradePlan, execute_trade, plan_trades, retrying
from crossdvp.chaos.world import World
from crossdvp.devnet import DevnetOptions, devnet_down, devnet_up
from crossdvp.errors import ConfigError
from crossdvp.payments.errors import PaymentsApiError
from crossdvp.settlement.terms import Terms

__all__ = ["ChaosOptions", "run_chaos"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """A chaos run. Rejections (ConfigError): fewer than 1 trade, a negative seed, no concurrency."""

    trades: int
    seed: int
    faults: frozenset[FaultKind] = ALL_FAULTS
    directory: Path | None = None
    database_url: str | None = None
    concurrency: int = 8
    spread_s: float | None = None  # over how long trades start; default 1 s per trade, at least 30 s
    lead_s: tuple[int, int] = (12, 25)  # deadline = chain time at the trade's start + this
    settle_timeout_s: float = 180.0  # after the last deadline, how long to wait for every settlement
    fault_gap_s: tuple[float, float] = (2.0, 6.0)
    grace_s: int = 600
    parties: int = field(default=0)  # sellers and buyers each; 0 = from the number of trades

    def __post_init__(self) -> None:
        if self.trades < 1:
            raise ConfigError(f"--trades must be at least 1, got {self.trades}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")


def _onboard(world: World, rng: random.Random, options: ChaosOptions) -> tuple[list[str], list[str]]:
    """Sellers with shares, buyers with cash, and the two dedicated buyers; keys drawn from the seed
    first, then onboarded in parallel (each party is a handful of chain transactions)."""
    count = options.parties or max(2, min(6, options.trades // 8))
    shares = options.trades * 60 * 10**15
    cash = options.trades * 60_000
    sellers = [f"seller-{i}" for i in range(count)]
    buyers = [f"buyer-{i}" for i in range(count)]
    specs = [(name, rng.randbytes(32), shares, 0) for name in sellers]
    specs += [(name, rng.randbytes(32), 0, cash) for name in (*buyers, "frozen-buyer", "revoked-buyer")]
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        futures = [
            pool.submit(world.add_party, name, key, shares_minor=s, cash_minor=c) for name, key, s, c in specs
        ]
        for future in futures:
            future.result()
    return sellers, buyers


def _claim_owed(world: World, terms: list[Terms]) -> int:
    """Restore the revoked payee's KYC and claim every owed lock (anyone may claim; it pays the
    beneficiary), as an operator would once the payee is transferable again."""
    revoked = world.parties.get("revoked-buyer")
    if revoked is not None:
        retrying(lambda: world.contracts.registry.set_blocked(world.admin, revoked.chain_address, False))
    escrow, since = world.contracts.escrow, world.asset.deployed_at_block
    owed: set[bytes] = set()
    for _ in range(5):  # a read racing the next block under --prune-history is refused: re-read
        try:
            owed = {e.settlement_id for e in escrow.owed_events(since, "latest")}
            break
        except ChainError:
            time.sleep(0.5)
    claimed = 0
    for t in terms:
        if t.settlement_id not in owed:
            continue
        for _ in range(5):
            try:
                claimed += escrow.claim_owed(world.admin, t.settlement_id, 0, since)
                break
            except ChainError:
                time.sleep(0.5)  # left owed if it never works: still atomic, the checker says so
    return claimed


def _check(world: World, terms: list[Terms], attempts: int = 5) -> InvariantReport:
    """Read the ledgers and check. Reading is retried: anvil with --prune-history keeps only the
    latest state, so a "latest" call racing the next interval block is refused now and then."""
    for attempt in range(attempts):
        try:
            return _check_once(world, terms)
        except (ChainError, PaymentsApiError):
            if attempt + 1 == attempts:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable: the loop returns or raises")


def _check_once(world: World, terms: list[Terms]) -> InvariantReport:
    snapshot = read_snapshot(
        evm=world.evm,
        asset=world.asset,
        payments=world.ledger,
        payments_network=world.payments_network,
        database_url=world.database_url,
        don=world.don,
        terms=terms,
        expected=world.expectations(),
    )
    return check_invariants(snapshot)


def run_chaos(options: ChaosOptions, progress: Progress = lambda _line: None) -> ChaosReport:
    """Run the whole chaos test (module docstring). Raises CrossDvpError if the devnet cannot be
    started; violations are findings in the report, not exceptions."""
    if options.directory is not None:
        return _run_in(options.directory, options, progress)
    with tempfile.TemporaryDirectory(prefix="crossdvp-chaos-") as tmp:
        return _run_in(Path(tmp), options, progress)


def _run_in(directory: Path, options: ChaosOptions, progress: Progress) -> ChaosReport:
    rng = random.Random(options.seed)
    devnet_options = DevnetOptions(directory, database_url=options.database_url, grace_s=options.grace_s)
    if FaultKind.REORG in options.faults:
        interval_mining_s(devnet_options.block_time_s)  # a fractional block time: refused before any start
    state = devnet_up(devnet_options, progress)
    cluster: Cluster | None = None
    world: World | None = None
    scheduler: FaultScheduler | None = None
    try:
        world = World(state)
        byzantine = rng.randrange(len(state.nodes)) if FaultKind.BYZANTINE in options.faults else None
        cluster = Cluster(world, byzantine_index=byzantine)
        cluster.take_over()
        progress(f"nodes restarted behind RPC fault proxies (byzantine: {byzantine})")
        sellers, buyers = _onboard(world, rng, options)
        spread = options.spread_s if options.spread_s is not None else max(30.0, 1.0 * options.trades)
        plans = plan_trades(rng, options.trades, sellers, buyers, spread_s=spread, lead_s=options.lead_s)
        kinds = ", ".join(sorted(k.value for k in options.faults)) or "none"
        progress(f"{len(plans)} trades planned over {spread:.0f}s; faults: {kinds}")
        scheduler = FaultScheduler(
            cluster,
            options.faults,
            random.Random(rng.randrange(2**32)),
            world.chain_writes,
            block_time_s=devnet_options.block_time_s,
            gap_s=options.fault_gap_s,
            log=progress,
        )
        scheduler.start()
        terms, trade_errors = _run_workload(world, plans, options, progress)
        # Keep injecting until every kind has happened at least once (a short run may end first).
        end = time.monotonic() + 120
        while not scheduler.every_kind_injected() and time.monotonic() < end:
            time.sleep(0.5)
        scheduler.stop()
        progress(f"faults injected: {dict(scheduler.injected)}")
        report = _finish(world, terms, options, progress)
        return ChaosReport(
            trades=options.trades,
            seed=options.seed,
            faults_injected=dict(scheduler.injected),
            invariants=report,
            fault_errors=tuple(scheduler.errors),
            trade_errors=tuple(trade_errors),
        )
    finally:
        if scheduler is not None:
            scheduler.stop()
        if cluster is not None:
            cluster.stop_all()
        if world is not None:
            world.close()
        devnet_down(directory)


def _run_workload(
    world: World, plans: list[TradePlan], options: ChaosOptions, progress: Progress
) -> tuple[list[Terms], list[str]]:
    started = time.monotonic()
    terms: list[Terms] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(plan: TradePlan) -> None:
        delay = plan.start_after_s - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        try:
            result = execute_trade(world, plan)
        except Exception as exc:  # no deadline could be set: nothing was locked, nothing to check
            with lock:
                errors.append(f"trade {plan.index} ({plan.kind.value}) not started: {exc}")
            return
        with lock:
            terms.append(result.terms)
            if result.error is not None:
                errors.append(f"trade {plan.index} ({plan.kind.value}): {result.error}")
        if plan.index % 10 == 0:
            progress(f"trade {plan.index} ({plan.kind.value}) placed")

    with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
        for future in [pool.submit(one, plan) for plan in plans]:
            future.result()
    return terms, errors


def _finish(world: World, terms: list[Terms], options: ChaosOptions, progress: Progress) -> InvariantReport:
    """Wait past the last deadline until nothing is open (or the liveness bound is hit), claim what
    is owed, and check."""
    last_deadline = max((t.deadline_s for t in terms), default=0)
    while world.evm.latest_block().timestamp <= last_deadline:
        time.sleep(1.0)
    give_up = time.monotonic() + options.settle_timeout_s
    report = _check(world, terms)
    while report.unfinished and time.monotonic() < give_up:
        progress(f"waiting for {len(report.unfinished)} settlement(s) to finish")
        time.sleep(3.0)
        report = _check(world, terms)
    claimed = _claim_owed(world, terms)
    if claimed:
        progress(f"claimed {claimed} owed lock(s) after restoring the payee's KYC")
        report = _check(world, terms)
    return report
