"""`crossdvp deploy`: the devnet's deployment step for a real network — deploy and configure the asset
network on any EVM JSON-RPC endpoint and write the part of the node config that names it.

deploy.toml:

    [deployer]                       # the key that deploys and administers the contracts
    keystore = "deployer.json"       # encrypted JSON keystore, password in $<password_env>
    password_env = "CROSSDVP_DEPLOY_KEY_PASSWORD"
    # or: private_key_env = "CROSSDVP_DEPLOY_PRIVATE_KEY"   (a variable holding 0x + 64 hex)

    [don]                            # the DON the forwarder will accept reports from
    don_id = 1
    config_version = 1
    f = 1
    signers = ["0x…", "0x…", "0x…", "0x…"]

    [workflow]
    cid = "0x…"                      # 32 bytes
    name = "crossdvp-dvp"
    owner = "0x…"                    # default: the deployer
    report_id = "0x0001"

    [escrow]
    grace_s = 86400                  # the reclaim window after a deadline

    [token]                          # optional
    name = "Tokenized Short-Term US Treasury Fund"
    symbol = "OUSG"

    [kyc]                            # optional: addresses to allow at once
    allow = ["0x…"]

    [output]
    node_config = "network.toml"     # written: [workflow] and [[networks]] for the nodes
    finality = 12                    # confirmation depth, or "finalized"
    transmitter_key_env = "CROSSDVP_NODE_TRANSMITTER_KEY"

Key material never appears on the command line or in the TOML: a keystore (password from the
environment) or an environment variable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossdvp.chain.client import EvmClient, normalize_address
from crossdvp.chain.deploy import DEFAULT_FUND_NAME, DEFAULT_FUND_SYMBOL, deploy_asset_network
from crossdvp.devnet._toml import dumps
from crossdvp.devnet.keyfiles import load_key
from crossdvp.devnet.nodeconfig import evm_network_section, workflow_section
from crossdvp.errors import ConfigError
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

__all__ = ["DeployPlan", "deploy_from_config", "load_deploy_config"]


@dataclass(frozen=True, slots=True)
class DeployPlan:
    deployer_key: bytes
    don: DonConfig
    workflow_cid: bytes
    workflow_name: str
    workflow_owner: str | None
    report_id: bytes
    grace_s: int
    token_name: str
    token_symbol: str
    kyc_allow: tuple[str, ...]
    node_config: Path
    finality: int | str
    transmitter_key_env: str | None


def _section(data: Mapping[str, Any], name: str, *, required: bool = True) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise ConfigError(f"deploy config: missing [{name}] section")
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"deploy config: {name} must be a table")
    return value


def _hex(value: object, length: int, where: str) -> bytes:
    text = str(value)
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"deploy config: {where} must be 0x-prefixed hex, got {text!r}") from None
    if len(raw) != length:
        raise ConfigError(f"deploy config: {where} must be {length} bytes, got {len(raw)}")
    return raw


def _int(section: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"deploy config: {where}.{key} must be a non-negative integer, got {value!r}")
    return value


def _deployer_key(section: Mapping[str, Any], base: Path, env: Mapping[str, str]) -> bytes:
    if "private_key" in section:
        raise ConfigError(
            "deploy config: [deployer] private_key is not accepted (keys never sit in plain text); "
            "use keystore + password_env or private_key_env"
        )
    if "keystore" in section:
        password_env = str(section.get("password_env", "CROSSDVP_DEPLOY_KEY_PASSWORD"))
        password = env.get(password_env)
        if not password:
            raise ConfigError(f"deploy config: set {password_env} to the password of the deployer keystore")
        return load_key(base / str(section["keystore"]), password)
    if "private_key_env" in section:
        variable = str(section["private_key_env"])
        value = env.get(variable)
        if not value:
            raise ConfigError(f"deploy config: environment variable {variable} (the deployer key) is not set")
        return _hex(value.strip(), 32, f"${variable}")
    raise ConfigError("deploy config: [deployer] needs keystore (+ password_env) or private_key_env")


def load_deploy_config(path: Path, env: Mapping[str, str] | None = None) -> DeployPlan:
    """Read and validate deploy.toml (relative paths are relative to its directory).

    Rejects (ConfigError naming the key): a missing file or bad TOML; a deployer without a keystore
    or key variable (or with a plain private key); a DON that is not valid (n >= 3f+1, distinct
    addresses); malformed workflow fields; a negative grace; a finality that is neither a depth nor
    "finalized"."""
    source = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read deploy config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    base = path.parent
    key = _deployer_key(_section(data, "deployer"), base, source)
    don_s = _section(data, "don")
    try:
        don = DonConfig(
            don_id=_int(don_s, "don_id", "don"),
            config_version=_int(don_s, "config_version", "don"),
            f=_int(don_s, "f", "don"),
            signers=tuple(
                normalize_address(str(s), field_name="don.signers") for s in don_s.get("signers", [])
            ),
        )
    except (SettlementError, ValueError) as exc:
        raise ConfigError(f"deploy config: [don] {exc}") from None
    wf = _section(data, "workflow")
    owner = wf.get("owner")
    output = _section(data, "output")
    finality = output.get("finality", 12)
    if not (
        finality == "finalized"
        or (isinstance(finality, int) and not isinstance(finality, bool) and finality >= 0)
    ):
        raise ConfigError(
            f'deploy config: output.finality must be a depth >= 0 or "finalized", got {finality!r}'
        )
    token = _section(data, "token", required=False)
    try:
        allow = tuple(
            normalize_address(str(a), field_name="kyc.allow")
            for a in _section(data, "kyc", required=False).get("allow", [])
        )
        owner_address = None if owner is None else normalize_address(str(owner), field_name="workflow.owner")
    except ValueError as exc:
        raise ConfigError(f"deploy config: {exc}") from None
    return DeployPlan(
        deployer_key=key,
        don=don,
        workflow_cid=_hex(wf.get("cid", ""), 32, "workflow.cid"),
        workflow_name=str(wf.get("name", "crossdvp-dvp")),
        workflow_owner=owner_address,
        report_id=_hex(wf.get("report_id", "0x0001"), 2, "workflow.report_id"),
        grace_s=_int(_section(data, "escrow", required=False), "grace_s", "escrow", 86_400),
        token_name=str(token.get("name", DEFAULT_FUND_NAME)),
        token_symbol=str(token.get("symbol", DEFAULT_FUND_SYMBOL)),
        kyc_allow=allow,
        node_config=base / str(output.get("node_config", "network.toml")),
        finality=finality,
        transmitter_key_env=output.get("transmitter_key_env", "CROSSDVP_NODE_TRANSMITTER_KEY"),
    )


def deploy_from_config(rpc_url: str, plan: DeployPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Deploy per `plan` on `rpc_url`, KYC-allow the listed addresses, write the node-config section;
    returns a JSON-able summary. Raises ConfigError for an invalid workflow identity, ChainError
    (RpcError, ContractRevert) if the endpoint refuses a step."""
    client = EvmClient(rpc_url, timeout_s=120.0)
    admin = client.account(plan.deployer_key)
    progress(f"connected to chain {client.chain_id} at {rpc_url}; deployer {admin.address}")
    try:
        workflow = WorkflowIdentity(
            workflow_cid=plan.workflow_cid,
            workflow_name=plan.workflow_name,
            workflow_owner=plan.workflow_owner or admin.address,
            report_id=plan.report_id,
        )
    except SettlementError as exc:
        raise ConfigError(f"deploy config: [workflow] {exc}") from None
    asset = deploy_asset_network(
        client,
        admin,
        don=plan.don,
        workflow=workflow,
        grace_s=plan.grace_s,
        token_name=plan.token_name,
        token_symbol=plan.token_symbol,
    )
    progress(
        f"deployed: forwarder {asset.forwarder} (DON {plan.don.don_id} v{plan.don.config_version} set), "
        f"registry {asset.registry}, token {asset.token}, escrow {asset.escrow}"
    )
    if plan.kyc_allow:
        asset.bind(client).registry.set_allowed_batch(admin, list(plan.kyc_allow))
        progress(f"KYC-allowed {len(plan.kyc_allow)} address(es)")
    plan.node_config.write_text(
        dumps(
            {
                "workflow": workflow_section(workflow),
                "networks": [
                    evm_network_section(
                        rpc_url, asset, finality=plan.finality, transmitter_key_env=plan.transmitter_key_env
                    )
                ],
            },
            comment=(
                "Written by `crossdvp deploy`: paste into each node's config next to its [node], [key]\n"
                "and [don] sections (don.members lists each node's URL and signer)."
            ),
        )
    )
    progress(f"node config section written to {plan.node_config}")
    return {
        "rpc_url": rpc_url,
        "network": asset.network,
        **asset.to_dict(),
        "node_config": str(plan.node_config),
    }
