"""Just enough of the Solidity ABI to encode calls and decode results, events and custom errors.

The bindings and the revert decoder work from the compiled artifacts' JSON ABI with eth_abi directly:
typed Python values in and out (lowercase addresses, bytes, ints), no web3 data structures to unwrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
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
        return keccak(text=_signature(self.name, self.inputs))

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        """Arguments by name; indexed value types come from topics, the rest from data."""
        indexed = [p for p in self.inputs if p.indexed]
        plain = [p for p in self.inputs if not p.indexed]
        if len(topics) != len(indexed) + 1 or topics[0] != self.topic0:
            raise ValueError(f"log does not match event {self.contract}.{self.name}")
        values: dict[str, Any] = {}
        for param, topic in zip(indexed, topics[1:], strict=True):
            # Indexed dynamic types (string, bytes, arrays) are stored as their hash; keep the hash.
            dynamic = (
                param.type in ("string", "bytes") or param.type.endswith("]") or param.type.startswith("(")
            )
            values[param.name] = topic if dynamic else decode([param.type], topic)[0]
        for param, value in zip(plain, decode([p.type for p in plain], data), strict=True):
            values[param.name] = value
        return values


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
