"""The base of the typed contract bindings: encode a call, read a view, send a write, decode logs."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from crossdvp.chain._abi import ContractAbi
from crossdvp.chain._artifacts import load_artifact
from crossdvp.chain.client import Call, EvmClient, LogEntry, Sender, TxReceipt, normalize_address

__all__ = ["Binding", "EventPosition"]


class EventPosition:
    """Where a log sits in the chain; every decoded event carries these four fields."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ("block_number", "block_hash", "tx_hash", "log_index")

    @staticmethod
    def of(log: LogEntry) -> dict[str, Any]:
        return {
            "block_number": log.block_number,
            "block_hash": log.block_hash,
            "tx_hash": log.tx_hash,
            "log_index": log.log_index,
        }


class Binding:
    """A deployed contract: its client, lowercase address and ABI.

    Subclasses set `artifact_name` and expose the Solidity functions as snake_case methods taking and
    returning Python types; writes take the `sender` first and return the TxReceipt (raising
    ContractRevert with the decoded custom error if the transaction reverts).
    """

    artifact_name: ClassVar[str]

    def __init__(self, client: EvmClient, address: str) -> None:
        self.client = client
        self.address = normalize_address(address, field_name=f"{self.artifact_name} address")
        self.abi: ContractAbi = load_artifact(self.artifact_name).contract_abi

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"

    @classmethod
    def deploy(cls, client: EvmClient, sender: Sender, *args: object) -> Self:
        """Deploy the contract with constructor `args` and bind to it."""
        return cls(client, client.deploy(sender, cls.artifact_name, *args))

    @property
    def contract(self) -> Any:
        """The web3 contract object, for anything the binding does not cover."""
        return self.client.contract(self.artifact_name, self.address)

    def call_data(self, function: str, *args: object) -> Call:
        """The Call for `function(*args)`, to send with EvmClient.send/transact or inspect."""
        fn = self.abi.function(function, len(args))
        return Call(to=self.address, data=fn.encode_call(args), label=f"{self.artifact_name}.{function}")

    def _read(self, function: str, *args: object, block: int | str = "latest") -> tuple[Any, ...]:
        fn = self.abi.function(function, len(args))
        call = Call(to=self.address, data=fn.encode_call(args), label=f"{self.artifact_name}.{function}")
        return fn.decode_output(self.client.call(call, block=block))

    def _read_one(self, function: str, *args: object, block: int | str = "latest") -> Any:
        (value,) = self._read(function, *args, block=block)
        return value

    def _write(self, sender: Sender, function: str, *args: object, gas: int | None = None) -> TxReceipt:
        return self.client.transact(sender, self.call_data(function, *args), gas=gas)

    def _logs(
        self,
        event: str,
        from_block: int | str,
        to_block: int | str,
        *indexed: bytes | None,
        latest: bool = False,
    ) -> list[tuple[LogEntry, dict[str, Any]]]:
        """eth_getLogs for one event of this contract, optionally filtered on indexed topics; with
        `latest`, only the newest part of the range that has any (EvmClient.latest_logs)."""
        abi_event = self.abi.event(event)
        read = self.client.latest_logs if latest else self.client.get_logs
        logs = read(self.address, [abi_event.topic0, *indexed], from_block, to_block)
        return [(log, abi_event.decode(log.topics, log.data)) for log in logs]

    def _receipt_logs(self, receipt: TxReceipt, event: str) -> list[tuple[LogEntry, dict[str, Any]]]:
        """The `event` logs this contract emitted in `receipt`."""
        abi_event = self.abi.event(event)
        return [
            (log, abi_event.decode(log.topics, log.data))
            for log in receipt.logs
            if log.address == self.address and log.topics and log.topics[0] == abi_event.topic0
        ]


def topic_address(address: str) -> bytes:
    """An address as a 32-byte indexed-topic value."""
    return bytes(12) + bytes.fromhex(normalize_address(address)[2:])


def topic_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")
