"""Node configuration: a TOML file, every value overridable by the environment.

Override names are `CROSSDVP_NODE_<SECTION>_<KEY>` (e.g. `CROSSDVP_NODE_KEY_PRIVATE_KEY`,
`CROSSDVP_NODE_NODE_PORT`) and, for the list of networks, `CROSSDVP_NODE_NETWORKS_<i>_<KEY>`
(e.g. `CROSSDVP_NODE_NETWORKS_0_RPC_URL`). Secrets are never read from the TOML in plain text: the
transmitter key and the ledger API key are named by environment variable, and a raw DON key in the
file is accepted only when `[key] dev = true`.

    [node]       index, name, host, port, data_dir, store_url, poll_interval_ms, round_ms, ...
    [key]        keystore + password_env, or private_key (env; TOML only with dev = true)
    [don]        don_id, config_version, f, members = [{name, url, signer}] in DON order
    [workflow]   cid, name, owner, report_id
    [[networks]] kind = "evm" | "payments"
    [testing]    byzantine = "flip" | "garbage"   (TEST ONLY: makes this node misbehave)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossdvp.chain.client import DEFAULT_MAX_LOG_RANGE
from crossdvp.oracle.errors import NodeConfigError
from crossdvp.oracle.keys import NodeKey, key_from_hex, load_keystore
from crossdvp.paths import data_dir
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

if TYPE_CHECKING:
    from crossdvp.oracle.ports import Deliverer, Observer

__all__ = [
    "EXAMPLE_CONFIG",
    "DonMember",
    "DonSection",
    "EvmNetworkConfig",
    "KeySection",
    "NetworkConfig",
    "NodeConfig",
    "NodeSection",
    "PaymentsNetworkConfig",
    "TestingSection",
    "WorkflowSection",
    "build_ports",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "CROSSDVP_NODE_"

#: A complete config for node 0 of a 4-node DON (f = 1) on a local anvil and payments service. The
#: secrets come from the environment: CROSSDVP_NODE_KEY_PASSWORD (keystore), the transmitter key
#: variable and the ledger's oracle API key variable named below.
EXAMPLE_CONFIG = """\
[node]
index = 0                      # this node's position in [[don.members]]
host = "127.0.0.1"
port = 8801
# data_dir = ".crossdvp/nodes/node-0"         (default: $CROSSDVP_HOME/nodes/<name>)
# store_url = "sqlite:///.../node.sqlite"     (default: node.sqlite in data_dir)
poll_interval_ms = 500
round_ms = 1000                # leader slot length: a silent leader is replaced after one slot
stagger_ms = 3000              # delivery: the node at rotation position p first checks after p * stagger_ms
max_batch = 100

[key]
keystore = "keys/node-0.json"  # `crossdvp node keygen --out keys/node-0.json`
password_env = "CROSSDVP_NODE_KEY_PASSWORD"

[don]
don_id = 1
config_version = 1
f = 1
members = [
  { name = "node-0", url = "http://127.0.0.1:8801", signer = "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf" },
  { name = "node-1", url = "http://127.0.0.1:8802", signer = "0x2b5ad5c4795c026514f8317c7a215e218dccd6cf" },
  { name = "node-2", url = "http://127.0.0.1:8803", signer = "0x6813eb9362372eef6200f3b1dbc3f819671cba69" },
  { name = "node-3", url = "http://127.0.0.1:8804", signer = "0x1eff47bc3a10a45d4b230b5d10e37751fe6aa718" },
]

[workflow]
cid = "0x1111111111111111111111111111111111111111111111111111111111111111"
name = "crossdvp-settlement"
owner = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
report_id = "0x0001"

[[networks]]
kind = "evm"
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
escrow = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
forwarder = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
finality = 2                   # confirmations, or "finalized"
transmitter_key_env = "CROSSDVP_NODE_TRANSMITTER_KEY"

[[networks]]
kind = "payments"
url = "http://127.0.0.1:8700"
ledger_id = "crossdvp-payments"
api_key_env = "CROSSDVP_NODE_PAYMENTS_API_KEY"

# [testing]
# byzantine = "flip"           # TEST ONLY: sign the opposite decisions ("garbage": random signatures)
"""


def _hex_bytes(value: str, length: int, field_name: str) -> bytes:
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{field_name} must be 0x-prefixed hex") from exc
    if len(raw) != length:
        raise ValueError(f"{field_name} must be {length} bytes, got {len(raw)}")
    return raw


def _address(value: str, field_name: str) -> str:
    raw = _hex_bytes(value, 20, field_name)
    return "0x" + raw.hex()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSection(_Section):
    index: int = Field(ge=0)
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    data_dir: Path | None = None
    store_url: str | None = None
    poll_interval_ms: int = Field(default=500, ge=10)
    round_ms: int = Field(default=1000, ge=50)
    stagger_ms: int = Field(default=3000, ge=0)
    delivery_recheck_ms: int = Field(default=2000, ge=10)
    max_batch: int = Field(default=100, ge=1, le=1000)
    peer_timeout_ms: int = Field(default=800, ge=10)
    log_level: str = "INFO"


class KeySection(_Section):
    keystore: Path | None = None
    password_env: str = "CROSSDVP_NODE_KEY_PASSWORD"  # noqa: S105 (a variable name, not a secret)
    private_key: str | None = Field(default=None, repr=False)
    dev: bool = False


class DonMember(_Section):
    name: str
    url: str
    signer: str

    @field_validator("signer")
    @classmethod
    def _signer(cls, v: str) -> str:
        return _address(v, "signer")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return v.rstrip("/")


class DonSection(_Section):
    don_id: int = Field(ge=0, le=2**32 - 1)
    config_version: int = Field(ge=0, le=2**32 - 1)
    f: int = Field(ge=1)
    members: list[DonMember]

    @model_validator(mode="after")
    def _size(self) -> DonSection:
        if len(self.members) < 3 * self.f + 1:
            raise ValueError(f"members: {len(self.members)} members cannot tolerate f={self.f} (need 3f+1)")
        signers = [m.signer for m in self.members]
        if len(set(signers)) != len(signers):
            raise ValueError("members: signer addresses must be distinct")
        return self


class WorkflowSection(_Section):
    cid: str
    name: str
    owner: str
    report_id: str = "0x0001"

    @field_validator("cid")
    @classmethod
    def _cid(cls, v: str) -> str:
        return "0x" + _hex_bytes(v, 32, "cid").hex()

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        return _address(v, "owner")

    @field_validator("report_id")
    @classmethod
    def _report_id(cls, v: str) -> str:
        return "0x" + _hex_bytes(v, 2, "report_id").hex()


class EvmNetworkConfig(_Section):
    kind: Literal["evm"]
    name: str = "evm"
    rpc_url: str
    chain_id: int = Field(ge=1)
    escrow: str
    forwarder: str
    finality: int | Literal["finalized"] = 2
    # The escrow's deployment block: where observing starts, and the oldest block a delivery reads
    # the escrow's events from to rebuild a settlement's lock records.
    start_block: int = Field(default=0, ge=0)
    max_block_range: int = Field(default=DEFAULT_MAX_LOG_RANGE, ge=1)
    transmitter_key_env: str | None = None
    gas_limit: int | None = Field(default=None, ge=21_000)

    @field_validator("escrow", "forwarder")
    @classmethod
    def _addr(cls, v: str) -> str:
        return _address(v, "address")

    @field_validator("finality", mode="before")
    @classmethod
    def _finality(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        if isinstance(v, int) and v < 0:
            raise ValueError("finality must be a confirmation depth >= 0 or 'finalized'")
        return v

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"


class PaymentsNetworkConfig(_Section):
    kind: Literal["payments"]
    name: str = "payments"
    url: str
    ledger_id: str = "crossdvp-payments"
    api_key_env: str = "CROSSDVP_NODE_PAYMENTS_API_KEY"
    wait_s: int = Field(default=0, ge=0, le=30)

    @property
    def network(self) -> str:
        return f"payments:{self.ledger_id}"


NetworkConfig = Annotated[EvmNetworkConfig | PaymentsNetworkConfig, Field(discriminator="kind")]


class TestingSection(_Section):
    """TEST ONLY. `byzantine` makes this node misbehave, to prove the others are not fooled:
    "flip" signs and proposes the opposite of its decisions; "garbage" signs random bytes."""

    __test__ = False  # not a pytest test class despite the name
    byzantine: Literal["flip", "garbage"] | None = None


class NodeConfig(_Section):
    node: NodeSection
    key: KeySection = KeySection()
    don: DonSection
    workflow: WorkflowSection
    networks: list[NetworkConfig] = []
    testing: TestingSection = TestingSection()

    @model_validator(mode="after")
    def _checks(self) -> NodeConfig:
        if self.node.index >= len(self.don.members):
            raise ValueError(f"node.index {self.node.index} is not a position in don.members")
        names = [n.network for n in self.networks]
        if len(set(names)) != len(names):
            raise ValueError("networks: two entries serve the same network id")
        return self

    @property
    def member(self) -> DonMember:
        return self.don.members[self.node.index]

    @property
    def node_name(self) -> str:
        return self.node.name or self.member.name

    def don_config(self) -> DonConfig:
        return DonConfig(
            don_id=self.don.don_id,
            config_version=self.don.config_version,
            f=self.don.f,
            signers=tuple(m.signer for m in self.don.members),
        )

    def workflow_identity(self) -> WorkflowIdentity:
        return WorkflowIdentity(
            workflow_cid=bytes.fromhex(self.workflow.cid[2:]),
            workflow_name=self.workflow.name,
            workflow_owner=self.workflow.owner,
            report_id=bytes.fromhex(self.workflow.report_id[2:]),
        )

    def resolved_data_dir(self, env: Mapping[str, str]) -> Path:
        return self.node.data_dir or (data_dir(dict(env)) / "nodes" / self.node_name)

    def store_url(self, env: Mapping[str, str]) -> str:
        if self.node.store_url:
            return self.node.store_url
        return f"sqlite:///{self.resolved_data_dir(env) / 'node.sqlite'}"

    def load_key(self, env: Mapping[str, str]) -> NodeKey:
        """The DON signing key; it must be the signer listed for this node in don.members.

        Rejects: no key source; a TOML private_key without dev = true; a keystore without its
        password variable; a key whose address is not this member's signer.
        """
        if self.key.private_key is not None:
            key = key_from_hex(self.key.private_key, source="key.private_key")
        elif self.key.keystore is not None:
            password = env.get(self.key.password_env)
            if password is None:
                raise NodeConfigError(
                    f"key.password_env: environment variable {self.key.password_env} is not set "
                    f"(the password of {self.key.keystore})"
                )
            key = load_keystore(self.key.keystore, password)
        else:
            raise NodeConfigError(
                "key: set key.keystore (+ the password variable) or CROSSDVP_NODE_KEY_PRIVATE_KEY"
            )
        if key.address != self.member.signer:
            raise NodeConfigError(
                f"key: the key's address {key.address} is not don.members[{self.node.index}].signer "
                f"{self.member.signer}"
            )
        return key


def _set_path(data: dict[str, Any], path: list[str], value: str) -> None:
    """Put an env value at `path` (section, [index,] key); lists of networks are indexed by number."""
    head = path[0]
    if head == "networks":
        if len(path) < 3 or not path[1].isdigit():
            raise NodeConfigError(f"{ENV_PREFIX}NETWORKS_<i>_<KEY>: expected an index, got {'_'.join(path)}")
        networks = data.setdefault("networks", [])
        index = int(path[1])
        while len(networks) <= index:
            networks.append({})
        networks[index]["_".join(path[2:])] = value
        return
    section = data.setdefault(head, {})
    if not isinstance(section, dict):
        raise NodeConfigError(f"{head} is not a section")
    section["_".join(path[1:])] = value


_SECTIONS = ("node", "key", "don", "workflow", "networks", "testing")


def parse_config(data: Mapping[str, Any], env: Mapping[str, str]) -> NodeConfig:
    """Validate a config mapping after applying `CROSSDVP_NODE_*` overrides from `env`.

    Rejects (NodeConfigError naming the key): unknown sections/keys, wrong types or ranges, a DON
    smaller than 3f+1, a node index outside the DON, a plain private key in the TOML without dev.
    """
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if "networks" in merged:
        merged["networks"] = [dict(n) for n in merged["networks"]]
    file_private_key = isinstance(merged.get("key"), dict) and "private_key" in merged["key"]
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # e.g. CROSSDVP_NODE_KEY_PASSWORD is read through key.password_env, not as a key
        path = [section, *rest[len(section) + 1 :].split("_")]
        if section != "networks":
            path = [section, "_".join(path[1:])]
        if section == "key" and path[1] == "password":
            continue
        if section == "don" and path[1] == "members":
            raise NodeConfigError("don.members cannot be set from the environment; use the TOML file")
        _set_path(merged, path, value)
    if file_private_key and not bool(merged.get("key", {}).get("dev", False)):
        raise NodeConfigError(
            "key.private_key: a plain private key in the config file needs `dev = true` in [key]; "
            "use a keystore or CROSSDVP_NODE_KEY_PRIVATE_KEY instead"
        )
    try:
        return NodeConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise NodeConfigError(f"invalid node config: {problems}") from exc


def load_config(path: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and validate a TOML config file (see parse_config). Rejects a missing file or bad TOML."""
    source = os.environ if env is None else env
    try:
        text = path.read_text()
    except OSError as exc:
        raise NodeConfigError(f"cannot read node config {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodeConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, source)


@dataclass(frozen=True, slots=True)
class Ports:
    observers: tuple[Observer, ...]
    deliverers: tuple[Deliverer, ...]


def build_ports(config: NodeConfig, env: Mapping[str, str]) -> Ports:
    """The real observers and deliverers for the configured networks.

    observe.py / transmit.py are imported here, lazily, so that unit tests and tools that only need
    the config do not import web3. Rejects a network whose secret variable is not set.
    """
    from crossdvp.oracle.observe import EvmObserver, PaymentsObserver
    from crossdvp.oracle.transmit import EvmDeliverer, PaymentsDeliverer

    observers: list[Observer] = []
    deliverers: list[Deliverer] = []
    for i, net in enumerate(config.networks):
        if isinstance(net, EvmNetworkConfig):
            observers.append(
                EvmObserver(
                    net.rpc_url,
                    chain_id=net.chain_id,
                    escrow=net.escrow,
                    finality=net.finality,
                    start_block=net.start_block,
                    max_block_range=net.max_block_range,
                )
            )
            if net.transmitter_key_env is None:
                continue  # an observe-only node on this chain: other nodes deliver there
            key_hex = env.get(net.transmitter_key_env)
            if key_hex is None:
                raise NodeConfigError(
                    f"networks[{i}].transmitter_key_env: environment variable {net.transmitter_key_env} "
                    "is not set"
                )
            deliverers.append(
                EvmDeliverer(
                    net.rpc_url,
                    chain_id=net.chain_id,
                    forwarder=net.forwarder,
                    escrow=net.escrow,
                    transmitter_key=key_from_hex(key_hex, source=net.transmitter_key_env).private_key,
                    confirmations=net.finality if isinstance(net.finality, int) else 0,
                    records_from_block=net.start_block,
                )
            )
        else:
            api_key = env.get(net.api_key_env)
            if api_key is None:
                raise NodeConfigError(
                    f"networks[{i}].api_key_env: environment variable {net.api_key_env} is not set"
                )
            observers.append(PaymentsObserver(net.url, api_key, network=net.network, wait_s=net.wait_s))
            deliverers.append(PaymentsDeliverer(net.url, api_key, network=net.network))
    return Ports(observers=tuple(observers), deliverers=tuple(deliverers))
