"""The fault scheduler's order and the process faults it drives, on a stand-in cluster (the real
processes are exercised by the chaos runs in test_chaos_run.py)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from crossdvp.chaos.faults import ALL_FAULTS, FaultKind, FaultScheduler, interval_mining_s
from crossdvp.chaos.world import RwLock
from crossdvp.errors import ConfigError


class FakeCluster:
    def __init__(self, nodes: int = 4, byzantine_index: int | None = 2) -> None:
        self.state: Any = type("State", (), {"nodes": list(range(nodes))})()
        self.byzantine_index = byzantine_index
        self.byzantine_mode = "flip"
        self.calls: list[str] = []

    def kill_node(self, index: int) -> None:
        self.calls.append(f"kill {index}")

    def start_node(self, index: int) -> None:
        self.calls.append(f"start {index}")

    def kill_payments(self) -> None:
        self.calls.append("kill payments")

    def start_payments(self) -> None:
        self.calls.append("start payments")


class Recording(FaultScheduler):
    def __init__(self, *args: Any, enough: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order: list[FaultKind] = []
        self.enough = enough
        self.done = threading.Event()

    def inject(self, kind: FaultKind) -> None:
        self.order.append(kind)
        self.injected[kind.value] += 1
        if len(self.order) >= self.enough:
            self.done.set()


def scheduler(kinds: frozenset[FaultKind], seed: int = 1, enough: int = 0) -> Recording:
    return Recording(
        FakeCluster(),  # type: ignore[arg-type]
        kinds,
        random.Random(seed),
        RwLock(),
        block_time_s=1,
        gap_s=(0.0, 0.0),
        enough=enough,
    )


def test_every_kind_is_injected_once_before_any_repeats() -> None:
    run = scheduler(ALL_FAULTS, enough=2 * len(ALL_FAULTS))
    run.start()
    run.done.wait()
    run.stop()
    first = run.order[: len(ALL_FAULTS)]
    assert set(first) == ALL_FAULTS
    assert run.every_kind_injected()


def test_the_same_seed_gives_the_same_fault_order() -> None:
    orders = []
    for _ in range(2):
        run = scheduler(ALL_FAULTS, seed=5, enough=10)
        run.start()
        run.done.wait()
        run.stop()
        orders.append(run.order[:10])
    assert orders[0] == orders[1]


def test_node_kills_restart_every_victim_and_two_at_once_means_two() -> None:
    cluster = FakeCluster()
    real = FaultScheduler(cluster, ALL_FAULTS, random.Random(2), RwLock(), block_time_s=1)  # type: ignore[arg-type]
    real._stop.set()  # no waiting between kill and restart
    real.inject(FaultKind.NODE_KILL_TWO)
    kills = [c for c in cluster.calls if c.startswith("kill")]
    starts = [c for c in cluster.calls if c.startswith("start")]
    assert len(kills) == 2 and len(set(kills)) == 2
    assert sorted(k.split()[1] for k in kills) == sorted(s.split()[1] for s in starts)
    cluster.calls.clear()
    real.inject(FaultKind.PAYMENTS_KILL)
    assert cluster.calls == ["kill payments", "start payments"]
    cluster.calls.clear()
    real.inject(FaultKind.BYZANTINE)
    assert cluster.calls == ["kill 2", "start 2"] and cluster.byzantine_mode == "garbage"
    assert real.injected["byzantine"] == 2  # on from the start, then switched once


def test_a_run_without_faults_injects_nothing() -> None:
    run = scheduler(frozenset())
    run.start()
    run.stop()
    assert run.order == [] and run.every_kind_injected()


def test_the_reorg_fault_needs_a_whole_second_block_time_and_refuses_a_fraction_up_front() -> None:
    assert interval_mining_s(1) == 1 and interval_mining_s(2.0) == 2
    cluster: Any = FakeCluster()
    for fraction in (0.1, 1.5):
        with pytest.raises(ConfigError, match="whole-second block time"):
            interval_mining_s(fraction)
        with pytest.raises(ConfigError, match="evm_setIntervalMining takes whole seconds"):
            FaultScheduler(cluster, ALL_FAULTS, random.Random(1), RwLock(), block_time_s=fraction)
        # Without the reorg fault nothing sets the interval: any block time will do.
        without_reorg = ALL_FAULTS - {FaultKind.REORG}
        FaultScheduler(cluster, without_reorg, random.Random(1), RwLock(), block_time_s=fraction)
