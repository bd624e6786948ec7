"""Raw JSON-RPC for the benchmark: many requests per HTTP round trip, transactions signed locally.

web3.py's per-call path (middleware, validation, receipt polling with sleeps) costs more than the
chain itself at these rates, so the benchmark signs transactions with eth_account once, up front,
and sends them to the node as JSON-RPC batches (one HTTP request carrying hundreds of
`eth_sendRawTransaction`s). Reads that the monitor repeats (block number, logs) go through the same
client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account

from crossdvp.chain.client import Call
from crossdvp.chain.errors import RpcError

__all__ = ["RawRpc", "SignedTx", "TxSigner"]


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A raw signed transaction and the nonce it uses (for messages)."""

    raw: bytes
    nonce: int


class TxSigner:
    """Signs EIP-1559 transactions for one key with consecutive nonces, without asking the node.

    The fee cap is fixed by the caller (`max_fee_wei`): a burst of full blocks raises the base fee by
    12.5% a block, and a transaction signed with a too-low cap would sit in the pool forever.
    """

    def __init__(self, private_key: bytes, *, chain_id: int, first_nonce: int, max_fee_wei: int) -> None:
        self._account = Account.from_key(private_key)
        self.address = str(self._account.address).lower()
        self.chain_id = chain_id
        self.next_nonce = first_nonce
        self.max_fee_wei = max_fee_wei

    def sign(self, call: Call, *, gas: int) -> SignedTx:
        nonce = self.next_nonce
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": self._checksum(call.to),
            "data": call.data,
            "value": call.value,
            "gas": gas,
            "maxFeePerGas": self.max_fee_wei,
            "maxPriorityFeePerGas": 1,
            "type": 2,
        }
        raw = bytes(self._account.sign_transaction(tx).raw_transaction)
        self.next_nonce += 1
        return SignedTx(raw=raw, nonce=nonce)

    @staticmethod
    def _checksum(address: str | None) -> str:
        if address is None:
            raise ValueError("TxSigner signs calls to a contract; deployments go through EvmClient.deploy")
        from web3 import Web3

        return str(Web3.to_checksum_address(address))


class RawRpc:
    """A JSON-RPC client that sends lists of requests as one batch. Close it (or use `with`)."""

    def __init__(self, rpc_url: str, *, timeout_s: float = 60.0) -> None:
        self.rpc_url = rpc_url
        self._http = httpx.Client(timeout=timeout_s)
        self._id = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RawRpc:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One request; returns its result. Raises RpcError on a transport error or an error answer."""
        (result,) = self.batch([(method, params)])
        return result

    def batch(self, requests: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send `requests` as one JSON-RPC batch; returns the results in request order.

        Raises RpcError if the HTTP request fails, the answer is not a list of the right length, or
        any request got an error answer (the first is named; the others may have succeeded).
        """
        if not requests:
            return []
        first_id = self._id
        self._id += len(requests)
        body = [
            {"jsonrpc": "2.0", "id": first_id + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(requests)
        ]
        try:
            response = self._http.post(self.rpc_url, json=body)
            response.raise_for_status()
            answers = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RpcError(
                f"JSON-RPC batch of {len(requests)} to {self.rpc_url} failed: {exc}", method="batch"
            ) from exc
        if not isinstance(answers, list) or len(answers) != len(requests):
            raise RpcError(
                f"JSON-RPC batch of {len(requests)} to {self.rpc_url}: malformed answer", method="batch"
            )
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        results: list[Any] = []
        for i, (method, _) in enumerate(requests):
            answer = by_id.get(first_id + i)
            if answer is None:
                raise RpcError(f"JSON-RPC batch: no answer to request {i} ({method})", method=method)
            if answer.get("error") is not None:
                raise RpcError(
                    f"JSON-RPC batch: {method} (request {i}) refused: {answer['error']}",
                    method=method,
                    retryable=False,
                )
            results.append(answer.get("result"))
        return results

    def send_raw(self, txs: Sequence[SignedTx], *, chunk: int = 250) -> list[str]:
        """eth_sendRawTransaction for every tx, `chunk` per batch; returns the hashes (0x hex)."""
        hashes: list[str] = []
        for start in range(0, len(txs), chunk):
            part = txs[start : start + chunk]
            hashes += self.batch([("eth_sendRawTransaction", ["0x" + t.raw.hex()]) for t in part])
        return hashes

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def receipts(self, hashes: Sequence[str], *, chunk: int = 500) -> list[dict[str, Any] | None]:
        """eth_getTransactionReceipt for every hash (None for a transaction not mined yet)."""
        out: list[dict[str, Any] | None] = []
        for start in range(0, len(hashes), chunk):
            part = hashes[start : start + chunk]
            out += self.batch([("eth_getTransactionReceipt", [h]) for h in part])
        return out
