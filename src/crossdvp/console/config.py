"""What the console watches: the DON's nodes, the asset network, the payment ledger and the parties'
public identifiers, read from a devnet's state file or from a TOML file for real networks.

The one credential the console holds is the ledger API key it reads balances and holds with. It is
wrapped in `Secret` (whose repr hides it), used only in the Authorization header of GET requests, and
never rendered: tests scan every page and JSON answer for it.

TOML form (`crossdvp console --config console.toml`):

    [chain]    rpc_url, chain_id, registry, token, escrow, forwarder, deployed_at_block
    [ledger]   url, network ("payments:<ledger_id>"), api_key_env (name of the variable holding the key)
    [don]      f
    [[nodes]]  name, url, signer
    [[parties]] name, description, chain_address, accounts = ["acct-id", ...]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossdvp.chain.deploy import AssetNetwork
from crossdvp.errors import ConfigError

__all__ = [
    "ChainEndpoint",
    "ConsoleConfig",
    "LedgerEndpoint",
    "NodeEndpoint",
    "Party",
    "Secret",
    "config_from_devnet",
    "config_from_toml",
]


class Secret:
    """A credential that never prints: `repr`/`str` show `Secret(***)`; `reveal()` is explicit."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    """One oracle node's HTTP API and the DON signer address it signs with."""

    name: str
    url: str
    signer: str


@dataclass(frozen=True, slots=True)
class ChainEndpoint:
    rpc_url: str
    asset: AssetNetwork

    @property
    def network(self) -> str:
        return self.asset.network


@dataclass(frozen=True, slots=True)
class LedgerEndpoint:
    url: str
    network: str
    api_key: Secret


@dataclass(frozen=True, slots=True)
class Party:
    """A trading party's public identifiers: a chain address and ledger account ids."""

    name: str
    description: str
    chain_address: str
    accounts: tuple[str, ...]
    participant_id: str = ""


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    nodes: tuple[NodeEndpoint, ...]
    chain: ChainEndpoint
    ledger: LedgerEndpoint
    f: int
    parties: tuple[Party, ...] = ()
    source: str = ""  # where this came from, shown in the page footer

    def party_for(self, identifier: str) -> Party | None:
        """The party owning a chain address or ledger account id (case-insensitive on addresses)."""
        ident = identifier.lower()
        for party in self.parties:
            if party.chain_address == ident or identifier in party.accounts:
                return party
        return None


def config_from_devnet(directory: Path) -> ConsoleConfig:
    """The console's view of the devnet in `directory` (its devnet.json and the ledger admin key file).

    Rejections: ConfigError if there is no state file, the devnet is not complete, or the ledger key
    file cannot be read. No other key file is opened.
    """
    from crossdvp.devnet.keyfiles import read_secret
    from crossdvp.devnet.state import load_state

    state = load_state(directory)
    chain, payments, don = state.require_complete()
    parties = tuple(
        Party(
            name=p.name,
            description=p.description,
            chain_address=p.chain_address.lower(),
            accounts=tuple(p.accounts.values()),
            participant_id=p.participant_id,
        )
        for p in state.parties.values()
    )
    return ConsoleConfig(
        nodes=tuple(NodeEndpoint(name=n.name, url=n.url, signer=n.signer.lower()) for n in state.nodes),
        chain=ChainEndpoint(rpc_url=chain.rpc_url, asset=chain.asset),
        ledger=LedgerEndpoint(
            url=payments.url,
            network=f"payments:{payments.ledger_id}",
            api_key=Secret(read_secret(payments.admin_key_file)),
        ),
        f=don.f,
        parties=parties,
        source=f"devnet {directory}",
    )


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    if not isinstance(value, Mapping):
        raise ConfigError(f"console config lacks the [{name}] table")
    return value


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"console config {where}.{key} must be a non-empty string")
    return value


def config_from_toml(path: Path, env: Mapping[str, str] | None = None) -> ConsoleConfig:
    """Read a console TOML file (schema in the module docstring); the ledger key comes from `env`.

    Rejections: ConfigError if the file is unreadable or not TOML, a table or key is missing or of the
    wrong type (the message names it), or the variable named by ledger.api_key_env is not set.
    """
    source = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read console config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"console config {path} is not TOML: {exc}") from None
    chain_t = _table(data, "chain")
    ledger_t = _table(data, "ledger")
    don_t = _table(data, "don")
    asset = AssetNetwork.from_dict(chain_t)
    key_env = _str(ledger_t, "api_key_env", "ledger")
    api_key = source.get(key_env)
    if not api_key:
        raise ConfigError(f"console config ledger.api_key_env names {key_env}, which is not set")
    f = don_t.get("f")
    if not isinstance(f, int) or isinstance(f, bool) or f < 1:
        raise ConfigError("console config don.f must be an integer >= 1")
    nodes_t = data.get("nodes")
    if not isinstance(nodes_t, list) or not nodes_t:
        raise ConfigError("console config needs at least one [[nodes]] table")
    nodes = tuple(
        NodeEndpoint(
            name=_str(n, "name", f"nodes[{i}]"),
            url=_str(n, "url", f"nodes[{i}]"),
            signer=_str(n, "signer", f"nodes[{i}]").lower(),
        )
        for i, n in enumerate(nodes_t)
    )
    parties = tuple(
        Party(
            name=_str(p, "name", f"parties[{i}]"),
            description=str(p.get("description", "")),
            chain_address=_str(p, "chain_address", f"parties[{i}]").lower(),
            accounts=tuple(str(a) for a in p.get("accounts", [])),
        )
        for i, p in enumerate(data.get("parties", []))
    )
    return ConsoleConfig(
        nodes=nodes,
        chain=ChainEndpoint(rpc_url=_str(chain_t, "rpc_url", "chain"), asset=asset),
        ledger=LedgerEndpoint(
            url=_str(ledger_t, "url", "ledger"),
            network=_str(ledger_t, "network", "ledger"),
            api_key=Secret(api_key),
        ),
        f=f,
        parties=parties,
        source=f"config {path}",
    )
