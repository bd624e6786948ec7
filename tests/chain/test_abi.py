"""Event decoding (`AbiEvent.decode`): the word-by-word reader gives what eth_abi gives, for every event
of every committed artifact, and refuses what eth_abi's strict decoder refuses."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError

from crossdvp.chain._abi import AbiEvent, AbiParam
from crossdvp.chain._artifacts import artifact_names, load_artifact


def _random_value(kind: str, rng: random.Random) -> Any:
    if kind.endswith("[]"):
        return [_random_value(kind[:-2], rng) for _ in range(rng.randrange(4))]
    if kind == "address":
        return "0x" + rng.randbytes(20).hex()
    if kind == "bool":
        return rng.random() < 0.5
    if kind.startswith("uint"):
        return rng.choice([0, 1, (1 << int(kind[4:])) - 1, rng.getrandbits(int(kind[4:]))])
    if kind.startswith("int"):
        bits = int(kind[3:])
        return rng.choice([-(1 << (bits - 1)), -1, 0, (1 << (bits - 1)) - 1])
    if kind.startswith("bytes") and kind != "bytes":
        return rng.randbytes(int(kind[5:]))
    if kind == "string":
        return "x" * rng.randrange(70)
    if kind == "bytes":
        return rng.randbytes(rng.randrange(70))
    raise AssertionError(f"no generator for {kind}")


def _eth_abi_decode(event: AbiEvent, topics: list[bytes], data: bytes) -> dict[str, Any]:
    """What the decoder gave before it read words itself: eth_abi for every value."""
    values: dict[str, Any] = {}
    indexed = [p for p in event.inputs if p.indexed]
    for param, topic in zip(indexed, topics[1:], strict=True):
        hashed = param.type in ("string", "bytes") or param.type.endswith("]")
        values[param.name] = topic if hashed else decode([param.type], topic)[0]
    plain = [p for p in event.inputs if not p.indexed]
    values.update(zip((p.name for p in plain), decode([p.type for p in plain], data), strict=True))
    return values


def _log(event: AbiEvent, rng: random.Random) -> tuple[list[bytes], bytes]:
    topics = [event.topic0]
    for param in (p for p in event.inputs if p.indexed):
        value = _random_value(param.type, rng)
        hashed = param.type in ("string", "bytes") or param.type.endswith("]")
        topics.append(rng.randbytes(32) if hashed else encode([param.type], [value]))
    plain = [p for p in event.inputs if not p.indexed]
    data = encode([p.type for p in plain], [_random_value(p.type, rng) for p in plain])
    return topics, data


def _all_events() -> list[AbiEvent]:
    return [e for name in artifact_names() for e in load_artifact(name).contract_abi.events.values()]


def test_every_artifact_event_decodes_as_eth_abi_decodes_it() -> None:
    rng = random.Random(7)
    events = _all_events()
    assert any(e.name == "Locked" for e in events)
    for event in events:
        for _ in range(25):
            topics, data = _log(event, rng)
            assert event.decode(topics, data) == _eth_abi_decode(event, topics, data), event.name


def test_a_word_that_does_not_hold_its_type_is_refused() -> None:
    locked = load_artifact("DvPEscrow").contract_abi.event("Locked")
    topics, data = _log(locked, random.Random(1))
    cases = {
        "address with a dirty high byte (locker)": b"\x01" + data[1:],
        "uint64 above its range (deadline)": data[: 3 * 32] + b"\x01" + data[3 * 32 + 1 :],
        "a word missing": data[:-32],
        "a word too many": data + bytes(32),
    }
    for what, bad in cases.items():
        with pytest.raises(ValueError):
            locked.decode(topics, bad)
            pytest.fail(f"accepted: {what}")
    bad_leg = [*topics[:2], b"\x01" + topics[2][1:], *topics[3:]]
    with pytest.raises(ValueError, match="padding"):
        locked.decode(bad_leg, data)
    with pytest.raises(ValueError, match="does not match"):
        locked.decode([bytes(32), *topics[1:]], data)


@pytest.mark.parametrize(
    ("kind", "word", "value"),
    [
        ("bool", bytes(31) + b"\x01", True),
        ("bool", bytes(32), False),
        ("int8", b"\xff" * 32, -1),
        ("int8", bytes(31) + b"\x7f", 127),
        ("bytes4", b"\xde\xad\xbe\xef" + bytes(28), b"\xde\xad\xbe\xef"),
    ],
)
def test_one_word_types_read_as_eth_abi_reads_them(kind: str, word: bytes, value: object) -> None:
    event = AbiEvent("Test", "E", (AbiParam("v", kind),))
    assert event.decode([event.topic0], word) == {"v": value} == {"v": decode([kind], word)[0]}


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        ("bool", bytes(31) + b"\x02"),
        ("int8", b"\xff" * 31 + b"\x7f"),  # sign extension that does not match the value
        ("int8", bytes(31) + b"\x80"),
        ("bytes4", b"\xde\xad\xbe\xef" + bytes(27) + b"\x01"),
        ("uint8", bytes(30) + b"\x01\x00"),
    ],
)
def test_one_word_types_are_refused_where_eth_abi_refuses_them(kind: str, word: bytes) -> None:
    event = AbiEvent("Test", "E", (AbiParam("v", kind),))
    with pytest.raises(ValueError):
        event.decode([event.topic0], word)
    with pytest.raises(DecodingError):
        decode([kind], word)


def test_an_event_with_dynamic_data_is_decoded_by_eth_abi_and_its_errors_are_value_errors() -> None:
    event = AbiEvent("Test", "E", (AbiParam("who", "address", indexed=True), AbiParam("why", "string")))
    topics = [event.topic0, encode(["address"], ["0x" + "ab" * 20])]
    data = encode(["string"], ["because"])
    assert event.decode(topics, data) == {"who": "0x" + "ab" * 20, "why": "because"}
    with pytest.raises(ValueError):
        event.decode(topics, data[:40])
