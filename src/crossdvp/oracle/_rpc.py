"""A small async Ethereum JSON-RPC client: single calls and batches over one httpx connection pool.

The node's EVM adapters (observe_evm, transmit_evm) need a handful of methods, many of them at once
(block headers for every block with a lock, log ranges): a JSON-RPC batch does that in one round trip,
and skipping web3's per-call middleware keeps a poll cheap. Every failure is mapped onto two errors:

    LedgerUnavailable (retryable)   transport error, timeout, HTTP 5xx/429, a malformed response, or a node
                                 error that is not a revert (rate limit, "header not found", ...)
    RpcReverted    (not retryable) the call or gas estimation reverted; carries the revert data so the
                                 caller can decode the custom error (AlreadyAttempted, ...)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from eth_utils.crypto import keccak

from crossdvp.chain.errors import BLOCK_RACE_ATTEMPTS, BLOCK_RACE_PAUSE_S, is_block_race, is_nonce_conflict
from crossdvp.oracle.errors import LedgerUnavailable, NonceTaken, RpcReverted

__all__ = ["JsonRpcClient", "abi_signature", "hex_int", "selector", "to_hex"]

#: Larger batches are split: some providers cap batch size, and one huge response is no faster.
MAX_BATCH = 100


def abi_signature(entry: Mapping[str, Any]) -> str:
    """The canonical signature of an ABI entry, e.g. "report(address,bytes,bytes,bytes[])".

    Tuple arguments are spelled out as "(t1,t2)" (with array suffixes kept), as Solidity hashes them.
    """

    def canonical(param: Mapping[str, Any]) -> str:
        type_ = str(param["type"])
        if type_.startswith("tuple"):
            inner = ",".join(canonical(c) for c in param.get("components", []))
            return f"({inner}){type_[len('tuple') :]}"
        return type_

    return f"{entry['name']}({','.join(canonical(p) for p in entry.get('inputs', []))})"


def selector(entry: Mapping[str, Any]) -> bytes:
    """keccak256 of the canonical signature: a function/error selector is its first 4 bytes, an event's
    topic0 all 32."""
    return keccak(text=abi_signature(entry))


def to_hex(value: int) -> str:
    """An int as a JSON-RPC quantity ("0x" + minimal hex)."""
    return hex(value)


def hex_int(value: object, what: str) -> int:
    """A JSON-RPC quantity as an int. Raises LedgerUnavailable naming `what` if it is not one."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise LedgerUnavailable(f"malformed JSON-RPC response: {what} is {value!r}, expected a 0x quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise LedgerUnavailable(f"malformed JSON-RPC response: {what} is {value!r}") from None


def _revert_data(error: dict[str, Any]) -> bytes | None:
    """The revert data of an 'execution reverted' error object, or None if the error is not a revert.

    Nodes disagree on the shape: geth and anvil use code 3 with `data` as hex; some put the hex under
    `data.data`; an empty revert (`revert()`) has no data at all but still says "revert".
    """
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    message = str(error.get("message", "")).lower()
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if error.get("code") == 3 or "revert" in message:
        return b""
    return None


class _TagRace(LedgerUnavailable):
    """A read at a moving block tag refused while the node was mining (chain.errors.is_block_race);
    asked again here at once."""


class JsonRpcClient:
    """One JSON-RPC endpoint. Not tied to an event loop until first use; close with `aclose`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._ids = itertools.count(1)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._timeout_s, transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, body: object) -> Any:
        try:
            response = await self._http().post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise LedgerUnavailable(f"JSON-RPC {self.url} timed out after {self._timeout_s}s") from exc
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(f"JSON-RPC {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise LedgerUnavailable(
                f"JSON-RPC {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise LedgerUnavailable(f"JSON-RPC {self.url} answered non-JSON: {response.text[:200]}") from exc

    def _result(self, method: str, reply: object, params: Sequence[object] = ()) -> Any:
        if not isinstance(reply, dict):
            raise LedgerUnavailable(f"malformed JSON-RPC reply to {method}: {reply!r}")
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise LedgerUnavailable(f"{method} failed: {error!r}")
            data = _revert_data(error)
            if data is not None:
                raise RpcReverted(method, data, str(error.get("message", "")))
            if is_nonce_conflict(error.get("code"), str(error.get("message", ""))):
                raise NonceTaken(f"{method} refused: {error.get('code')} {error.get('message')}")
            if is_block_race(error.get("code"), params):
                raise _TagRace(f"{method} raced the next block: {error.get('message')}")
            raise LedgerUnavailable(f"{method} failed: {error.get('code')} {error.get('message')}")
        if "result" not in reply:
            raise LedgerUnavailable(f"malformed JSON-RPC reply to {method}: no result and no error")
        return reply["result"]

    async def call(self, method: str, params: Sequence[object] = ()) -> Any:
        """One request. Raises LedgerUnavailable (retryable) or RpcReverted."""
        for attempt in range(BLOCK_RACE_ATTEMPTS):
            reply = await self._post(
                {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
            )
            try:
                return self._result(method, reply, params)
            except _TagRace:
                if attempt == BLOCK_RACE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(BLOCK_RACE_PAUSE_S)
        raise AssertionError("unreachable")

    async def batch(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Several requests in as few round trips as possible; results in the order of `calls`.

        Raises on the first failed call (in order) — a batch is used where the caller needs every answer.
        """
        for attempt in range(BLOCK_RACE_ATTEMPTS):
            try:
                return await self._batch_once(calls)
            except _TagRace:
                if attempt == BLOCK_RACE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(BLOCK_RACE_PAUSE_S)
        raise AssertionError("unreachable")

    async def batch_outcomes(
        self, calls: Sequence[tuple[str, Sequence[object]]]
    ) -> list[Any | LedgerUnavailable | RpcReverted]:
        """As `batch`, but a call that failed gives its error in its place instead of raising: for a
        round trip that mixes reads the caller needs with calls that may revert (gas estimates)."""
        for attempt in range(BLOCK_RACE_ATTEMPTS):
            outcomes = await self._batch_once(calls, keep_errors=True)
            if attempt == BLOCK_RACE_ATTEMPTS - 1 or not any(isinstance(o, _TagRace) for o in outcomes):
                return outcomes
            await asyncio.sleep(BLOCK_RACE_PAUSE_S)
        raise AssertionError("unreachable")

    async def _batch_once(
        self, calls: Sequence[tuple[str, Sequence[object]]], *, keep_errors: bool = False
    ) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(calls), MAX_BATCH):
            chunk = calls[start : start + MAX_BATCH]
            ids = [next(self._ids) for _ in chunk]
            body = [
                {"jsonrpc": "2.0", "id": id_, "method": method, "params": list(params)}
                for id_, (method, params) in zip(ids, chunk, strict=True)
            ]
            replies = await self._post(body)
            if not isinstance(replies, list):
                # A node that rejects the whole batch answers with one error object.
                raise LedgerUnavailable(
                    f"JSON-RPC {self.url} rejected a batch of {len(chunk)}: {replies!r:.200}"
                )
            # Replies may come in any order (JSON-RPC 2.0 §6); match them by id.
            by_id = {reply.get("id"): reply for reply in replies if isinstance(reply, dict)}
            for id_, (method, params) in zip(ids, chunk, strict=True):
                if id_ not in by_id:
                    raise LedgerUnavailable(f"JSON-RPC batch reply has no answer to {method} (id {id_})")
                try:
                    results.append(self._result(method, by_id[id_], params))
                except (LedgerUnavailable, RpcReverted) as exc:
                    if not keep_errors:
                        raise
                    results.append(exc)
        return results
