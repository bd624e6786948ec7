"""The two-transfer ceiling: how many plain ERC-20 transfers per second the chain executes, halved.

A DvP moves two assets; if the chain could do nothing but plain token transfers, it could settle at
most half as many DvPs per second as it executes transfers (and the cash leg is not even on it). So
`transfers_per_s / 2` is the ceiling the DvP throughput is reported beside, measured on the same
anvil in the same run with the same block batching as the DvP figure:

- `mining="node"`: the node mines on its own (the devnet's interval mining): we only send;
- `mining="evm_mine"`: automine is off and we call `evm_mine` until every transaction is in a block
  (each block takes every pending transaction up to the block gas limit).

The transfers are signed up front (several senders, consecutive nonces), sent as JSON-RPC batches,
and timed from the first send to the moment the last transaction of every sender has a receipt.
Each sender sends to the next one, so every transfer moves tokens between two existing holders (the
steady state of a token in use, no fresh storage slot).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from eth_utils.crypto import keccak

from crossdvp.bench.rpc import RawRpc, SignedTx, TxSigner
from crossdvp.chain.client import Call, EvmClient, Sender
from crossdvp.chain.contracts import load_artifact
from crossdvp.chain.errors import ChainError
from crossdvp.errors import ConfigError

__all__ = ["CeilingResult", "Mining", "interleave", "measure_transfer_ceiling"]

Mining = Literal["node", "evm_mine"]

_TRANSFER_GAS = 80_000
_POLL_S = 0.02
_ETH = 10**18


@dataclass(frozen=True, slots=True)
class CeilingResult:
    transfers: int
    senders: int
    elapsed_s: float
    blocks: int
    gas_per_transfer: int
    mining: str

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.elapsed_s

    @property
    def two_transfer_ceiling_per_s(self) -> float:
        return self.transfers_per_s / 2

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "elapsed_s": round(self.elapsed_s, 3),
            "transfers_per_s": round(self.transfers_per_s, 1),
            "two_transfer_ceiling_per_s": round(self.two_transfer_ceiling_per_s, 1),
        }


def _fee_cap(client: EvmClient) -> int:
    base = client.latest_block().base_fee_per_gas or 1_000_000_000
    # A burst of full blocks raises the base fee 12.5% a block: leave room for ~40 such blocks.
    return base * 120 + 10**9


def measure_transfer_ceiling(
    client: EvmClient,
    funder: Sender,
    *,
    transfers: int,
    senders: int = 4,
    mining: Mining,
    label: str = "ceiling",
    timeout_s: float = 300.0,
    poll_s: float = _POLL_S,
) -> CeilingResult:
    """Deploy a PlainToken, fund `senders` fresh keys (ether from `funder`, tokens by open mint) and
    time `transfers` plain transfers among them (see the module docstring).

    With `mining="node"` the receipts are polled every `poll_s` (default 20 ms): on blocks shorter
    than 0.2 s pass a tenth of the block time, so the end of the run is not stamped a large part of
    a block late.

    Rejects (ConfigError): fewer than 2 senders, transfers < senders, or poll_s <= 0. Raises
    ChainError if a transfer failed or not all were mined within `timeout_s`.
    """
    if senders < 2 or transfers < senders:
        raise ConfigError(f"need >= 2 senders and at least one transfer each, got {senders}/{transfers}")
    if not poll_s > 0:
        raise ConfigError(f"poll_s must be > 0, got {poll_s}")
    if mining == "evm_mine":
        client.request("evm_setAutomine", [True])
    token = client.deploy(funder, "PlainToken", "Ceiling", "CEIL")
    abi = load_artifact("PlainToken").contract_abi
    keys = [keccak(text=f"crossdvp bench {label} sender {i}") for i in range(senders)]
    accounts = [client.account(k) for k in keys]
    for account in accounts:
        client.transfer_eth(funder, account.address, 10 * _ETH)
        mint = Call(token, abi.function("mint", 2).encode_call((account.address, 10**24)), "PlainToken.mint")
        client.transact(funder, mint, gas=_TRANSFER_GAS)
    fee_cap = _fee_cap(client)
    signers = [
        TxSigner(k, chain_id=client.chain_id, first_nonce=client.nonce(a.address), max_fee_wei=fee_cap)
        for k, a in zip(keys, accounts, strict=True)
    ]
    transfer = abi.function("transfer", 2)
    per_sender = [transfers // senders + (1 if i < transfers % senders else 0) for i in range(senders)]
    # Interleave the senders so each JSON-RPC batch carries every sender's next transactions.
    queues: list[list[SignedTx]] = []
    for i, signer in enumerate(signers):
        to = accounts[(i + 1) % senders].address
        call = Call(token, transfer.encode_call((to, 1)), "PlainToken.transfer")
        queues.append([signer.sign(call, gas=_TRANSFER_GAS) for _ in range(per_sender[i])])
    ordered = interleave(queues)
    last_positions = [ordered.index(q[-1]) for q in queues]
    if mining == "evm_mine":
        client.request("evm_setAutomine", [False])
    first_block = client.block_number()
    with RawRpc(client.rpc_url) as rpc:
        began = time.perf_counter()
        hashes = rpc.send_raw(ordered)
        last_of_sender = [hashes[p] for p in last_positions]
        give_up = time.monotonic() + timeout_s
        while True:
            if mining == "evm_mine":
                rpc.call("evm_mine")
            receipts = rpc.receipts(last_of_sender)
            if all(r is not None and r.get("blockNumber") is not None for r in receipts):
                break
            if time.monotonic() > give_up:
                raise ChainError(f"{label}: transfers not all mined after {timeout_s:g}s")
            if mining == "node":
                time.sleep(poll_s)
        elapsed = time.perf_counter() - began
        if mining == "evm_mine":
            client.request("evm_setAutomine", [True])
        all_receipts = rpc.receipts(hashes)
    failed = sum(1 for r in all_receipts if r is None or int(r["status"], 16) != 1)
    if failed:
        raise ChainError(f"{label}: {failed} of {transfers} transfers failed or are missing")
    last_block = max(int(r["blockNumber"], 16) for r in all_receipts if r is not None)
    gas = sum(int(r["gasUsed"], 16) for r in all_receipts if r is not None) // transfers
    return CeilingResult(
        transfers=transfers,
        senders=senders,
        elapsed_s=elapsed,
        blocks=last_block - first_block,
        gas_per_transfer=gas,
        mining=mining,
    )


def interleave(queues: Sequence[Sequence[SignedTx]]) -> list[SignedTx]:
    """Round-robin over `queues` (each sender's transactions stay in nonce order)."""
    longest = max((len(q) for q in queues), default=0)
    return [q[j] for j in range(longest) for q in queues if j < len(q)]
