"""Node configuration: TOML + environment overrides, errors that name the key, key loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crossdvp.oracle.config import EvmNetworkConfig, PaymentsNetworkConfig, load_config, parse_config
from crossdvp.oracle.errors import KeyLoadError, NodeConfigError
from crossdvp.oracle.keys import generate_keystore
from tests.oracle.harness import node_key


def _config(**overrides: Any) -> dict[str, Any]:
    keys = [node_key(i) for i in range(4)]
    data: dict[str, Any] = {
        "node": {"index": 1, "port": 9001},
        "don": {
            "don_id": 7,
            "config_version": 1,
            "f": 1,
            "members": [
                {"name": f"n{i}", "url": f"http://127.0.0.1:{9000 + i}", "signer": k.address}
                for i, k in enumerate(keys)
            ],
        },
        "workflow": {"cid": "0x" + "ab" * 32, "name": "crossdvp-settlement", "owner": "0x" + "44" * 20},
        "networks": [
            {
                "kind": "evm",
                "rpc_url": "http://127.0.0.1:8545",
                "chain_id": 31337,
                "escrow": "0x" + "55" * 20,
                "forwarder": "0x" + "66" * 20,
                "finality": "finalized",
            },
            {"kind": "payments", "url": "http://127.0.0.1:8600"},
        ],
    }
    data.update(overrides)
    return data


def test_parses_sections_and_derives_don_and_workflow() -> None:
    config = parse_config(_config(), {})
    assert config.node_name == "n1"
    assert config.don_config().signers == tuple(node_key(i).address for i in range(4))
    assert config.workflow_identity().report_id == bytes.fromhex("0001")
    evm, payments = config.networks
    assert isinstance(evm, EvmNetworkConfig) and evm.network == "eip155:31337" and evm.finality == "finalized"
    assert isinstance(payments, PaymentsNetworkConfig) and payments.network == "payments:crossdvp-payments"


def test_environment_overrides_every_section() -> None:
    env = {
        "CROSSDVP_NODE_NODE_PORT": "9555",
        "CROSSDVP_NODE_NETWORKS_0_RPC_URL": "http://127.0.0.1:9999",
        "CROSSDVP_NODE_NETWORKS_0_FINALITY": "3",
        "CROSSDVP_NODE_KEY_PRIVATE_KEY": "0x" + node_key(1).private_key.hex(),
        "UNRELATED": "x",
    }
    config = parse_config(_config(), env)
    assert config.node.port == 9555
    evm = config.networks[0]
    assert isinstance(evm, EvmNetworkConfig) and evm.rpc_url == "http://127.0.0.1:9999" and evm.finality == 3
    assert config.load_key(env).address == node_key(1).address


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (lambda d: d["don"].update(f=2), "members"),
        (lambda d: d["node"].update(index=4), "node.index"),
        (lambda d: d["node"].update(bogus=1), "node.bogus"),
        (lambda d: d["workflow"].update(cid="0x12"), "cid"),
        (lambda d: d["networks"][0].update(finality=-1), "finality"),
        (lambda d: d["don"]["members"][0].update(signer="nope"), "signer"),
    ],
)
def test_invalid_values_are_named(mutate: Any, names: str) -> None:
    data = _config()
    mutate(data)
    with pytest.raises(NodeConfigError, match=names):
        parse_config(data, {})


def test_plain_private_key_in_the_file_needs_dev() -> None:
    key_hex = "0x" + node_key(1).private_key.hex()
    with pytest.raises(NodeConfigError, match="dev = true"):
        parse_config(_config(key={"private_key": key_hex}), {})
    config = parse_config(_config(key={"private_key": key_hex, "dev": True}), {})
    assert config.load_key({}).address == node_key(1).address


def test_key_must_be_this_members_signer() -> None:
    config = parse_config(_config(), {"CROSSDVP_NODE_KEY_PRIVATE_KEY": "0x" + node_key(2).private_key.hex()})
    with pytest.raises(NodeConfigError, match=r"don.members\[1\].signer"):
        config.load_key({})


def test_keystore_with_password_from_env(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    generate_keystore(path, "s3cret", private_key=node_key(1).private_key)
    config = parse_config(_config(key={"keystore": str(path)}), {})
    with pytest.raises(NodeConfigError, match="CROSSDVP_NODE_KEY_PASSWORD"):
        config.load_key({})
    with pytest.raises(KeyLoadError, match="wrong password"):
        config.load_key({"CROSSDVP_NODE_KEY_PASSWORD": "other"})
    assert config.load_key({"CROSSDVP_NODE_KEY_PASSWORD": "s3cret"}).address == node_key(1).address
    with pytest.raises(KeyLoadError, match="refusing to overwrite"):
        generate_keystore(path, "s3cret")


def test_load_config_reports_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node\nindex = 1")
    with pytest.raises(NodeConfigError, match="not valid TOML"):
        load_config(path, {})
    with pytest.raises(NodeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {})


def test_the_documented_example_config_is_valid(tmp_path: Path) -> None:
    from crossdvp.oracle.config import EXAMPLE_CONFIG

    path = tmp_path / "node.toml"
    path.write_text(EXAMPLE_CONFIG)
    config = load_config(
        path, {"CROSSDVP_NODE_TRANSMITTER_KEY": "0x01", "CROSSDVP_NODE_PAYMENTS_API_KEY": "k"}
    )
    assert [n.network for n in config.networks] == ["eip155:31337", "payments:crossdvp-payments"]
    assert config.key.keystore == Path("keys/node-0.json")
    assert config.don_config().f == 1
