"""Just enough of the Solidity ABI to encode calls and decode results, events and custom errors.

The bindings and the revert decoder work from the compiled artifacts' JSON ABI with eth_abi directly:
typed Python values in and out (lowercase addresses, bytes, ints), no web3 data structures to unwrap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

__all__ = [
    "AbiError",
    "AbiEvent",
    "AbiFunction",
    "AbiParam",
    "ContractAbi",
    "DecodedRevert",
    "decode_revert",
    "format_value",
]

_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string): require(cond, "reason")
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256): assert, overflow, division by zero, ...

# https://docs.soliditylang.org/en/latest/control-structures.html#panic-via-assert-and-error-via-require
_PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialized function variable",
}


def _canonical_type(param: Mapping[str, Any]) -> str:
    """The ABI type string of one parameter, with tuples spelled out: `(address,uint96)[]`."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@dataclass(frozen=True, slots=True)
class AbiParam:
    name: str
    type: str
    indexed: bool = False


def _params(items: Sequence[Mapping[str, Any]]) -> tuple[AbiParam, ...]:
    return tuple(
        AbiParam(
            name=str(p.get("name") or f"arg{i}"), type=_canonical_type(p), indexed=bool(p.get("indexed"))
        )
        for i, p in enumerate(items)
    )


def _signature(name: str, params: Sequence[AbiParam]) -> str:
    return f"{name}({','.join(p.type for p in params)})"


@dataclass(frozen=True, slots=True)
class AbiFunction:
    contract: str
    name: str
    inputs: tuple[AbiParam, ...]
    outputs: tuple[AbiParam, ...]
    mutability: str

    @property
    def signature(self) -> str:
        return _signature(self.name, self.inputs)

    @property
    def selector(self) -> bytes:
        return keccak(text=self.signature)[:4]

    def encode_call(self, args: Sequence[object]) -> bytes:
        if len(args) != len(self.inputs):
            raise TypeError(
                f"{self.contract}.{self.name} takes {len(self.inputs)} arguments, got {len(args)}"
            )
        return self.selector + encode([p.type for p in self.inputs], list(args))

    def decode_output(self, data: bytes) -> tuple[Any, ...]:
        return tuple(decode([p.type for p in self.outputs], data))


@dataclass(frozen=True, slots=True)
class AbiError:
    contract: str
    name: str
    inputs: tuple[AbiParam, ...]

    @property
    def selector(self) -> bytes:
        return keccak(text=_signature(self.name, self.inputs))[:4]


@dataclass(frozen=True, slots=True)
class AbiEvent:
    contract: str
    name: str
    inputs: tuple[AbiParam, ...]

    @property
    def topic0(self) -> bytes:
        return _event_layout(self).topic0

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        """Arguments by name; indexed value types come from topics, the rest from data.

        Raises ValueError if the log is not this event's (topic count or topic0), or if a word does not
        hold a value of its type (non-zero padding, a bool not 0/1), as eth_abi's strict decoder does.
        Events whose data holds only one-word types (every event the escrow, the forwarder and the
        tokens emit) are read word by word, which is what eth_abi does for them at a tenth of the cost:
        a node decodes every Locked log it observes.
        """
        layout = _event_layout(self)
        if len(topics) != len(layout.indexed) + 1 or topics[0] != layout.topic0:
            raise ValueError(f"log does not match event {self.contract}.{self.name}")
        values: dict[str, Any] = {}
        for (name, read), topic in zip(layout.indexed, topics[1:], strict=True):
            values[name] = topic if read is None else read(topic)
        if layout.plain_words is None:
            plain = [p for p in self.inputs if not p.indexed]
            decoded = _decode_or_value_error([p.type for p in plain], data)
            values.update(zip((p.name for p in plain), decoded, strict=True))
            return values
        if len(data) != 32 * len(layout.plain_words):
            raise ValueError(
                f"{self.contract}.{self.name} data is {len(data)} bytes, not {32 * len(layout.plain_words)}"
            )
        for i, (name, word_reader) in enumerate(layout.plain_words):
            values[name] = word_reader(data[32 * i : 32 * i + 32])
        return values


_WordReader = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class _EventLayout:
    topic0: bytes
    # (name, reader) per indexed argument; reader None for a type of more than one word (string,
    # bytes, arrays, tuples), whose topic is its hash and is kept as such.
    indexed: tuple[tuple[str, _WordReader | None], ...]
    # (name, reader) per data argument when each is one word; None when some is not (eth_abi decodes).
    plain_words: tuple[tuple[str, _WordReader], ...] | None


@functools.cache
def _event_layout(event: AbiEvent) -> _EventLayout:
    indexed: list[tuple[str, _WordReader | None]] = []
    plain: list[tuple[str, _WordReader]] = []
    one_word = True
    for param in event.inputs:
        read = _word_reader(param.type)
        if param.indexed:
            indexed.append((param.name, read))
        elif read is None:
            one_word = False
        else:
            plain.append((param.name, read))
    return _EventLayout(
        topic0=keccak(text=_signature(event.name, event.inputs)),
        indexed=tuple(indexed),
        plain_words=tuple(plain) if one_word else None,
    )


def _padding_error(kind: str, word: bytes) -> ValueError:
    return ValueError(f"not a {kind} word (non-zero padding): 0x{word.hex()}")


@functools.cache
def _word_reader(kind: str) -> _WordReader | None:
    """How to read a value of ABI type `kind` from its one 32-byte word, with eth_abi's strict checks
    (the padding is zero, or the sign extension for intN); None unless `kind` is one word."""
    if kind == "address":

        def read_address(word: bytes) -> str:
            if len(word) != 32 or any(word[:12]):
                raise _padding_error(kind, word)
            return "0x" + word[12:].hex()

        return read_address
    if kind == "bool":

        def read_bool(word: bytes) -> bool:
            if len(word) != 32 or any(word[:31]) or word[31] > 1:
                raise _padding_error(kind, word)
            return word[31] == 1

        return read_bool
    for prefix, signed in (("uint", False), ("int", True)):
        bits = kind.removeprefix(prefix)
        if kind.startswith(prefix) and bits.isdigit() and 8 <= int(bits) <= 256 and int(bits) % 8 == 0:
            low, high = (-(1 << (int(bits) - 1)), 1 << (int(bits) - 1)) if signed else (0, 1 << int(bits))

            def read_int(word: bytes, low: int = low, high: int = high, signed: bool = signed) -> int:
                value = int.from_bytes(word, "big", signed=signed)
                if len(word) != 32 or not low <= value < high:
                    raise _padding_error(kind, word)
                return value

            return read_int
    size = kind.removeprefix("bytes")
    if kind.startswith("bytes") and size.isdigit() and 1 <= int(size) <= 32:
        n = int(size)

        def read_bytes(word: bytes) -> bytes:
            if len(word) != 32 or any(word[n:]):
                raise _padding_error(kind, word)
            return bytes(word[:n])

        return read_bytes
    return None


def _decode_or_value_error(types: list[str], data: bytes) -> tuple[Any, ...]:
    try:
        return tuple(decode(types, data))
    except DecodingError as exc:
        raise ValueError(str(exc)) from exc


class ContractAbi:
    """The functions, errors and events of one compiled contract."""

    def __init__(self, contract: str, abi: Sequence[Mapping[str, Any]]) -> None:
        self.contract = contract
        self.functions: dict[str, list[AbiFunction]] = {}
        self.errors: dict[bytes, AbiError] = {}
        self.events: dict[str, AbiEvent] = {}
        self.constructor_inputs: tuple[AbiParam, ...] = ()
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                fn = AbiFunction(
                    contract=contract,
                    name=str(item["name"]),
                    inputs=_params(item.get("inputs", [])),
                    outputs=_params(item.get("outputs", [])),
                    mutability=str(item.get("stateMutability", "nonpayable")),
                )
                self.functions.setdefault(fn.name, []).append(fn)
            elif kind == "error":
                error = AbiError(
                    contract=contract, name=str(item["name"]), inputs=_params(item.get("inputs", []))
                )
                self.errors[error.selector] = error
            elif kind == "event":
                event = AbiEvent(
                    contract=contract, name=str(item["name"]), inputs=_params(item.get("inputs", []))
                )
                self.events[event.name] = event
            elif kind == "constructor":
                self.constructor_inputs = _params(item.get("inputs", []))

    def function(self, name: str, arg_count: int) -> AbiFunction:
        """The function `name` taking `arg_count` arguments (overloads are told apart by arity only)."""
        candidates = [f for f in self.functions.get(name, []) if len(f.inputs) == arg_count]
        if len(candidates) != 1:
            known = sorted(self.functions)
            raise TypeError(
                f"{self.contract} has {len(candidates)} functions named {name!r} taking {arg_count} "
                f"arguments; functions: {', '.join(known)}"
            )
        return candidates[0]

    def event(self, name: str) -> AbiEvent:
        try:
            return self.events[name]
        except KeyError:
            raise TypeError(f"{self.contract} has no event {name!r}") from None

    def encode_constructor(self, args: Sequence[object]) -> bytes:
        if len(args) != len(self.constructor_inputs):
            raise TypeError(
                f"{self.contract}'s constructor takes {len(self.constructor_inputs)} arguments, "
                f"got {len(args)}"
            )
        return encode([p.type for p in self.constructor_inputs], list(args))


def format_value(value: object) -> str:
    """A revert argument as a reader wants it: bytes in 0x hex, tuples in parentheses."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return str(value)


@dataclass(frozen=True, slots=True)
class DecodedRevert:
    error_name: str  # "" when the data is empty or its selector unknown
    args: tuple[Any, ...]
    named_args: dict[str, Any]
    description: str  # "ZeroAmount()", "DeadlinePassed(deadline=5, blockTimestamp=9)", ...


def decode_revert(data: bytes, errors: Mapping[bytes, AbiError]) -> DecodedRevert:
    """Decode revert data: Error(string), Panic(uint256), or a custom error from `errors`.

    Never raises: data that cannot be decoded is described as such, with its raw hex.
    """
    if not data:
        return DecodedRevert("", (), {}, "no revert data (out of gas, invalid opcode, or a bare revert)")
    selector, body = data[:4], data[4:]
    try:
        if selector == _ERROR_STRING_SELECTOR:
            (reason,) = decode(["string"], body)
            return DecodedRevert("Error", (reason,), {"reason": reason}, f"Error({reason!r})")
        if selector == _PANIC_SELECTOR:
            (code,) = decode(["uint256"], body)
            meaning = _PANIC_REASONS.get(code, "unknown panic code")
            return DecodedRevert("Panic", (code,), {"code": code}, f"Panic(0x{code:02x}: {meaning})")
        error = errors.get(selector)
        if error is not None:
            values = tuple(decode([p.type for p in error.inputs], body))
            named = {p.name: v for p, v in zip(error.inputs, values, strict=True)}
            shown = ", ".join(f"{name}={format_value(v)}" for name, v in named.items())
            return DecodedRevert(error.name, values, named, f"{error.name}({shown})")
    except Exception:  # noqa: S110 - malformed revert data must still produce a readable message
        pass
    return DecodedRevert("", (), {}, f"unknown revert data 0x{data.hex()}")
