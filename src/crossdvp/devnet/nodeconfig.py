"""The oracle node's TOML config (schema: crossdvp.oracle.config), as the devnet and `crossdvp deploy`
write it. Secrets are never written: the node reads its keystore password, transmitter key and
ledger API key from the environment variables the config names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossdvp.chain.deploy import AssetNetwork
from crossdvp.devnet._toml import dumps
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

__all__ = [
    "KEY_PASSWORD_ENV",
    "PAYMENTS_API_KEY_ENV",
    "TRANSMITTER_KEY_ENV",
    "NodeTiming",
    "don_section",
    "evm_network_section",
    "node_config_toml",
    "payments_network_section",
    "poll_interval_ms_for",
    "workflow_section",
]

KEY_PASSWORD_ENV = "CROSSDVP_NODE_KEY_PASSWORD"  # noqa: S105 (a variable name)
TRANSMITTER_KEY_ENV = "CROSSDVP_NODE_TRANSMITTER_KEY"
PAYMENTS_API_KEY_ENV = "CROSSDVP_NODE_PAYMENTS_API_KEY"


@dataclass(frozen=True, slots=True)
class NodeTiming:
    """How fast a node polls, rotates leaders and re-checks deliveries, and how many decisions a
    report carries. The devnet's timings are short so that a demo settles in seconds; the node's own
    defaults suit real networks."""

    poll_interval_ms: int = 250
    round_ms: int = 1000
    stagger_ms: int = 1000
    delivery_recheck_ms: int = 1000
    peer_timeout_ms: int = 800
    max_batch: int = 100


def poll_interval_ms_for(timing: NodeTiming, block_time_s: float) -> int:
    """The node's poll interval on a chain that mines a block every `block_time_s` seconds: about
    four polls a block, so a node sees a block (and a lock's confirmations) within a quarter of a
    block time; never slower than `timing` asks, never below the node's floor of 10 ms.

    1 s blocks keep the default 250 ms; 0.1 s blocks poll every 25 ms, 0.05 s every 12 ms.
    """
    return min(timing.poll_interval_ms, max(10, round(block_time_s * 1000) // 4))


def don_section(don: DonConfig, members: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """[don] with members (name, url) in DON order, each with its signer from `don`."""
    return {
        "don_id": don.don_id,
        "config_version": don.config_version,
        "f": don.f,
        "members": [
            {"name": name, "url": url, "signer": signer}
            for (name, url), signer in zip(members, don.signers, strict=True)
        ],
    }


def workflow_section(workflow: WorkflowIdentity) -> dict[str, Any]:
    return {
        "cid": "0x" + workflow.workflow_cid.hex(),
        "name": workflow.workflow_name,
        "owner": workflow.workflow_owner,
        "report_id": "0x" + workflow.report_id.hex(),
    }


def evm_network_section(
    rpc_url: str, asset: AssetNetwork, *, finality: int | str, transmitter_key_env: str | None
) -> dict[str, Any]:
    return {
        "kind": "evm",
        "name": "chain",
        "rpc_url": rpc_url,
        "chain_id": asset.chain_id,
        "escrow": asset.escrow,
        "forwarder": asset.forwarder,
        "finality": finality,
        "start_block": asset.deployed_at_block,
        "transmitter_key_env": transmitter_key_env,
    }


def payments_network_section(url: str, ledger_id: str, *, wait_s: int = 1) -> dict[str, Any]:
    return {
        "kind": "payments",
        "name": "payments",
        "url": url,
        "ledger_id": ledger_id,
        "api_key_env": PAYMENTS_API_KEY_ENV,
        "wait_s": wait_s,
    }


def node_config_toml(
    *,
    index: int,
    name: str,
    port: int,
    data_dir: Path,
    keystore: Path,
    don: dict[str, Any],
    workflow: dict[str, Any],
    networks: Sequence[dict[str, Any]],
    timing: NodeTiming,
) -> str:
    return dumps(
        {
            "node": {
                "index": index,
                "name": name,
                "host": "127.0.0.1",
                "port": port,
                "data_dir": data_dir,
                "poll_interval_ms": timing.poll_interval_ms,
                "round_ms": timing.round_ms,
                "stagger_ms": timing.stagger_ms,
                "delivery_recheck_ms": timing.delivery_recheck_ms,
                "peer_timeout_ms": timing.peer_timeout_ms,
                "max_batch": timing.max_batch,
            },
            "key": {"keystore": keystore, "password_env": KEY_PASSWORD_ENV},
            "don": don,
            "workflow": workflow,
            "networks": list(networks),
        },
        comment=f"crossdvp oracle node {name} (written by crossdvp; secrets come from the environment)",
    )
