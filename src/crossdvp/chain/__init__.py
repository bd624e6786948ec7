"""The EVM side of crossdvp: a local anvil, a typed JSON-RPC client, bindings for the asset network's
contracts (KYCRegistry, FundToken, DvPEscrow, Chainlink's KeystoneForwarder) and their deployment.

The compiled contracts live in `artifacts/` (written by scripts/compile.js, committed).
"""

from __future__ import annotations

from crossdvp.chain.anvil import Anvil, running_anvil, start_anvil
from crossdvp.chain.client import BlockInfo, Call, EvmClient, LogEntry, Sender, TxReceipt
from crossdvp.chain.contracts import DvPEscrow, FundToken, KeystoneForwarder, KYCRegistry, load_artifact
from crossdvp.chain.deploy import AssetNetwork, deploy_asset_network
from crossdvp.chain.errors import ChainError, ContractRevert, RpcError, TransactionTimeout

__all__ = [
    "Anvil",
    "AssetNetwork",
    "BlockInfo",
    "Call",
    "ChainError",
    "ContractRevert",
    "DvPEscrow",
    "EvmClient",
    "FundToken",
    "KYCRegistry",
    "KeystoneForwarder",
    "LogEntry",
    "RpcError",
    "Sender",
    "TransactionTimeout",
    "TxReceipt",
    "deploy_asset_network",
    "load_artifact",
    "running_anvil",
    "start_anvil",
]
