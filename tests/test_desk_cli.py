"""The desk's commands: `crossdvp settle` / `status` on a real devnet, `crossdvp deploy` on anvil.
Bad input: one line on stderr, exit 2, and nothing registered or locked."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient
from crossdvp.cli import app
from crossdvp.client import Desk
from crossdvp.desk_cli import parse_duration
from crossdvp.devnet import DevnetState
from crossdvp.errors import ConfigError


def _settle(devnet: DevnetState, *extra: str, **override: str) -> list[str]:
    options = {
        "--asset-amount": "1.5",
        "--cash-amount": "150.25",
        "--currency": "USD",
        "--buyer": "buyer",
        "--seller": "seller",
        "--deadline": "60s",
    }
    options.update({f"--{k.replace('_', '-')}": v for k, v in override.items()})
    argv = ["settle", "--dir", str(devnet.directory)]
    for key, value in options.items():
        argv += [key, value]
    return argv + list(extra)


@pytest.mark.integration
def test_settle_json_reports_the_outcome_and_status_shows_it_again(devnet: DevnetState) -> None:
    result = CliRunner().invoke(app, _settle(devnet, "--json"))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)  # stdout is the JSON document alone
    assert outcome["outcome"] == "SETTLE"
    legs = outcome["status"]["legs"]
    assert legs[0]["amount_minor"] == 15 * 10**17 and legs[1]["amount_minor"] == 15_025
    assert outcome["status"]["forwarder_tx"] and len(outcome["status"]["signers"]) == 2
    sid = outcome["settlement_id"]
    shown = CliRunner().invoke(app, ["status", sid, "--dir", str(devnet.directory), "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert status["stage"] == "final" and status["decision"] == "SETTLE"
    assert status["legs"][0]["lock_ref"] == legs[0]["lock_ref"]
    human = CliRunner().invoke(app, ["status", sid, "--dir", str(devnet.directory)])
    assert human.exit_code == 0 and "forwarder tx" in human.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"buyer": "mallory"}, "buyer: unknown party 'mallory'"),
        ({"asset_amount": "ten"}, "asset amount must be a number"),
        ({"asset_amount": "0"}, "asset amount must be positive"),
        ({"cash_amount": "-3"}, "cash amount must be positive"),
        ({"cash_amount": "10.001"}, "cash amount 10.001 has more than 2 decimal places"),
        ({"asset_amount": "0.0000000000000000001"}, "more than 18 decimal places"),
        ({"deadline": "0s"}, "deadline must be a positive duration"),
        ({"deadline": "-5s"}, "deadline must be a duration"),
        ({"deadline": "2s"}, "is not at least 5s in the future"),
        ({"asset_amount": "1000000"}, "seller: insufficient fund shares"),
        ({"cash_amount": "99999999"}, "buyer: insufficient cash"),
        ({"currency": "EUR"}, "has no EUR account"),
    ],
)
def test_settle_refuses_bad_input_in_one_line_with_nothing_done(
    devnet: DevnetState,
    untouched: Callable[[], None],
    override: dict[str, str],
    message: str,
) -> None:
    result = CliRunner().invoke(app, _settle(devnet, **override))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossdvp settle: ")
    assert message in lines[0]
    untouched()


def test_settle_without_a_devnet_says_how_to_start_one(tmp_path: Path) -> None:
    argv = ["settle", "--dir", str(tmp_path), "--asset-amount", "1", "--cash-amount", "1"]
    result = CliRunner().invoke(app, [*argv, "--buyer", "buyer", "--seller", "seller"])
    assert result.exit_code == 2
    assert "no devnet in" in result.stderr and "crossdvp devnet up" in result.stderr


@pytest.mark.integration
def test_status_rejects_a_malformed_id_and_reports_an_unknown_one(devnet: DevnetState) -> None:
    bad = CliRunner().invoke(app, ["status", "0x1234", "--dir", str(devnet.directory)])
    assert bad.exit_code == 2 and "64 hex characters" in bad.stderr
    unknown = CliRunner().invoke(app, ["status", "0x" + "ab" * 32, "--dir", str(devnet.directory)])
    assert unknown.exit_code == 1 and "no node knows settlement" in unknown.stderr


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("5m", 300), ("1h", 3600), ("90", 90)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1.5m", "0", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="deadline must be"):
        parse_duration(text)


# -- deploy ---------------------------------------------------------------------------------------

_SIGNERS = ["0x" + f"{i:040x}" for i in range(1, 5)]


def _deploy_toml(tmp_path: Path, deployer: str) -> Path:
    path = tmp_path / "deploy.toml"
    signers = ", ".join(f'"{s}"' for s in _SIGNERS)
    path.write_text(
        f"""
[deployer]
{deployer}

[don]
don_id = 7
config_version = 1
f = 1
signers = [{signers}]

[workflow]
cid = "0x{"ab" * 32}"
name = "crossdvp-dvp"

[escrow]
grace_s = 3600

[kyc]
allow = ["0x{"12" * 20}"]

[output]
node_config = "network.toml"
finality = 3
"""
    )
    return path


@pytest.mark.integration
def test_deploy_configures_contracts_and_writes_the_node_network_section(
    anvil: Anvil, tmp_path: Path
) -> None:
    config = _deploy_toml(tmp_path, 'private_key_env = "TEST_DEPLOYER_KEY"')
    env = {"TEST_DEPLOYER_KEY": "0x" + anvil.dev_keys[0].hex()}
    result = CliRunner().invoke(
        app, ["deploy", "--rpc-url", anvil.rpc_url, "--config", str(config), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    written = tomllib.loads((tmp_path / "network.toml").read_text())
    network = written["networks"][0]
    assert network["kind"] == "evm" and network["escrow"] == summary["escrow"] and network["finality"] == 3
    assert written["workflow"]["cid"] == "0x" + "ab" * 32
    evm = EvmClient(anvil.rpc_url)
    from crossdvp.chain.deploy import AssetNetwork

    bound = AssetNetwork.from_dict(summary).bind(evm)
    assert bound.escrow.forwarder() == summary["forwarder"]
    assert bound.registry.is_allowed("0x" + "12" * 20)
    assert len(evm.code(summary["escrow"])) > 0


@pytest.mark.parametrize(
    ("deployer", "env", "message"),
    [
        ('private_key = "0x' + "11" * 32 + '"', {}, "private_key is not accepted"),
        ('private_key_env = "UNSET_DEPLOYER_KEY"', {}, "UNSET_DEPLOYER_KEY (the deployer key) is not set"),
        ('keystore = "nope.json"', {}, "set CROSSDVP_DEPLOY_KEY_PASSWORD"),
        ('keystore = "nope.json"', {"CROSSDVP_DEPLOY_KEY_PASSWORD": "pw"}, "cannot read keystore"),
        ("", {}, "needs keystore"),
    ],
)
def test_deploy_never_takes_a_plain_key_and_says_what_is_missing(
    tmp_path: Path, deployer: str, env: dict[str, str], message: str
) -> None:
    config = _deploy_toml(tmp_path, deployer)
    result = CliRunner().invoke(
        app,
        ["deploy", "--rpc-url", "http://127.0.0.1:9", "--config", str(config)],
        env={"UNSET_DEPLOYER_KEY": None, **env},
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_desk_sdk_is_importable_from_the_package() -> None:
    assert Desk.__module__ == "crossdvp.client.desk"
