"""Settlement terms: what every party must lock before the deadline for the settlement to happen.

Terms are step 1 of the protocol (DESIGN.md "The protocol"). A settlement has a 32-byte id, a deadline
in unix seconds, and 1..255 legs, each a transfer of `amount_minor` units of `asset` from `payer` to
`payee` on one `network`. A DvP is the two-leg case; nothing here assumes two legs or two networks.

`terms_hash` = keccak256 of the canonical ABI encoding

    abi.encode(bytes32 settlementId, uint64 deadline,
               (string network, string asset, uint256 amount, string payer, string payee)[] legs)

Every lock names it, so a lock commits its payer to these exact terms and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from crossdvp.settlement import _validate as v
from crossdvp.settlement.errors import InvalidTerms

__all__ = [
    "MAX_AMOUNT_MINOR",
    "MAX_DEADLINE_S",
    "MAX_LEGS",
    "TERMS_ABI_TYPES",
    "Decision",
    "Leg",
    "Terms",
    "legs_on",
]

# The escrow stores amounts as uint96 to pack a lock into few storage slots.
MAX_AMOUNT_MINOR: Final = 2**96 - 1
MAX_DEADLINE_S: Final = 2**64 - 1  # uint64 in the encoding and in the escrow
MAX_LEGS: Final = 255  # leg indices are uint8 (0..254 used)
TERMS_ABI_TYPES: Final = ("bytes32", "uint64", "(string,string,uint256,string,string)[]")

_HEX32: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_LEG_KEYS: Final = frozenset({"network", "asset", "amount_minor", "payer", "payee"})
_TERMS_KEYS: Final = frozenset({"settlement_id", "deadline_s", "legs"})


class Decision(IntEnum):
    """The outcome of a settlement. SETTLE and ABORT are the payload codes; PENDING is never reported."""

    PENDING = 0
    SETTLE = 1
    ABORT = 2


@dataclass(frozen=True, slots=True)
class Leg:
    """One transfer of the settlement, locked by `payer` on `network`.

    On an eip155 network `asset` is the token address and `payer`/`payee` are account addresses (all
    normalized to lowercase). On a payment ledger `asset` is an ISO 4217 code and `payer`/`payee` are
    ledger account ids.

    Raises InvalidTerms when: network is not 'namespace:reference' (eip155 chain ids decimal without
    leading zeros); amount_minor is not an int in [1, 2**96-1]; asset/payer/payee is not non-empty
    printable ASCII of <= 128 characters without surrounding whitespace; on eip155, asset/payer/payee
    is not an address, has a bad EIP-55 checksum, or is the zero address.
    """

    network: str
    asset: str
    amount_minor: int
    payer: str
    payee: str

    def __post_init__(self) -> None:
        network = v.check_network(self.network, "leg.network", InvalidTerms)
        v.check_int(self.amount_minor, "leg.amount_minor", 1, MAX_AMOUNT_MINOR, InvalidTerms)
        for name in ("asset", "payer", "payee"):
            value = getattr(self, name)
            if v.is_eip155(network):
                object.__setattr__(self, name, v.check_address(value, f"leg.{name}", InvalidTerms))
            else:
                v.check_text(value, f"leg.{name}", InvalidTerms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "asset": self.asset,
            "amount_minor": self.amount_minor,
            "payer": self.payer,
            "payee": self.payee,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Leg:
        """Raises InvalidTerms for a non-mapping, missing or unknown keys, and every Leg rejection."""
        if not isinstance(data, Mapping):
            raise InvalidTerms(f"a leg must be an object, got {type(data).__name__}")
        _check_keys(data, _LEG_KEYS, "leg")
        return cls(
            network=data["network"],
            asset=data["asset"],
            amount_minor=data["amount_minor"],
            payer=data["payer"],
            payee=data["payee"],
        )


@dataclass(frozen=True, slots=True)
class Terms:
    """The terms of one settlement. Validated and hashed at construction (the hash is cached).

    Raises InvalidTerms when: settlement_id is not 32 bytes; deadline_s is not an int in
    [1, 2**64-1]; legs is not 1..255 Leg instances (a list is accepted and stored as a tuple).
    """

    settlement_id: bytes
    deadline_s: int
    legs: tuple[Leg, ...]
    _encoded: bytes = field(init=False, repr=False, compare=False)
    _terms_hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "settlement_id", v.check_bytes(self.settlement_id, "settlement_id", 32, InvalidTerms)
        )
        v.check_int(self.deadline_s, "deadline_s", 1, MAX_DEADLINE_S, InvalidTerms)
        legs: object = self.legs
        if isinstance(legs, list):
            legs = tuple(legs)
        if not isinstance(legs, tuple):
            raise InvalidTerms(f"legs must be a tuple of Leg, got {type(legs).__name__}")
        if not 1 <= len(legs) <= MAX_LEGS:
            raise InvalidTerms(f"legs must hold 1..{MAX_LEGS} legs, got {len(legs)}")
        for index, leg in enumerate(legs):
            if not isinstance(leg, Leg):
                raise InvalidTerms(f"legs[{index}] must be a Leg, got {type(leg).__name__}")
        object.__setattr__(self, "legs", legs)
        encoded = _encode_terms(self.settlement_id, self.deadline_s, legs)
        object.__setattr__(self, "_encoded", encoded)
        object.__setattr__(self, "_terms_hash", keccak(encoded))

    def encode(self) -> bytes:
        """The canonical ABI encoding (see the module docstring)."""
        return self._encoded

    @property
    def terms_hash(self) -> bytes:
        """keccak256(encode()): the 32 bytes every lock and every report item names."""
        return self._terms_hash

    def networks(self) -> frozenset[str]:
        """Every network a leg of these terms is on."""
        return frozenset(leg.network for leg in self.legs)

    @classmethod
    def decode(cls, data: bytes) -> Terms:
        """Terms from their canonical encoding.

        Raises InvalidTerms when the bytes do not ABI-decode, are not the canonical encoding of what they
        decode to (e.g. padding or offsets chosen differently), or decode to invalid terms.
        """
        try:
            settlement_id, deadline_s, legs = abi_decode(list(TERMS_ABI_TYPES), bytes(data))
        except Exception as exc:  # eth_abi raises several unrelated types for malformed input
            raise InvalidTerms(f"terms encoding does not decode: {exc}") from exc
        terms = cls(
            settlement_id=settlement_id,
            deadline_s=deadline_s,
            legs=tuple(
                Leg(network=n, asset=a, amount_minor=amt, payer=p, payee=q) for n, a, amt, p, q in legs
            ),
        )
        if terms.encode() != bytes(data):
            raise InvalidTerms("terms encoding is not canonical (re-encoding gives different bytes)")
        return terms

    def to_dict(self) -> dict[str, Any]:
        """JSON form: {"settlement_id": "0x..", "deadline_s": int, "legs": [{...}]} (amounts as ints)."""
        return {
            "settlement_id": "0x" + self.settlement_id.hex(),
            "deadline_s": self.deadline_s,
            "legs": [leg.to_dict() for leg in self.legs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Terms:
        """Terms from their JSON form.

        Raises InvalidTerms for a non-mapping, missing or unknown keys, a settlement_id that is not
        "0x" + 64 hex digits, legs that is not a list, and every Terms/Leg rejection.
        """
        if not isinstance(data, Mapping):
            raise InvalidTerms(f"terms must be an object, got {type(data).__name__}")
        _check_keys(data, _TERMS_KEYS, "terms")
        legs = data["legs"]
        if not isinstance(legs, list | tuple):
            raise InvalidTerms(f"legs must be a list, got {type(legs).__name__}")
        return cls(
            settlement_id=_hex32(data["settlement_id"], "settlement_id"),
            deadline_s=data["deadline_s"],
            legs=tuple(Leg.from_dict(leg) for leg in legs),
        )


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _encode_string(value: str) -> bytes:
    data = value.encode("utf-8")
    return _word(len(data)) + data + b"\x00" * (-len(data) % 32)


def _encode_terms(settlement_id: bytes, deadline_s: int, legs: tuple[Leg, ...]) -> bytes:
    """abi.encode(bytes32, uint64, (string,string,uint256,string,string)[]) written out (eth_abi's
    general encoder was three quarters of parsing a terms object, and every node parses each terms once
    per registration and per peer that shares it). The layout is fixed: a head of three words (id,
    deadline, offset 0x60 of the array), the array's length, one offset per leg (from the first of
    them), then each leg as a head of five words (offsets of its strings, the amount in place) and its
    strings (length word, bytes, zero padding to a word). Checked against eth_abi in the tests."""
    encoded_legs: list[bytes] = []
    for leg in legs:
        tail_network, tail_asset = _encode_string(leg.network), _encode_string(leg.asset)
        tail_payer, tail_payee = _encode_string(leg.payer), _encode_string(leg.payee)
        offset = 5 * 32
        head = [_word(offset)]
        offset += len(tail_network)
        head.append(_word(offset))
        offset += len(tail_asset)
        head.append(_word(leg.amount_minor))
        head.append(_word(offset))
        offset += len(tail_payer)
        head.append(_word(offset))
        encoded_legs.append(b"".join(head) + tail_network + tail_asset + tail_payer + tail_payee)
    offsets: list[bytes] = []
    position = 32 * len(encoded_legs)
    for encoded in encoded_legs:
        offsets.append(_word(position))
        position += len(encoded)
    return b"".join(
        [settlement_id, _word(deadline_s), _word(0x60), _word(len(legs)), *offsets, *encoded_legs]
    )


def _check_keys(data: Mapping[str, Any], expected: frozenset[str], what: str) -> None:
    # Unknown keys are refused: a misspelt "amount" would otherwise be silently ignored.
    missing = expected - data.keys()
    unknown = data.keys() - expected
    if missing:
        raise InvalidTerms(f"{what} is missing {sorted(missing)}")
    if unknown:
        raise InvalidTerms(f"{what} has unknown keys {sorted(unknown, key=str)}")


def _hex32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise InvalidTerms(f"{name} must be '0x' + 64 hex digits, got {value!r}")
    return bytes.fromhex(value[2:])


def legs_on(terms: Terms, network: str) -> Iterable[tuple[int, Leg]]:
    """(leg_index, leg) for every leg of `terms` on `network`, in index order."""
    return ((i, leg) for i, leg in enumerate(terms.legs) if leg.network == network)
