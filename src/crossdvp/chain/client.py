"""A small, typed JSON-RPC client for an EVM node, on web3.py's HTTP provider.

What it adds over plain web3.py, and why:
- transactions signed locally with a per-sender nonce counter, so many transactions can be in flight
  from one key (web3's `eth.send_transaction` asks the node for the nonce on every call);
- receipts polled every few milliseconds (web3's `wait_for_transaction_receipt` sleeps 100 ms);
- reverts decoded against every compiled artifact into ContractRevert("ZeroAmount", ...) with a readable
  message, and transport failures mapped to RpcError(retryable=True).

Results are returned as frozen dataclasses with Python types (int, bytes, lowercase str addresses).
`EvmClient.w3` stays available for anything this module does not cover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from eth_account import Account
from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from crossdvp.chain._abi import decode_revert
from crossdvp.chain._artifacts import known_errors, load_artifact
from crossdvp.chain.errors import (
    BLOCK_RACE_ATTEMPTS,
    BLOCK_RACE_PAUSE_S,
    ContractRevert,
    RpcError,
    TransactionTimeout,
    is_block_race,
    is_nonce_conflict,
)

__all__ = [
    "DEFAULT_MAX_LOG_RANGE",
    "BlockInfo",
    "Call",
    "EvmClient",
    "LogEntry",
    "Sender",
    "TxReceipt",
    "normalize_address",
]

_POLL_INTERVAL_S = 0.01
_GAS_MARGIN_DIVISOR = 5  # estimate + 20%: state may change between estimation and inclusion
_NONCE_RETRIES = 3
# JSON-RPC codes a node uses for "try again later" (EIP-1474 limit exceeded; rate limiting).
_TRANSIENT_CODES = frozenset({-32005, 429})
# An eth_getLogs topic filter: per position a topic, any of several (a list), or any (None).
LogTopics = Sequence[bytes | Sequence[bytes] | None]
# Blocks one eth_getLogs covers (get_logs): what public providers commonly accept, and the oracle
# node's own default for its polls (`max_block_range`).
DEFAULT_MAX_LOG_RANGE = 2_000


def _transient(code: object, params: Sequence[Any]) -> bool:
    """Whether an error answer may go away if the same request is sent again unchanged."""
    return code in _TRANSIENT_CODES or is_block_race(code, params)


def normalize_address(address: str, *, field_name: str = "address") -> str:
    """`address` as lowercase 0x + 40 hex. Raises ValueError naming `field_name` if it is not one."""
    text = address.strip()
    body = text[2:] if text[:2].lower() == "0x" else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise ValueError(f"{field_name} must be 0x followed by 40 hex digits, got {address!r}")
    return "0x" + body.lower()


def _hex_bytes(value: object) -> bytes:
    return bytes.fromhex(str(value).removeprefix("0x"))


def _hex_int(value: object) -> int:
    return int(str(value), 16)


def _is_nonce_conflict(error: RpcError) -> bool:
    return is_nonce_conflict(error.code, str(error))


@dataclass(frozen=True, slots=True)
class Call:
    """A contract call ready to send: target, calldata, and a label for messages ("DvPEscrow.lock")."""

    to: str | None  # None deploys a contract
    data: bytes
    label: str
    value: int = 0


@dataclass(frozen=True, slots=True)
class LogEntry:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    removed: bool = False

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> LogEntry:
        return cls(
            address=str(raw["address"]).lower(),
            topics=tuple(_hex_bytes(t) for t in raw["topics"]),
            data=_hex_bytes(raw["data"]),
            block_number=_hex_int(raw["blockNumber"]),
            block_hash=_hex_bytes(raw["blockHash"]),
            tx_hash=_hex_bytes(raw["transactionHash"]),
            log_index=_hex_int(raw["logIndex"]),
            removed=bool(raw.get("removed", False)),
        )


@dataclass(frozen=True, slots=True)
class TxReceipt:
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    status: int  # 1 success, 0 reverted
    gas_used: int
    effective_gas_price: int
    sender: str
    to: str | None
    contract_address: str | None
    logs: tuple[LogEntry, ...] = field(repr=False)

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> TxReceipt:
        return cls(
            tx_hash=_hex_bytes(raw["transactionHash"]),
            block_number=_hex_int(raw["blockNumber"]),
            block_hash=_hex_bytes(raw["blockHash"]),
            status=_hex_int(raw["status"]),
            gas_used=_hex_int(raw["gasUsed"]),
            effective_gas_price=_hex_int(raw.get("effectiveGasPrice") or "0x0"),
            sender=str(raw["from"]).lower(),
            to=str(raw["to"]).lower() if raw.get("to") else None,
            contract_address=str(raw["contractAddress"]).lower() if raw.get("contractAddress") else None,
            logs=tuple(LogEntry.from_rpc(log) for log in raw.get("logs", [])),
        )


@dataclass(frozen=True, slots=True)
class BlockInfo:
    number: int
    hash: bytes
    timestamp: int
    base_fee_per_gas: int | None
    gas_limit: int


class Sender:
    """A private key that signs locally, with the next nonce counted here.

    The counter starts from the node's pending transaction count and advances under a lock as each
    transaction is accepted, so concurrent senders never reuse or skip a nonce. If the node says a
    nonce is taken (another process used the same key), the counter is re-read from the node.
    Get one with `EvmClient.account(key)`: the client keeps one Sender per address.
    """

    def __init__(self, private_key: bytes) -> None:
        self._account = Account.from_key(private_key)
        self.address: str = str(self._account.address).lower()
        # Owned by EvmClient.send (same module): the next nonce to use, None = ask the node. Held
        # across signing and eth_sendRawTransaction so nonces are handed out in the order sent.
        self._lock = threading.Lock()
        self._next_nonce: int | None = None

    def __repr__(self) -> str:
        return f"Sender({self.address})"

    @property
    def private_key(self) -> bytes:
        return bytes(self._account.key)

    def sign(self, tx: dict[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)


class EvmClient:
    """A connection to one EVM JSON-RPC endpoint.

    Every method raises RpcError when the node cannot be reached or times out (retryable), and
    ContractRevert when a call or transaction reverts (with the decoded custom error).
    """

    def __init__(
        self, rpc_url: str, *, timeout_s: float = 10.0, max_log_range: int = DEFAULT_MAX_LOG_RANGE
    ) -> None:
        if max_log_range < 1:
            raise ValueError(f"max_log_range must be >= 1, got {max_log_range}")
        self.rpc_url = rpc_url
        self.timeout_s = timeout_s
        self.max_log_range = max_log_range  # blocks per eth_getLogs (see get_logs)
        # No provider-level retries: the caller decides (RpcError.retryable), and a dead endpoint must
        # fail fast rather than after web3's backoff.
        self._provider = HTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.w3 = Web3(self._provider)
        self._chain_id: int | None = None
        self._senders: dict[str, Sender] = {}
        self._senders_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EvmClient({self.rpc_url})"

    # -- raw JSON-RPC ---------------------------------------------------------------------------

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One JSON-RPC request; returns the `result` as the node sent it (hex strings, dicts).

        A read at a moving tag that races the next block ("invalid params") is asked again a few
        times here before it is raised, since callers of a read cannot tell it from a real answer.

        Raises RpcError: retryable for connection failures, timeouts, HTTP 429/5xx, "limit
        exceeded" answers and a lasting race at a moving tag; not retryable for other error
        answers (code/data kept on the error).
        """
        for attempt in range(BLOCK_RACE_ATTEMPTS):
            try:
                return self._request_once(method, params)
            except RpcError as exc:
                if not is_block_race(exc.code, params) or attempt == BLOCK_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(BLOCK_RACE_PAUSE_S)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, params: Sequence[Any]) -> Any:
        try:
            response: Any = self._provider.make_request(RPCEndpoint(method), list(params))
        except requests.Timeout as exc:
            raise RpcError(
                f"{method} to {self.rpc_url} timed out after {self.timeout_s:g}s", method=method
            ) from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            retryable = status is None or status == 429 or status >= 500
            raise RpcError(
                f"{method} to {self.rpc_url} failed with HTTP {status}", method=method, retryable=retryable
            ) from exc
        except (requests.RequestException, OSError, ValueError) as exc:
            raise RpcError(f"{method} to {self.rpc_url} failed: {exc}", method=method) from exc
        if not isinstance(response, dict):
            raise RpcError(f"{method} to {self.rpc_url}: malformed response {response!r}", method=method)
        error = response.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            data = error.get("data") if isinstance(error, dict) else None
            raise RpcError(
                f"{method} refused by {self.rpc_url}: {message} (code {code})",
                method=method,
                code=code if isinstance(code, int) else None,
                data=data,
                retryable=_transient(code, params),
            )
        return response.get("result")

    # -- chain state ----------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = _hex_int(self.request("eth_chainId"))
        return self._chain_id

    @property
    def caip2(self) -> str:
        """The network id crossdvp uses for this chain: "eip155:<chain_id>"."""
        return f"eip155:{self.chain_id}"

    def block_number(self) -> int:
        return _hex_int(self.request("eth_blockNumber"))

    def get_block(self, block: int | str = "latest") -> BlockInfo:
        """A block by number or tag ("latest", "finalized", "safe"). Raises RpcError if it is unknown."""
        tag = hex(block) if isinstance(block, int) else block
        raw = self.request("eth_getBlockByNumber", [tag, False])
        if raw is None:
            raise RpcError(f"block {block} not found on {self.rpc_url}", method="eth_getBlockByNumber")
        base_fee = raw.get("baseFeePerGas")
        return BlockInfo(
            number=_hex_int(raw["number"]),
            hash=_hex_bytes(raw["hash"]),
            timestamp=_hex_int(raw["timestamp"]),
            base_fee_per_gas=_hex_int(base_fee) if base_fee is not None else None,
            gas_limit=_hex_int(raw["gasLimit"]),
        )

    def latest_block(self) -> BlockInfo:
        return self.get_block("latest")

    def balance(self, address: str) -> int:
        return _hex_int(self.request("eth_getBalance", [normalize_address(address), "latest"]))

    def nonce(self, address: str, block: str = "pending") -> int:
        return _hex_int(self.request("eth_getTransactionCount", [normalize_address(address), block]))

    def code(self, address: str) -> bytes:
        return _hex_bytes(self.request("eth_getCode", [normalize_address(address), "latest"]))

    def get_logs(
        self,
        address: str,
        topics: LogTopics,
        from_block: int | str,
        to_block: int | str,
    ) -> tuple[LogEntry, ...]:
        """eth_getLogs for one contract over blocks [from_block, to_block], in chain order; topic
        positions may be None (any) or a list (any of).

        Providers cap what one eth_getLogs may cover (a block range, a number of results), and a
        contract deployed long ago is read from its deploy block: so the range is asked for
        `max_log_range` blocks at a time, a tag ("latest", "finalized", ...) first resolved to its
        block number so that every part reads up to the same block. A part the node refuses with an
        error answer is asked again in halves, and the rest of the range in parts of that size; the
        refusal is raised (RpcError) only once a single block is refused, or if the node could not be
        reached at all.
        """
        found: list[LogEntry] = []
        for part in self._log_parts(address, topics, from_block, to_block, newest_first=False):
            found.extend(part)
        return tuple(found)

    def latest_logs(
        self,
        address: str,
        topics: LogTopics,
        from_block: int | str,
        to_block: int | str,
    ) -> tuple[LogEntry, ...]:
        """The matching logs of the newest part of [from_block, to_block] that has any, in chain order
        (empty if none has): `get_logs`' parts read newest first, stopping at the first match.

        For an event that happens once per key (the lock of a settlement leg, a report's successful
        delivery), which is mostly recent, this reads a part or two instead of the history since a
        contract's deployment."""
        for part in self._log_parts(address, topics, from_block, to_block, newest_first=True):
            if part:
                return tuple(part)
        return ()

    def _log_parts(
        self,
        address: str,
        topics: LogTopics,
        from_block: int | str,
        to_block: int | str,
        *,
        newest_first: bool,
    ) -> Iterator[list[LogEntry]]:
        """The logs of [from_block, to_block] part by part (see get_logs), oldest or newest part first."""

        def topic(t: bytes | Sequence[bytes] | None) -> str | list[str] | None:
            if t is None:
                return None
            if isinstance(t, bytes):
                return "0x" + t.hex()
            return ["0x" + x.hex() for x in t]

        query = {"address": normalize_address(address), "topics": [topic(t) for t in topics]}
        first, last = self._block_number(from_block), self._block_number(to_block)
        span = self.max_log_range
        while first <= last:
            start, end = (
                (max(first, last - span + 1), last) if newest_first else (first, min(first + span - 1, last))
            )
            try:
                part = self.request("eth_getLogs", [{**query, "fromBlock": hex(start), "toBlock": hex(end)}])
            except RpcError as exc:
                if exc.code is None or end == start:
                    raise
                span = (end - start + 1) // 2
                continue
            yield [LogEntry.from_rpc(raw) for raw in part]
            if newest_first:
                last = start - 1
            else:
                first = end + 1

    def _block_number(self, block: int | str) -> int:
        """A block number as given, or the number of the block a tag names now ("earliest" is 0)."""
        if isinstance(block, int):
            return block
        if block == "earliest":
            return 0
        return self.block_number() if block == "latest" else self.get_block(block).number

    # -- calls ----------------------------------------------------------------------------------

    def call(self, call: Call | Any, *, sender: str | None = None, block: int | str = "latest") -> bytes:
        """eth_call; returns the raw return data. Raises ContractRevert if the call reverts."""
        resolved = _as_call(call)
        tag = hex(block) if isinstance(block, int) else block
        try:
            result = self.request("eth_call", [self._tx_fields(resolved, sender), tag])
        except RpcError as exc:
            raise _revert_or_same(exc, resolved.label) from exc
        return _hex_bytes(result)

    def estimate_gas(self, call: Call | Any, *, sender: str | None = None) -> int:
        """eth_estimateGas. Raises ContractRevert if the call would revert."""
        resolved = _as_call(call)
        try:
            return _hex_int(self.request("eth_estimateGas", [self._tx_fields(resolved, sender)]))
        except RpcError as exc:
            raise _revert_or_same(exc, resolved.label) from exc

    @staticmethod
    def _tx_fields(call: Call, sender: str | None) -> dict[str, str]:
        fields = {"data": "0x" + call.data.hex(), "value": hex(call.value)}
        if call.to is not None:
            fields["to"] = call.to
        if sender is not None:
            fields["from"] = normalize_address(sender)
        return fields

    # -- transactions ---------------------------------------------------------------------------

    def account(self, private_key: bytes) -> Sender:
        """The Sender for this key; the same object (and nonce counter) for every call with it."""
        fresh = Sender(private_key)
        with self._senders_lock:
            return self._senders.setdefault(fresh.address, fresh)

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees from the node: tip as suggested, max fee = 2 x base fee + tip (survives
        six full blocks of base-fee growth). Legacy gas price if the chain has no base fee."""
        base_fee = self.latest_block().base_fee_per_gas
        if base_fee is None:
            return {"gasPrice": _hex_int(self.request("eth_gasPrice"))}
        tip = _hex_int(self.request("eth_maxPriorityFeePerGas"))
        return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}

    def send(self, sender: Sender, call: Call | Any, *, gas: int | None = None) -> bytes:
        """Sign and send; returns the transaction hash without waiting for it to be mined.

        With `gas=None` the gas is estimated (+20%), which raises ContractRevert if the transaction
        would revert against the latest state. Raises RpcError if the node refuses the transaction
        (e.g. insufficient funds) or cannot be reached.
        """
        resolved = _as_call(call)
        if gas is None:
            estimate = self.estimate_gas(resolved, sender=sender.address)
            gas = estimate + estimate // _GAS_MARGIN_DIVISOR
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "gas": gas,
            "value": resolved.value,
            "data": resolved.data,
        }
        tx.update(self._fees())
        if resolved.to is not None:
            tx["to"] = Web3.to_checksum_address(resolved.to)
        with sender._lock:
            for attempt in range(_NONCE_RETRIES):
                if sender._next_nonce is None:
                    sender._next_nonce = self.nonce(sender.address, "pending")
                raw = sender.sign({**tx, "nonce": sender._next_nonce})
                try:
                    tx_hash = _hex_bytes(self.request("eth_sendRawTransaction", ["0x" + raw.hex()]))
                except RpcError as exc:
                    if exc.code is None:
                        # No answer: the node may or may not have the transaction; ask it next time.
                        sender._next_nonce = None
                        raise
                    if _is_nonce_conflict(exc) and attempt + 1 < _NONCE_RETRIES:
                        sender._next_nonce = None  # someone else used this key: re-read and retry
                        continue
                    raise  # refused outright (funds, fee, ...): the nonce was not consumed
                sender._next_nonce += 1
                return tx_hash
        raise AssertionError("unreachable: the loop returns or raises")

    def wait(self, tx_hash: bytes, timeout_s: float | None = None) -> TxReceipt:
        """Poll for the receipt every 10 ms. Raises TransactionTimeout after `timeout_s`
        (default: the client's timeout); the transaction may still be mined afterwards."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        hex_hash = "0x" + tx_hash.hex()
        while True:
            raw = self.request("eth_getTransactionReceipt", [hex_hash])
            if raw is not None and raw.get("blockNumber") is not None:
                return TxReceipt.from_rpc(raw)
            if time.monotonic() >= deadline:
                raise TransactionTimeout(
                    f"transaction {hex_hash} has no receipt after {limit:g}s; it may still be mined",
                    tx_hash=tx_hash,
                )
            time.sleep(_POLL_INTERVAL_S)

    def transact(
        self, sender: Sender, call: Call | Any, *, gas: int | None = None, timeout_s: float | None = None
    ) -> TxReceipt:
        """Send, wait for the receipt, and raise ContractRevert if the transaction reverted.

        Reverts are caught at gas estimation when possible; a transaction that reverts on chain
        (status 0) is replayed with eth_call at its block to recover the revert reason.
        """
        resolved = _as_call(call)
        tx_hash = self.send(sender, resolved, gas=gas)
        receipt = self.wait(tx_hash, timeout_s)
        if receipt.status != 1:
            raise self._explain_failure(sender, resolved, receipt)
        return receipt

    def _explain_failure(self, sender: Sender, call: Call, receipt: TxReceipt) -> ContractRevert:
        for block in (receipt.block_number, "latest"):
            try:
                self.call(call, sender=sender.address, block=block)
            except ContractRevert as revert:
                revert.tx_hash = receipt.tx_hash
                return revert
            except RpcError:
                continue  # the node may have pruned that block's state; try the latest
            break
        return ContractRevert(
            "",
            (),
            f"{call.label} reverted on chain in tx 0x{receipt.tx_hash.hex()} (gas used {receipt.gas_used}); "
            "the reason could not be recovered by replaying it (out of gas, or state changed since)",
            tx_hash=receipt.tx_hash,
        )

    def deploy(self, sender: Sender, artifact_name: str, *args: object, gas: int | None = None) -> str:
        """Deploy a compiled artifact with constructor `args`; returns its (lowercase) address."""
        artifact = load_artifact(artifact_name)
        data = artifact.bytecode + artifact.contract_abi.encode_constructor(args)
        receipt = self.transact(
            sender, Call(to=None, data=data, label=f"{artifact_name}.constructor"), gas=gas
        )
        if receipt.contract_address is None:
            raise RpcError(
                f"deploying {artifact_name}: receipt has no contract address",
                method="eth_getTransactionReceipt",
            )
        return receipt.contract_address

    def transfer_eth(self, sender: Sender, to: str, amount_wei: int) -> TxReceipt:
        """Send native currency (gas for the oracle nodes' transmitter keys, for example)."""
        call = Call(to=normalize_address(to, field_name="to"), data=b"", label="transfer", value=amount_wei)
        return self.transact(sender, call, gas=21_000)

    def contract(self, artifact_name: str, address: str) -> Any:
        """A web3 contract object for a compiled artifact at `address`: an escape hatch for calls the
        typed bindings (crossdvp.chain.contracts) do not cover; pass its bound functions to transact."""
        abi = list(load_artifact(artifact_name).abi)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)

    # -- development nodes (anvil / hardhat) ----------------------------------------------------

    def snapshot(self) -> int:
        """evm_snapshot: an id to `revert` to. Anvil forgets a snapshot once reverted to."""
        return _hex_int(self.request("evm_snapshot"))

    def revert(self, snapshot_id: int) -> None:
        """evm_revert to a snapshot. Raises RpcError if the node does not know the snapshot."""
        if not self.request("evm_revert", [hex(snapshot_id)]):
            raise RpcError(
                f"evm_revert: unknown snapshot {snapshot_id}", method="evm_revert", retryable=False
            )
        # Reverting rewinds nonces too; our counters must follow.
        with self._senders_lock:
            for sender in self._senders.values():
                with sender._lock:
                    sender._next_nonce = None

    def increase_time(self, seconds: int) -> None:
        """evm_increaseTime: the next block's timestamp moves `seconds` further (mine to apply it)."""
        self.request("evm_increaseTime", [seconds])

    def set_next_block_timestamp(self, timestamp_s: int) -> None:
        self.request("evm_setNextBlockTimestamp", [timestamp_s])

    def mine(self, blocks: int = 1) -> None:
        """Mine `blocks` blocks now (evm_mine / anvil_mine); 0 mines nothing.

        Raises ValueError if `blocks` is negative.
        """
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        if blocks == 0:
            return  # anvil_mine(0) would mine one block
        if blocks == 1:
            self.request("evm_mine")
        else:
            self.request("anvil_mine", [hex(blocks)])


def _as_call(call: Call | Any) -> Call:
    """Accept our Call or a bound web3 ContractFunction (`contract.functions.name(args)`).

    web3 exposes the calldata of a bound function only through `_encode_transaction_data`; keeping
    that here leaves the rest of crossdvp free of web3's loosely typed objects.
    """
    if isinstance(call, Call):
        return call
    address = getattr(call, "address", None)
    if address is None or not hasattr(call, "_encode_transaction_data"):
        raise TypeError(f"expected a Call or a bound web3 contract function, got {call!r}")
    data = _hex_bytes(call._encode_transaction_data())
    return Call(to=str(address).lower(), data=data, label=str(getattr(call, "fn_name", "call")))


def _revert_or_same(error: RpcError, label: str) -> RpcError | ContractRevert:
    """A ContractRevert if the node's error is an execution revert, else the RpcError unchanged.

    Nodes answer a revert with code 3 and the revert bytes as hex `data` (geth, anvil); some send
    -32000 with the data only. Without data the revert reason is unknown but it is still a revert.
    """
    data = error.data
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    has_data = isinstance(data, str) and data.startswith("0x")
    if error.code != 3 and not has_data:
        return error
    raw = _hex_bytes(data) if has_data else b""
    decoded = decode_revert(raw, known_errors())
    return ContractRevert(
        decoded.error_name,
        decoded.args,
        f"{label} reverted: {decoded.description}",
        named_args=decoded.named_args,
        revert_data=raw,
    )
