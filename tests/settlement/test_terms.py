"""Terms and legs: validation at construction, canonical encoding, terms_hash, JSON form."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from hypothesis import given

from crossdvp.settlement import MAX_AMOUNT_MINOR, InvalidTerms, Leg, Terms
from crossdvp.settlement.terms import TERMS_ABI_TYPES
from tests.settlement.strategies import ADDRESSES, terms

CHAIN_LEG = Leg("eip155:31337", ADDRESSES[0], 10**18, ADDRESSES[1], ADDRESSES[2])
CASH_LEG = Leg("payments:crossdvp-payments", "USD", 100_00, "acct-bob", "acct-alice")


def make_terms(**changes: Any) -> Terms:
    base: dict[str, Any] = {
        "settlement_id": b"\x01" * 32,
        "deadline_s": 1_700_000_000,
        "legs": (CHAIN_LEG, CASH_LEG),
    }
    base.update(changes)
    return Terms(**base)


@given(terms(max_legs=8))
def test_encoding_round_trips(t: Terms) -> None:
    assert Terms.decode(t.encode()) == t
    assert Terms.from_dict(t.to_dict()) == t
    assert t.terms_hash == keccak(t.encode())


@given(terms(max_legs=8))
def test_the_written_out_encoding_is_eth_abis_byte_for_byte(t: Terms) -> None:
    legs = [(leg.network, leg.asset, leg.amount_minor, leg.payer, leg.payee) for leg in t.legs]
    assert t.encode() == abi_encode(list(TERMS_ABI_TYPES), [t.settlement_id, t.deadline_s, legs])


def test_encoding_is_the_solidity_abi_encoding() -> None:
    t = make_terms()
    sid, deadline, legs = abi_decode(
        ["bytes32", "uint64", "(string,string,uint256,string,string)[]"], t.encode()
    )
    assert (sid, deadline) == (b"\x01" * 32, 1_700_000_000)
    assert legs == (
        ("eip155:31337", ADDRESSES[0], 10**18, ADDRESSES[1], ADDRESSES[2]),
        ("payments:crossdvp-payments", "USD", 10000, "acct-bob", "acct-alice"),
    )
    # head: bytes32, uint64 padded to a word, offset of the legs array (3 words)
    enc = t.encode()
    assert enc[:32] == b"\x01" * 32
    assert int.from_bytes(enc[32:64], "big") == 1_700_000_000
    assert int.from_bytes(enc[64:96], "big") == 96
    assert int.from_bytes(enc[96:128], "big") == 2  # leg count


def test_every_field_changes_the_hash() -> None:
    t = make_terms()
    variants = [
        make_terms(settlement_id=b"\x02" * 32),
        make_terms(deadline_s=t.deadline_s + 1),
        make_terms(legs=(CASH_LEG, CHAIN_LEG)),
        make_terms(legs=(CHAIN_LEG,)),
        make_terms(legs=(replace(CHAIN_LEG, amount_minor=CHAIN_LEG.amount_minor + 1), CASH_LEG)),
        make_terms(legs=(CHAIN_LEG, replace(CASH_LEG, asset="EUR"))),
        make_terms(legs=(CHAIN_LEG, replace(CASH_LEG, payer="acct-carol"))),
        make_terms(legs=(CHAIN_LEG, replace(CASH_LEG, payee="acct-carol"))),
        make_terms(legs=(CHAIN_LEG, replace(CASH_LEG, network="payments:bank-a"))),
    ]
    hashes = {v.terms_hash for v in variants} | {t.terms_hash}
    assert len(hashes) == len(variants) + 1


def test_many_legs_on_many_networks() -> None:
    legs = tuple(
        Leg(f"eip155:{1 + i % 7}", ADDRESSES[i % 5], i + 1, ADDRESSES[(i + 1) % 5], ADDRESSES[(i + 2) % 5])
        for i in range(255)
    )
    t = make_terms(legs=legs)
    assert len(t.networks()) == 7
    assert Terms.decode(t.encode()) == t
    with pytest.raises(InvalidTerms, match=r"1\.\.255 legs"):
        make_terms(legs=(*legs, CHAIN_LEG))
    with pytest.raises(InvalidTerms, match=r"1\.\.255 legs"):
        make_terms(legs=())


def test_network_ids() -> None:
    for network in ("payments:bank.example_1-a", "payments:" + "x" * 64, "cosmos:cosmoshub-4"):
        assert replace(CASH_LEG, network=network).network == network
    assert replace(CHAIN_LEG, network="eip155:8453").network == "eip155:8453"
    for network in (
        "payments:" + "x" * 65,
        "payments:",
        ":x",
        "pa:x",
        "Payments:x",
        "payments:a b",
        "eip155:0x1",
    ):
        with pytest.raises(InvalidTerms, match=r"leg\.network"):
            replace(CASH_LEG, network=network)


def test_addresses_are_normalized_and_checksums_checked() -> None:
    leg = Leg(
        "eip155:1",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        1,
        "0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359",
        "0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb",
    )
    assert leg.asset == "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
    assert leg.payer == "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359"
    with pytest.raises(InvalidTerms, match=r"leg\.asset has an invalid EIP-55 checksum"):
        replace(leg, asset="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"amount_minor": 0}, r"leg\.amount_minor must be in \[1, "),
        ({"amount_minor": MAX_AMOUNT_MINOR + 1}, r"leg\.amount_minor must be in"),
        ({"amount_minor": True}, r"leg\.amount_minor must be an int"),
        ({"amount_minor": 1.0}, r"leg\.amount_minor must be an int"),
        ({"network": "eip155:01"}, r"leg\.network: an eip155 chain id"),
        ({"network": "ethereum"}, r"leg\.network must be a network id"),
        ({"network": "eip155:1 "}, r"leg\.network must be a network id"),
        ({"asset": "0x1234"}, r"leg\.asset must be an address"),
        ({"payer": "0x" + "00" * 20}, r"leg\.payer must not be the zero address"),
        ({"payee": 5}, r"leg\.payee must be an address string"),
    ],
)
def test_chain_leg_rejections(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidTerms, match=match):
        replace(CHAIN_LEG, **changes)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"asset": ""}, r"leg\.asset must not be empty"),
        ({"asset": " USD"}, r"leg\.asset must not start or end with whitespace"),
        ({"payer": "acct\n"}, r"leg\.payer must be printable ASCII"),
        ({"payee": "café"}, r"leg\.payee must be printable ASCII"),
        ({"payee": "x" * 129}, r"leg\.payee must be at most 128"),
        ({"asset": b"USD"}, r"leg\.asset must be a string"),
    ],
)
def test_ledger_leg_rejections(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidTerms, match=match):
        replace(CASH_LEG, **changes)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"settlement_id": b"\x01" * 31}, "settlement_id must be exactly 32 bytes"),
        ({"settlement_id": "0x" + "01" * 32}, "settlement_id must be 32 bytes"),
        ({"deadline_s": 0}, r"deadline_s must be in \[1, "),
        ({"deadline_s": 2**64}, "deadline_s must be in"),
        ({"legs": (CHAIN_LEG, {"network": "x"})}, r"legs\[1\] must be a Leg"),
        ({"legs": CHAIN_LEG}, "legs must be a tuple"),
    ],
)
def test_terms_rejections(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidTerms, match=match):
        make_terms(**changes)


def test_terms_are_frozen_and_lists_become_tuples() -> None:
    t = make_terms(legs=[CHAIN_LEG, CASH_LEG], settlement_id=bytearray(b"\x01" * 32))
    assert t.legs == (CHAIN_LEG, CASH_LEG) and type(t.settlement_id) is bytes
    assert t == make_terms() and hash(t) == hash(make_terms())
    with pytest.raises(AttributeError):
        t.deadline_s = 5  # type: ignore[misc]


def test_json_form() -> None:
    t = make_terms()
    d = t.to_dict()
    assert d == {
        "settlement_id": "0x" + "01" * 32,
        "deadline_s": 1_700_000_000,
        "legs": [
            {
                "network": "eip155:31337",
                "asset": ADDRESSES[0],
                "amount_minor": 10**18,
                "payer": ADDRESSES[1],
                "payee": ADDRESSES[2],
            },
            {
                "network": "payments:crossdvp-payments",
                "asset": "USD",
                "amount_minor": 10000,
                "payer": "acct-bob",
                "payee": "acct-alice",
            },
        ],
    }


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: d.pop("deadline_s"), r"terms is missing \['deadline_s'\]"),
        (lambda d: d.update(terms_hash="0x"), r"terms has unknown keys \['terms_hash'\]"),
        (lambda d: d.update(settlement_id="01" * 32), "settlement_id must be '0x' \\+ 64 hex"),
        (lambda d: d.update(settlement_id="0x" + "zz" * 32), "settlement_id must be '0x' \\+ 64 hex"),
        (lambda d: d.update(legs="nope"), "legs must be a list"),
        (lambda d: d["legs"][0].pop("payee"), r"leg is missing \['payee'\]"),
        (lambda d: d["legs"][0].update(amount="1"), r"leg has unknown keys \['amount'\]"),
        (lambda d: d["legs"][1].update(amount_minor="100"), r"leg\.amount_minor must be an int"),
        (lambda d: d["legs"].append(5), "a leg must be an object"),
    ],
)
def test_from_dict_rejections(mangle: Any, match: str) -> None:
    d = make_terms().to_dict()
    mangle(d)
    with pytest.raises(InvalidTerms, match=match):
        Terms.from_dict(d)


def test_decode_rejects_garbage_and_non_canonical_bytes() -> None:
    enc = make_terms().encode()
    with pytest.raises(InvalidTerms, match="does not decode"):
        Terms.decode(enc[:-1])
    with pytest.raises(InvalidTerms, match="not canonical"):
        Terms.decode(enc + bytes(32))
