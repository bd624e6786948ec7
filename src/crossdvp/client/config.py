"""What a desk needs to know: where the chain, the ledger and the DON's nodes are, and its parties.

A party is known to the desk by a short name ("seller", "buyer") and has a chain address (its key
in an encrypted keystore) and a ledger participant with one account per currency (its API key in a
file or an environment variable). `DeskConfig.from_devnet(dir)` reads a devnet's state file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crossdvp.chain.deploy import AssetNetwork
from crossdvp.client.errors import InvalidOrder
from crossdvp.devnet.keyfiles import load_key, read_secret
from crossdvp.devnet.state import load_state
from crossdvp.errors import ConfigError

__all__ = ["KEY_PASSWORD_ENV", "DeskConfig", "NodeEndpoint", "PartyConfig"]

KEY_PASSWORD_ENV = "CROSSDVP_DESK_KEY_PASSWORD"  # noqa: S105 (a variable name)


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class PartyConfig:
    """A party: `accounts` maps a currency to its ledger account id. Keys are referenced, not held:
    `chain_keystore` (password from the desk's password file or $CROSSDVP_DESK_KEY_PASSWORD) and
    `payments_key_file` (else $CROSSDVP_DESK_<NAME>_API_KEY)."""

    name: str
    chain_address: str
    participant_id: str
    accounts: Mapping[str, str]
    chain_keystore: Path | None = None
    payments_key_file: Path | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class DeskConfig:
    rpc_url: str
    asset: AssetNetwork
    token_decimals: int
    token_symbol: str
    payments_url: str
    payments_network: str
    nodes: tuple[NodeEndpoint, ...]
    f: int
    parties: Mapping[str, PartyConfig]
    password_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @classmethod
    def from_devnet(cls, directory: Path) -> DeskConfig:
        """The desk of a devnet started with `crossdvp devnet up --dir directory`.

        Raises ConfigError if there is no devnet there or its `up` did not complete."""
        state = load_state(directory)
        chain, payments, don = state.require_complete()
        return cls(
            rpc_url=chain.rpc_url,
            asset=chain.asset,
            token_decimals=chain.token_decimals,
            token_symbol=chain.token_symbol,
            payments_url=payments.url,
            payments_network=payments.network,
            nodes=tuple(NodeEndpoint(n.name, n.url) for n in state.nodes),
            f=don.f,
            parties={
                name: PartyConfig(
                    name=name,
                    chain_address=p.chain_address,
                    participant_id=p.participant_id,
                    accounts=dict(p.accounts),
                    chain_keystore=p.chain_keystore,
                    payments_key_file=p.payments_key_file,
                    description=p.description,
                )
                for name, p in state.parties.items()
            },
            password_file=state.password_file,
        )

    def party(self, name: str, *, role: str) -> PartyConfig:
        """The party called `name`. Rejects (InvalidOrder naming `role`) an unknown name."""
        party = self.parties.get(name)
        if party is None:
            known = ", ".join(sorted(self.parties)) or "none"
            raise InvalidOrder(f"{role}: unknown party {name!r} (known parties: {known})")
        return party

    def party_by_address(self, address: str) -> PartyConfig | None:
        return next((p for p in self.parties.values() if p.chain_address == address.lower()), None)

    def party_by_account(self, account_id: str) -> PartyConfig | None:
        return next((p for p in self.parties.values() if account_id in p.accounts.values()), None)

    def chain_key(self, party: PartyConfig) -> bytes:
        """Decrypt the party's chain key. Raises ConfigError if it has no keystore or no password."""
        if party.chain_keystore is None:
            raise ConfigError(f"party {party.name} has no chain keystore configured")
        if self.password_file is not None:
            password = read_secret(self.password_file)
        else:
            password = self.env.get(KEY_PASSWORD_ENV, "")
            if not password:
                raise ConfigError(f"set {KEY_PASSWORD_ENV} to the password of {party.chain_keystore}")
        return load_key(party.chain_keystore, password)

    def payments_key(self, party: PartyConfig) -> str:
        """The party's ledger API key. Raises ConfigError if neither its file nor its variable is set."""
        if party.payments_key_file is not None:
            return read_secret(party.payments_key_file)
        variable = f"CROSSDVP_DESK_{party.name.upper()}_API_KEY"
        value = self.env.get(variable)
        if not value:
            raise ConfigError(f"set {variable} to the ledger API key of party {party.name}")
        return value
