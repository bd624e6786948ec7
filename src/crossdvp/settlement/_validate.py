"""Field checks shared by the core's dataclasses. Each raises the error class it is handed, with a
message naming the field, so every constructor reports its own kind of rejection."""

from __future__ import annotations

import re

from eth_utils.address import is_checksum_address

__all__ = [
    "EIP155_PREFIX",
    "ZERO_ADDRESS",
    "check_address",
    "check_bytes",
    "check_int",
    "check_network",
    "check_text",
    "is_eip155",
]

EIP155_PREFIX = "eip155:"
ZERO_ADDRESS = "0x" + "00" * 20

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# CAIP-2 shape (namespace:reference), with a wider reference (up to 64 characters, '.' allowed) than
# CAIP-2's [-_a-zA-Z0-9]{1,32}: payment ledger ids are operator-chosen names (the payments service
# accepts [A-Za-z0-9._-]{1,64}).
_NETWORK = re.compile(r"[-a-z0-9]{3,8}:[-_.a-zA-Z0-9]{1,64}")
# eip155 references are decimal chain ids without leading zeros, so one chain has exactly one spelling
# (otherwise "eip155:01" and "eip155:1" would be two networks with separate views).
_EIP155_REFERENCE = re.compile(r"[1-9][0-9]*")
MAX_TEXT_LENGTH = 128


def is_eip155(network: str) -> bool:
    return network.startswith(EIP155_PREFIX)


def check_int(value: object, field: str, low: int, high: int, error: type[Exception]) -> int:
    """`value` as an int in [low, high]; bools are refused (True is not an amount)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{field} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise error(f"{field} must be in [{low}, {high}], got {value}")
    return int(value)


def check_bytes(value: object, field: str, length: int, error: type[Exception]) -> bytes:
    """`value` as immutable bytes of exactly `length` bytes (bytearray/memoryview are copied)."""
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise error(f"{field} must be {length} bytes, got {type(value).__name__}")
    if len(value) != length:
        raise error(f"{field} must be exactly {length} bytes, got {len(value)}")
    return value


def check_text(value: object, field: str, error: type[Exception]) -> str:
    """Non-empty printable ASCII of at most 128 characters without surrounding whitespace.

    Surrounding whitespace is refused rather than stripped: " USD" and "USD" hash differently, and a
    silently different terms hash would only surface as a lock that never matches.
    """
    if not isinstance(value, str):
        raise error(f"{field} must be a string, got {type(value).__name__}")
    if not value:
        raise error(f"{field} must not be empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise error(f"{field} must be at most {MAX_TEXT_LENGTH} characters, got {len(value)}")
    if not (value.isascii() and value.isprintable()):
        raise error(f"{field} must be printable ASCII, got {value!r}")
    if value != value.strip():
        raise error(f"{field} must not start or end with whitespace, got {value!r}")
    return value


def check_network(value: object, field: str, error: type[Exception]) -> str:
    """A CAIP-2 style network id: "eip155:<chain_id>" or e.g. "payments:<ledger_id>"."""
    if not isinstance(value, str):
        raise error(f"{field} must be a string, got {type(value).__name__}")
    if not _NETWORK.fullmatch(value):
        raise error(
            f"{field} must be a network id 'namespace:reference' (e.g. 'eip155:31337', "
            f"'payments:crossdvp-payments'), got {value!r}"
        )
    if is_eip155(value) and not _EIP155_REFERENCE.fullmatch(value[len(EIP155_PREFIX) :]):
        raise error(f"{field}: an eip155 chain id must be a decimal without leading zeros, got {value!r}")
    return value


def check_address(value: object, field: str, error: type[Exception], *, allow_zero: bool = False) -> str:
    """A 20-byte hex address, returned lowercase.

    Mixed-case input must carry a valid EIP-55 checksum: a mixed-case address with a bad checksum is a
    typo, and lowercasing it would hide that.
    """
    if not isinstance(value, str):
        raise error(f"{field} must be an address string, got {type(value).__name__}")
    if not _ADDRESS.fullmatch(value):
        raise error(f"{field} must be an address '0x' + 40 hex digits, got {value!r}")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise error(f"{field} has an invalid EIP-55 checksum: {value!r}")
    lowered = "0x" + body.lower()
    if not allow_zero and lowered == ZERO_ADDRESS:
        raise error(f"{field} must not be the zero address")
    return lowered
