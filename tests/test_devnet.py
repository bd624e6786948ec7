"""`crossdvp devnet up/status/down`: a real devnet (anvil, payments service, 4 nodes) in a temporary
directory — its state file, a refused second `up`, status, and `down` stopping exactly its PIDs."""

from __future__ import annotations

import json
import math
import stat
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdvp.chain.anvil import running_anvil
from crossdvp.chain.client import EvmClient
from crossdvp.chain.deploy import AssetNetwork
from crossdvp.cli import app
from crossdvp.client import Desk
from crossdvp.devnet import (
    ChainState,
    DevnetError,
    DevnetOptions,
    DevnetRunningError,
    DevnetState,
    devnet_down,
    devnet_status,
    devnet_up,
    load_state,
)
from crossdvp.devnet._toml import dumps
from crossdvp.devnet.nodeconfig import NodeTiming, poll_interval_ms_for
from crossdvp.devnet.state import ProcessRecord
from crossdvp.devnet.up import MIN_BLOCK_TIME_S
from crossdvp.errors import ConfigError
from crossdvp.oracle.config import load_config
from crossdvp.process import pid_alive
from crossdvp.settlement.terms import Decision

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetState]:
    """A devnet this module may stop (the session's `devnet` fixture is shared with other tests)."""
    directory = tmp_path_factory.mktemp("own-devnet")
    try:
        yield devnet_up(DevnetOptions(directory))
    finally:
        devnet_down(directory)


def test_up_writes_a_state_file_with_every_endpoint_address_pid_and_key_path(own_devnet: DevnetState) -> None:
    state = load_state(own_devnet.directory)
    assert state.complete and state.chain is not None and state.payments is not None and state.don is not None
    assert [p.name for p in state.processes] == ["anvil", "payments", "node-0", "node-1", "node-2", "node-3"]
    assert all(p.alive() for p in state.processes)
    assert state.don.f == 1 and len(state.don.signers) == 4
    assert set(state.parties) == {"seller", "buyer"}
    raw = json.loads((own_devnet.directory / "devnet.json").read_text())
    assert raw["chain"]["contracts"]["escrow"] == state.chain.asset.escrow
    assert raw["chain"]["block_gas_limit"] is None and state.chain.block_gas_limit is None  # anvil's default
    assert raw["payments"]["url"].startswith("http://127.0.0.1:")
    # Secrets live in owner-only files; the state file names them and holds none.
    secret_files = [state.password_file, state.payments.admin_key_file]
    secret_files += [n.keystore for n in state.nodes] + [n.payments_key_file for n in state.nodes]
    secret_files += [p.chain_keystore for p in state.parties.values()]
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.read_text().strip() not in json.dumps(raw)
    # Each node's config is valid for the node itself and names its own keystore.
    for node in state.nodes:
        config = load_config(node.config, env={})
        assert config.member.signer == node.signer
        assert config.key.keystore == node.keystore


def test_status_shows_live_processes_height_and_opening_balances(own_devnet: DevnetState) -> None:
    report = devnet_status(own_devnet.directory)
    assert report.running and report.errors == ()
    assert all(p.alive for p in report.processes)
    assert report.block_number is not None and report.block_number > 0
    balances = {b.name: b for b in report.parties}
    assert balances["seller"].shares_minor == DevnetOptions(own_devnet.directory).seller_shares_minor
    assert balances["buyer"].cash["USD"] == (DevnetOptions(own_devnet.directory).buyer_cash_minor, 0)
    result = CliRunner().invoke(app, ["devnet", "status", "--dir", str(own_devnet.directory), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["running"] is True


def test_a_second_up_while_one_runs_is_refused(own_devnet: DevnetState) -> None:
    pids = [p.pid for p in own_devnet.processes]
    with pytest.raises(DevnetRunningError, match="already running"):
        devnet_up(DevnetOptions(own_devnet.directory))
    result = CliRunner().invoke(app, ["devnet", "up", "--dir", str(own_devnet.directory)])
    assert result.exit_code != 0
    assert "already running" in result.stderr
    # Nothing was started or replaced: the same processes, the same state.
    assert [p.pid for p in load_state(own_devnet.directory).processes] == pids


def test_down_stops_exactly_the_recorded_pids(own_devnet: DevnetState) -> None:
    """Runs last in this module: it stops the module's devnet."""
    pids = [p.pid for p in own_devnet.processes]
    result = CliRunner().invoke(app, ["devnet", "down", "--dir", str(own_devnet.directory)])
    assert result.exit_code == 0, result.output
    assert not any(pid_alive(pid) for pid in pids)
    state = load_state(own_devnet.directory)
    assert state.stopped_at_s is not None
    assert not devnet_status(own_devnet.directory).running
    again = CliRunner().invoke(app, ["devnet", "down", "--dir", str(own_devnet.directory)])
    assert again.exit_code == 0 and "was not running" in again.stdout


def test_a_failed_up_leaves_nothing_running(tmp_path: Path) -> None:
    # A ledger database nobody listens on: anvil and the contracts come up, the ledger cannot.
    options = DevnetOptions(tmp_path, database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    with pytest.raises(DevnetError, match="devnet up failed"):
        devnet_up(options)
    state = load_state(tmp_path)
    assert not state.complete
    assert [p.name for p in state.processes] == ["anvil"]
    assert not any(pid_alive(p.pid) for p in state.processes)


# -- no processes ---------------------------------------------------------------------------------


def test_options_reject_a_don_too_small_to_tolerate_a_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        DevnetOptions(tmp_path, nodes=3)
    result = CliRunner().invoke(app, ["devnet", "up", "--nodes", "2", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "--nodes must be at least 4" in result.stderr
    assert not (tmp_path / "devnet.json").exists()


@pytest.mark.parametrize("value", [5, 999_999, 2**63, 0, -30_000_000, True, 3.0e7, "30000000"])
def test_options_reject_a_block_gas_limit_out_of_range_or_not_an_int(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="--block-gas-limit must be"):
        DevnetOptions(tmp_path, block_gas_limit=value)  # type: ignore[arg-type]


def test_options_accept_a_block_gas_limit_in_range_and_pass_it_to_anvil(tmp_path: Path) -> None:
    assert DevnetOptions(tmp_path).anvil_args(10) == ["--accounts", "10"]  # anvil's default limit
    assert DevnetOptions(tmp_path, block_gas_limit=1_000_000).anvil_args(11) == [
        "--accounts", "11", "--gas-limit", "1000000",
    ]  # fmt: skip
    assert DevnetOptions(tmp_path, block_gas_limit=2**63 - 1).block_gas_limit == 2**63 - 1


def test_anvil_started_with_the_options_args_mines_blocks_of_that_gas_limit(tmp_path: Path) -> None:
    args = DevnetOptions(tmp_path, block_gas_limit=300_000_000).anvil_args(10)
    assert args[-2:] == ["--gas-limit", "300000000"]
    with running_anvil(tmp_path, extra_args=args) as node:
        latest = EvmClient(node.rpc_url).request("eth_getBlockByNumber", ["latest", False])
    assert int(latest["gasLimit"], 16) == 300_000_000


def test_devnet_up_cli_takes_a_block_gas_limit_and_refuses_a_bad_one_before_starting(tmp_path: Path) -> None:
    shown = CliRunner().invoke(app, ["devnet", "up", "--help"])
    assert shown.exit_code == 0 and "--block-gas-limit" in shown.stdout and "30,000,000" in shown.stdout
    result = CliRunner().invoke(app, ["devnet", "up", "--block-gas-limit", "5", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("crossdvp devnet up: --block-gas-limit must be from 1,000,000")
    assert "got 5" in result.stderr
    assert not (tmp_path / "devnet.json").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("value", [0.049, 0, -1, math.nan, math.inf, True, "0.1", None])
def test_options_reject_a_block_time_below_the_floor_or_not_a_number(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match=r"--block-time must be .*seconds.*got") as raised:
        DevnetOptions(tmp_path, block_time_s=value)  # type: ignore[arg-type]
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("value", [MIN_BLOCK_TIME_S, 0.1, 1, 2, 2.5])
def test_options_accept_a_whole_or_fractional_block_time(tmp_path: Path, value: float) -> None:
    assert DevnetOptions(tmp_path, block_time_s=value).block_time_s == value


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_options_reject_a_finality_depth_that_is_not_a_positive_int(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="--finality-depth must be an integer >= 1"):
        DevnetOptions(tmp_path, finality_depth=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("block_time_s", "timing", "expected_ms"),
    [
        (1, NodeTiming(), 250),  # the default stays
        (2, NodeTiming(), 250),  # never slower than the timing asks
        (0.1, NodeTiming(), 25),
        (0.05, NodeTiming(), 12),
        (0.1, NodeTiming(poll_interval_ms=15), 15),  # an explicit smaller interval is kept
        (1, NodeTiming(poll_interval_ms=100), 100),
    ],
)
def test_the_nodes_poll_a_few_times_per_block(
    block_time_s: float, timing: NodeTiming, expected_ms: int
) -> None:
    assert poll_interval_ms_for(timing, block_time_s) == expected_ms


def test_the_node_configs_get_the_poll_interval_of_the_block_time(tmp_path: Path) -> None:
    fast = DevnetOptions(tmp_path, block_time_s=0.1, timing=NodeTiming(max_batch=7))
    assert fast.node_timing == NodeTiming(poll_interval_ms=25, max_batch=7)
    assert DevnetOptions(tmp_path).node_timing == NodeTiming()


def test_devnet_up_cli_takes_a_fractional_block_time_and_refuses_a_bad_one_before_starting(
    tmp_path: Path,
) -> None:
    shown = CliRunner().invoke(app, ["devnet", "up", "--help"])
    assert shown.exit_code == 0 and "--block-time" in shown.stdout and "0.05" in shown.stdout
    for bad in ("0.01", "nan", "-1"):
        result = CliRunner().invoke(app, ["devnet", "up", "--block-time", bad, "--dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("crossdvp devnet up: --block-time must be"), result.stderr
    not_a_number = CliRunner().invoke(app, ["devnet", "up", "--block-time", "fast", "--dir", str(tmp_path)])
    assert not_a_number.exit_code == 2
    assert not (tmp_path / "devnet.json").exists() and not (tmp_path / "logs").exists()


def _chain_state(block_gas_limit: int | None = None) -> ChainState:
    asset = AssetNetwork(
        chain_id=31337,
        registry="0x" + "11" * 20,
        token="0x" + "22" * 20,
        escrow="0x" + "33" * 20,
        forwarder="0x" + "44" * 20,
        deployed_at_block=3,
    )
    return ChainState(
        rpc_url="http://127.0.0.1:8545",
        block_time_s=1,
        finality_depth=2,
        asset=asset,
        admin_address="0x" + "55" * 20,
        admin_keystore=Path("/tmp/admin.keystore.json"),
        token_symbol="FUND",
        token_decimals=18,
        block_gas_limit=block_gas_limit,
    )


def test_state_round_trips_the_block_gas_limit_and_loads_a_state_file_without_it(tmp_path: Path) -> None:
    for chain in (_chain_state(block_gas_limit=300_000_000), _chain_state()):
        state = DevnetState(directory=tmp_path, created_at_s=1, password_file=tmp_path / "pw", chain=chain)
        raw = json.loads(json.dumps(state.to_dict()))
        assert raw["chain"]["block_gas_limit"] == chain.block_gas_limit
        assert DevnetState.from_dict(raw) == state
    # A devnet.json written before the option existed has no key: anvil's default, None.
    del raw["chain"]["block_gas_limit"]
    old = DevnetState.from_dict(raw)
    assert old.chain is not None and old.chain.block_gas_limit is None


def test_state_round_trips_a_fractional_block_time_and_loads_an_int_one(tmp_path: Path) -> None:
    chain = replace(_chain_state(), block_time_s=0.1)
    state = DevnetState(directory=tmp_path, created_at_s=1, password_file=tmp_path / "pw", chain=chain)
    raw = json.loads(json.dumps(state.to_dict()))
    assert raw["chain"]["block_time_s"] == 0.1
    assert DevnetState.from_dict(raw) == state
    # A devnet.json written when the block time was an int.
    raw["chain"]["block_time_s"] = 2
    old = DevnetState.from_dict(raw)
    assert old.chain is not None and old.chain.block_time_s == 2.0
    assert isinstance(old.chain.block_time_s, float)


def test_up_refuses_to_clear_a_directory_that_is_not_a_devnet(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "precious").write_text("mine")
    result = CliRunner().invoke(app, ["devnet", "up", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "is not a devnet directory but contains keys" in result.stderr
    assert (tmp_path / "keys" / "precious").read_text() == "mine"
    assert not (tmp_path / "devnet.json").exists()


def test_no_devnet_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no devnet in"):
        load_state(tmp_path)
    result = CliRunner().invoke(app, ["devnet", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "no devnet in" in result.stderr


def test_a_dead_pid_is_not_alive_and_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    import os

    me = ProcessRecord(name="me", pid=os.getpid(), start_ticks=None, log_path=tmp_path / "x.log")
    assert me.alive()
    # Same PID, another start time: a PID the OS gave to another process must never be signalled.
    assert not ProcessRecord(name="other", pid=os.getpid(), start_ticks=1, log_path=tmp_path).alive()


def test_toml_writer_round_trips_node_config_shapes() -> None:
    data = {
        "node": {"index": 0, "name": "node-0", "data_dir": Path("/tmp/x"), "dev": False},
        "don": {"f": 1, "members": [{"name": "a", "url": "http://x", "signer": "0x" + "11" * 20}]},
        "networks": [{"kind": "evm", "finality": 2, "transmitter_key_env": None}, {"kind": "payments"}],
    }
    parsed = tomllib.loads(dumps(data, comment="hello"))
    assert parsed["node"] == {"index": 0, "name": "node-0", "data_dir": "/tmp/x", "dev": False}
    assert parsed["don"]["members"][0]["signer"] == "0x" + "11" * 20
    assert parsed["networks"] == [{"kind": "evm", "finality": 2}, {"kind": "payments"}]


# -- sub-second blocks ----------------------------------------------------------------------------


def test_a_devnet_with_tenth_of_a_second_blocks_comes_up_mines_fast_and_settles_a_dvp(tmp_path: Path) -> None:
    """anvil mines on a 0.1 s interval from the start (deployment waits for receipts as blocks come),
    the nodes poll every 25 ms, and a DvP settles end to end. The block-rate bound is loose (10 a
    second asked, 4 required) so that a loaded machine does not make it flaky."""
    progress: list[str] = []
    try:
        state = devnet_up(DevnetOptions(tmp_path, block_time_s=0.1), progress.append)
        assert state.chain is not None and state.chain.block_time_s == 0.1
        assert json.loads((tmp_path / "devnet.json").read_text())["chain"]["block_time_s"] == 0.1
        assert any("chain mining a block every 0.1s" in line for line in progress), progress
        names = [p.name for p in state.processes]
        assert names == ["anvil", "payments", *(f"node-{i}" for i in range(4))]
        anvil = state.process("anvil")
        assert anvil is not None
        argv = Path(f"/proc/{anvil.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--block-time") + 1] == b"0.1"  # interval mining from the start
        for node in state.nodes:
            assert tomllib.loads(node.config.read_text())["node"]["poll_interval_ms"] == 25
        evm = EvmClient(state.chain.rpc_url)
        first = evm.block_number()
        time.sleep(1.0)
        assert evm.block_number() - first >= 4  # about 10 at 0.1 s blocks
        with Desk.from_devnet(tmp_path) as desk:
            terms = desk.propose(
                asset_amount=10**18,
                cash_amount=10_000,
                currency="USD",
                buyer="buyer",
                seller="seller",
                deadline_s=desk.deadline_in(60),
            )
            outcome = desk.settle(terms, buyer="buyer", seller="seller", timeout_s=30)
        assert outcome.decision is Decision.SETTLE
        chain_leg, cash_leg = outcome.status.legs
        assert chain_leg.state == "settled" and cash_leg.state == "settled"
        before, after = outcome.balances_before["buyer"], outcome.balances_after["buyer"]
        assert after.shares_minor - before.shares_minor == 10**18
    finally:
        devnet_down(tmp_path)
    assert not any(pid_alive(p.pid) for p in load_state(tmp_path).processes)
