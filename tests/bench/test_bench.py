"""`crossdvp bench` at tiny sizes: the JSON it writes has every key issue 7 names, with figures of
the right kinds, and every process it started is gone afterwards. No figure is judged here: the
bench is a program that prints figures, and a shared 2-core machine makes any timed assertion a lie.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdvp.bench.cli import _summary
from crossdvp.bench.dvp import percentile
from crossdvp.bench.monitor import chain_poll_s_for
from crossdvp.bench.profile import hot_spots
from crossdvp.bench.run import BenchOptions, BenchReport, parse_sizes
from crossdvp.cli import app
from crossdvp.devnet import load_state
from crossdvp.errors import ConfigError
from crossdvp.process import pid_alive


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_sizes_and_options_are_validated() -> None:
    assert parse_sizes("4, 7,10", option="--nodes") == (4, 7, 10)
    with pytest.raises(ConfigError, match="--nodes"):
        parse_sizes("4,x", option="--nodes")
    with pytest.raises(ConfigError, match="--nodes"):
        BenchOptions(nodes=(3,))
    with pytest.raises(ConfigError, match="--batch-sizes"):
        BenchOptions(batch_sizes=(0,))
    with pytest.raises(ConfigError, match="--settlements"):
        BenchOptions(settlements=0)
    with pytest.raises(ConfigError, match="--batch-axis-settlements"):
        BenchOptions(batch_axis_settlements=0)
    with pytest.raises(ConfigError, match="--block-gas-limit must be from 1,000,000"):
        BenchOptions(block_gas_limit=999_999)
    with pytest.raises(ConfigError, match="--block-gas-limit must be an integer"):
        BenchOptions(block_gas_limit=3.0e8)  # type: ignore[arg-type]


def test_block_gas_limit_is_in_the_run_section_and_the_summary_only_when_chosen() -> None:
    chosen = BenchReport(options=BenchOptions(block_gas_limit=300_000_000), started_at_s=0).to_dict()
    assert chosen["run"]["block_gas_limit"] == 300_000_000
    assert "block_gas_limit" in _summary(chosen) and "300,000,000" in _summary(chosen)
    default = BenchReport(options=BenchOptions(), started_at_s=0).to_dict()
    assert default["run"]["block_gas_limit"] is None
    assert "block_gas_limit" not in _summary(default)


def test_block_time_and_finality_depth_are_validated_and_in_the_run_section() -> None:
    for bad in (0.01, math.nan, math.inf, True, "1"):
        with pytest.raises(ConfigError, match="--block-time must be"):
            BenchOptions(block_time_s=bad)  # type: ignore[arg-type]
    for bad_depth in (0, -2, True):
        with pytest.raises(ConfigError, match="--finality-depth must be an integer >= 1"):
            BenchOptions(finality_depth=bad_depth)
    default = BenchReport(options=BenchOptions(), started_at_s=0).to_dict()
    assert default["run"]["block_time_s"] == 1.0 and default["run"]["finality_depth"] == 2
    fast = BenchReport(options=BenchOptions(block_time_s=0.1, finality_depth=3), started_at_s=0).to_dict()
    assert fast["run"]["block_time_s"] == 0.1 and fast["run"]["finality_depth"] == 3
    assert "block_time_s" in _summary(fast) and "0.1 (devnets; finality depth 3)" in _summary(fast)


def test_the_monitor_stamps_blocks_ten_times_a_block_on_short_blocks() -> None:
    assert chain_poll_s_for(1) == 0.02
    assert chain_poll_s_for(0.2) == 0.02
    assert chain_poll_s_for(0.1) == pytest.approx(0.01)
    assert chain_poll_s_for(0.05) == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--block-time", "0.01", "--block-time must be a finite number of seconds >= 0.05"),
        ("--block-time", "nan", "--block-time must be a finite number of seconds >= 0.05"),
        ("--block-time", "fast", "Invalid value for '--block-time'"),
        ("--finality-depth", "0", "--finality-depth must be an integer >= 1"),
        ("--finality-depth", "1.5", "Invalid value for '--finality-depth'"),
    ],
)
def test_bench_cli_refuses_a_bad_block_time_or_finality_depth_before_starting(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["bench", option, value, "--work-dir", str(work)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.replace("│", " ").split()), result.stderr
    assert not work.exists()  # nothing started: no anvil, no devnet, not even the work directory


def test_bench_cli_takes_a_block_gas_limit_and_refuses_a_bad_one_before_starting(tmp_path: Path) -> None:
    shown = CliRunner().invoke(app, ["bench", "--help"])
    assert shown.exit_code == 0 and "--block-gas-limit" in shown.stdout
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["bench", "--block-gas-limit", "5", "--work-dir", str(work)])
    assert result.exit_code == 2, result.output
    assert "--block-gas-limit must be from" in result.stderr
    assert not work.exists()  # nothing started: no anvil, no devnet, not even the work directory


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.mark.integration
def test_bench_at_tiny_sizes_writes_every_figure(tmp_path: Path) -> None:
    out, chart, work = tmp_path / "results.json", tmp_path / "results.png", tmp_path / "work"
    profiles = tmp_path / "profiles"
    result = CliRunner().invoke(
        app,
        [
            "bench", "--json", "--out", str(out), "--plot", str(chart), "--work-dir", str(work),
            "--nodes", "4", "--batch-sizes", "1,2", "--settlements", "3", "--paced-s", "1",
            "--transfers", "20", "--sweep-settlements", "2", "--payments-holds", "10", "--skip-postgres",
            "--report-batch-sizes", "1", "--batch-axis-settlements", "2", "--profile-dir", str(profiles),
            "--block-time", "0.2", "--finality-depth", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert json.loads(result.stdout) == results

    for key in ("dvp_per_s", "two_transfer_ceiling_per_s", "ratio", "htlc_gas_per_leg"):
        assert _is_number(results[key]), key
    assert results["ratio"] == pytest.approx(
        results["dvp_per_s"] / results["two_transfer_ceiling_per_s"], rel=0.05, abs=0.002
    )
    latency = results["latency_ms"]
    assert all(_is_number(latency[p]) for p in ("p50", "p95", "p99"))
    assert latency["p50"] <= latency["p95"] <= latency["p99"]
    gas = results["gas"]
    for key in ("lock", "lock_with_permit", "settle_item_batch_1", "settle_item_batch_100", "per_asset_leg"):
        assert _is_number(gas[key]), key
    assert gas["per_asset_leg"] == gas["lock_with_permit"] + gas["settle_item_batch_100"]
    parts = results["baselines"]["htlc_parts"]
    assert results["htlc_gas_per_leg"] == parts["approve"] + parts["new_contract"] + parts["withdraw"]
    assert _is_number(results["approve_transfer_from_gas"])
    payments = results["payments"]
    assert _is_number(payments["sqlite_holds_per_s"])
    assert _is_number(payments["sqlite_holds_single_call_per_s"])
    (sqlite,) = payments["details"]
    placed = sqlite["batch_place_s"] + sqlite["settle_s"]
    assert payments["sqlite_holds_per_s"] == pytest.approx(sqlite["holds"] / placed, rel=0.01)
    assert payments["postgres_holds_per_s"] is None and payments["pgbench_tps"] is None

    sweep = results["scaling"]["batch_sizes"]
    assert [p["batch_size"] for p in sweep] == [1, 2]
    assert all(p["settlements"] == 2 and _is_number(p["settled_per_s"]) for p in sweep)
    (four,) = results["scaling"]["nodes"]
    assert four["nodes"] == 4 and four["max_batch"] == 100 and four["burst"]["settlements"] == 3
    # No --block-gas-limit: the run records none asked for, the devnet row the chain's (anvil's default).
    assert results["run"]["block_gas_limit"] is None and four["block_gas_limit"] == 30_000_000
    # --block-time / --finality-depth: in the run section as asked, in every row as the devnet had it.
    assert results["run"]["block_time_s"] == 0.2 and results["run"]["finality_depth"] == 3
    assert four["block_time_s"] == 0.2 and four["finality_depth"] == 3
    (one_per_report,) = results["scaling"]["report_batch_sizes"]
    assert one_per_report["nodes"] == 4 and one_per_report["max_batch"] == 1
    assert one_per_report["burst"]["settlements"] == 2  # --batch-axis-settlements, not --settlements
    assert one_per_report["block_time_s"] == 0.2 and one_per_report["finality_depth"] == 3
    assert _is_number(one_per_report["dvp_per_s"])

    # py-spy sampled node-0 and the ledger during each burst, and the ledger bench's server.
    for raw in ("devnet-4/node-0.txt", "devnet-4/payments.txt", "devnet-4-batch-1/node-0.txt"):
        assert hot_spots(profiles / raw), raw
    assert hot_spots(profiles / "payments-sqlite.txt")
    assert "hot spots of node-0" in result.stderr

    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = load_state(work / "devnet-4")
    assert state.processes and not any(pid_alive(p.pid) for p in state.processes)


@pytest.mark.integration
@pytest.mark.postgres
def test_pgbench_reports_tps_on_a_scratch_database() -> None:
    from sqlalchemy import create_engine, text

    from crossdvp.bench.payments import pgbench_binary, run_pgbench
    from tests.fixtures.databases import postgres_server_url

    if pgbench_binary() is None:
        pytest.skip("pgbench is not installed")
    server = postgres_server_url()
    engine = create_engine(server, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required when CI=true: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    finally:
        engine.dispose()
    assert run_pgbench(server, clients=1, seconds=1) > 0


def test_hot_spots_merge_lines_by_function_and_leave_out_idle_waits(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "run (a/node.py:10);decide (a/node.py:20);commit (sqlalchemy/engine.py:5) 6\n"
        "run (a/node.py:10);decide (a/node.py:21) 2\n"
        "run (a/node.py:10);encode (eth_abi/encoding.py:9) 2\n"
        "run (a/node.py:10);select (selectors.py:1) 90\n"
    )
    spots = {s.function: s for s in hot_spots(raw)}
    assert list(spots) == [
        "commit (sqlalchemy/engine.py)",
        "decide (a/node.py)",
        "encode (eth_abi/encoding.py)",
    ]
    assert spots["commit (sqlalchemy/engine.py)"].self_share == pytest.approx(0.6)
    assert spots["decide (a/node.py)"].self_share == pytest.approx(0.2)
    assert spots["decide (a/node.py)"].total_share == pytest.approx(0.8)
    with_idle = {s.function: s for s in hot_spots(raw, include_idle=True)}
    assert with_idle["select (selectors.py)"].self_share == pytest.approx(0.9)
