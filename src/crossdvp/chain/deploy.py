"""Deploy one asset network: the KeystoneForwarder (configured with the DON), the KYC registry, the fund
token, and the DvP escrow that accepts reports only from that forwarder and workflow.

The result, AssetNetwork, is what the devnet writes to disk and the oracle nodes and SDK read back
(to_dict/from_dict) to find the contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crossdvp.chain.client import EvmClient, Sender, normalize_address
from crossdvp.chain.contracts import DvPEscrow, FundToken, KeystoneForwarder, KYCRegistry
from crossdvp.errors import ConfigError
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

__all__ = [
    "DEFAULT_FUND_NAME",
    "DEFAULT_FUND_SYMBOL",
    "AssetNetwork",
    "BoundAssetNetwork",
    "deploy_asset_network",
]

_MAX_UINT64 = 2**64 - 1
# The fund the design reproduces (Ondo's OUSG); a deployment may name its own.
DEFAULT_FUND_NAME = "Tokenized Short-Term US Treasury Fund"
DEFAULT_FUND_SYMBOL = "OUSG"


@dataclass(frozen=True, slots=True)
class AssetNetwork:
    """Where an asset network's contracts live (lowercase addresses) and from which block to scan."""

    chain_id: int
    registry: str
    token: str
    escrow: str
    forwarder: str
    deployed_at_block: int

    @property
    def network(self) -> str:
        """The CAIP-2 id legs use for this chain: "eip155:<chain_id>"."""
        return f"eip155:{self.chain_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "registry": self.registry,
            "token": self.token,
            "escrow": self.escrow,
            "forwarder": self.forwarder,
            "deployed_at_block": self.deployed_at_block,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AssetNetwork:
        """Raises ConfigError naming the field that is missing or not of the right form."""
        try:
            ints = {name: data[name] for name in ("chain_id", "deployed_at_block")}
            addresses = {name: data[name] for name in ("registry", "token", "escrow", "forwarder")}
        except KeyError as exc:
            raise ConfigError(f"asset network description lacks {exc.args[0]!r}") from None
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"asset network {name} must be a non-negative integer, got {value!r}")
        normalized: dict[str, str] = {}
        for name, value in addresses.items():
            try:
                normalized[name] = normalize_address(str(value), field_name=f"asset network {name}")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return cls(
            chain_id=ints["chain_id"],
            deployed_at_block=ints["deployed_at_block"],
            registry=normalized["registry"],
            token=normalized["token"],
            escrow=normalized["escrow"],
            forwarder=normalized["forwarder"],
        )

    def bind(self, client: EvmClient) -> BoundAssetNetwork:
        """The typed bindings of the four contracts on `client`.

        Raises ConfigError if `client` is connected to another chain than the one deployed to.
        """
        if client.chain_id != self.chain_id:
            raise ConfigError(
                f"asset network was deployed on chain {self.chain_id}, but {client.rpc_url} is chain "
                f"{client.chain_id}"
            )
        return BoundAssetNetwork(
            registry=KYCRegistry(client, self.registry),
            token=FundToken(client, self.token),
            escrow=DvPEscrow(client, self.escrow),
            forwarder=KeystoneForwarder(client, self.forwarder),
        )


@dataclass(frozen=True, slots=True)
class BoundAssetNetwork:
    registry: KYCRegistry
    token: FundToken
    escrow: DvPEscrow
    forwarder: KeystoneForwarder


def deploy_asset_network(
    client: EvmClient,
    admin: Sender,
    *,
    don: DonConfig,
    workflow: WorkflowIdentity,
    grace_s: int,
    token_name: str = DEFAULT_FUND_NAME,
    token_symbol: str = DEFAULT_FUND_SYMBOL,
) -> AssetNetwork:
    """Deploy and wire the four contracts with `admin` as owner/admin of all of them.

    - KeystoneForwarder, then setConfig(don.don_id, don.config_version, don.f, don.signers);
    - KYCRegistry(admin) and FundToken(name, symbol, registry, admin) (admin holds every role);
    - DvPEscrow(forwarder, workflow owner, encoded workflow name, workflow cid, grace_s);
    - the escrow is KYC-allowed, since it holds locked shares.

    Raises ConfigError if `grace_s` is not a uint64, ContractRevert/RpcError if a step fails on chain.
    """
    if not isinstance(grace_s, int) or isinstance(grace_s, bool) or not 0 <= grace_s <= _MAX_UINT64:
        raise ConfigError(f"grace_s must be an integer in 0..2**64-1 seconds, got {grace_s!r}")
    start_block = client.block_number() + 1
    forwarder = KeystoneForwarder.deploy(client, admin)
    forwarder.set_config(admin, don)
    registry = KYCRegistry.deploy(client, admin, admin.address)
    token = FundToken.deploy(client, admin, token_name, token_symbol, registry.address, admin.address)
    escrow = DvPEscrow.deploy(
        client,
        admin,
        forwarder.address,
        workflow.workflow_owner,
        workflow.encoded_name,
        workflow.workflow_cid,
        grace_s,
    )
    registry.set_allowed(admin, escrow.address)
    return AssetNetwork(
        chain_id=client.chain_id,
        registry=registry.address,
        token=token.address,
        escrow=escrow.address,
        forwarder=forwarder.address,
        deployed_at_block=start_block,
    )
