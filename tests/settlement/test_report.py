"""Keystone reports: metadata layout, payload encoding, signing and verification."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from crossdvp.settlement import (
    REPORT_METADATA_LENGTH,
    Decision,
    DonConfig,
    DuplicateSigner,
    InvalidDonConfig,
    InvalidPrivateKey,
    InvalidWorkflowIdentity,
    Leg,
    MalformedReport,
    MalformedSignature,
    ReportItem,
    ReportMetadata,
    ReportVerificationError,
    Terms,
    UnknownSigner,
    Verdict,
    WorkflowIdentity,
    WrongDonConfig,
    WrongSignatureCount,
    build_report,
    decode_payload,
    decode_report,
    encode_payload,
    recover_signer,
    report_context,
    report_digest,
    report_item,
    report_timestamp,
    sign_report,
    transmission_id,
    verify_report,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEYS = tuple(i.to_bytes(32, "big") for i in range(1, 9))
ADDRS = tuple(Account.from_key(k).address.lower() for k in KEYS)
DON = DonConfig(don_id=1, config_version=1, f=1, signers=ADDRS[:4])
WORKFLOW = WorkflowIdentity(
    workflow_cid=bytes(range(32)),
    workflow_name="crossdvp-settlement",
    workflow_owner="0x8ba1f109551bD432803012645Ac136ddd64DBA72",
    report_id=b"\x00\x01",
)
ITEMS = (
    ReportItem(b"\x01" * 32, b"\xaa" * 32, Decision.SETTLE),
    ReportItem(b"\x02" * 32, b"\xbb" * 32, Decision.ABORT),
)

bytes32 = st.binary(min_size=32, max_size=32)
items_st = st.lists(
    st.builds(ReportItem, bytes32, bytes32, st.sampled_from([Decision.SETTLE, Decision.ABORT])),
    min_size=1,
    max_size=20,
    unique_by=lambda it: it.settlement_id,
)


def _raw(don: DonConfig = DON, items: tuple[ReportItem, ...] = ITEMS) -> bytes:
    return build_report(items, timestamp_s=1_700_000_123, don=don, workflow=WORKFLOW)


def _signed(don: DonConfig = DON, keys: tuple[bytes, ...] = KEYS[:2]) -> tuple[bytes, bytes, list[bytes]]:
    raw = _raw(don)
    ctx = report_context(don)
    return raw, ctx, [sign_report(raw, ctx, k) for k in keys]


# ---------------------------------------------------------------- metadata


def test_metadata_fields_sit_at_the_forwarder_offsets() -> None:
    raw = _raw()
    payload = encode_payload(ITEMS)
    assert raw[REPORT_METADATA_LENGTH:] == payload
    # Offsets from KeystoneForwarder._getMetadata, minus the 32-byte length word of `bytes memory`.
    assert raw[0] == 1
    assert raw[1:33] == keccak(payload)
    assert raw[33:37] == (1_700_000_123).to_bytes(4, "big")
    assert raw[37:41] == (1).to_bytes(4, "big")
    assert raw[41:45] == (1).to_bytes(4, "big")
    assert int.from_bytes(raw[37:45], "big") == DON.config_id == (1 << 32) | 1
    assert raw[45:77] == bytes(range(32))
    assert raw[77:87] == hashlib.sha256(b"crossdvp-settlement").hexdigest()[:10].encode("ascii")
    assert raw[87:107] == bytes.fromhex("8ba1f109551bd432803012645ac136ddd64dba72")
    assert raw[107:109] == b"\x00\x01"


def test_workflow_name_is_encoded_as_cre_does() -> None:
    assert WORKFLOW.encoded_name == hashlib.sha256(b"crossdvp-settlement").hexdigest()[:10].encode()
    assert len(WORKFLOW.encoded_name) == 10 and WORKFLOW.encoded_name.isascii()
    assert WorkflowIdentity(bytes(32), "x", WORKFLOW.workflow_owner, b"\0\0").encoded_name == b"2d711642b7"


@given(
    st.integers(0, 255),
    bytes32,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    bytes32,
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=2, max_size=2),
)
def test_metadata_round_trips(
    version: int,
    exec_id: bytes,
    ts: int,
    don_id: int,
    cfg: int,
    cid: bytes,
    name: bytes,
    owner: bytes,
    rid: bytes,
) -> None:
    meta = ReportMetadata(version, exec_id, ts, don_id, cfg, cid, name, "0x" + owner.hex(), rid)
    encoded = meta.encode()
    assert len(encoded) == REPORT_METADATA_LENGTH
    assert ReportMetadata.decode(encoded) == meta
    assert ReportMetadata.decode(encoded + b"payload") == meta


def test_metadata_rejections() -> None:
    with pytest.raises(MalformedReport, match="at least 109 bytes"):
        ReportMetadata.decode(bytes(108))
    meta = ReportMetadata.decode(_raw())
    with pytest.raises(MalformedReport, match="timestamp"):
        replace(meta, timestamp=2**32)
    with pytest.raises(MalformedReport, match="workflow_name must be exactly 10 bytes"):
        replace(meta, workflow_name=b"abc")
    with pytest.raises(MalformedReport, match="timestamp"):
        build_report(ITEMS, timestamp_s=2**32, don=DON, workflow=WORKFLOW)


def test_report_timestamp_is_the_latest_decision_time() -> None:
    assert report_timestamp([5, 9, 7]) == 9
    with pytest.raises(MalformedReport):
        report_timestamp([])
    with pytest.raises(MalformedReport, match="timestamp"):
        report_timestamp([2**32])


def test_workflow_identity_rejections() -> None:
    with pytest.raises(InvalidWorkflowIdentity, match="workflow_cid"):
        replace(WORKFLOW, workflow_cid=b"\x00" * 31)
    with pytest.raises(InvalidWorkflowIdentity, match="workflow_name"):
        replace(WORKFLOW, workflow_name="")
    with pytest.raises(InvalidWorkflowIdentity, match="workflow_owner"):
        replace(WORKFLOW, workflow_owner="owner")
    with pytest.raises(InvalidWorkflowIdentity, match="report_id"):
        replace(WORKFLOW, report_id=b"\x01")


# ---------------------------------------------------------------- payload


@given(items_st)
def test_payload_round_trips(items: list[ReportItem]) -> None:
    payload = encode_payload(items)
    assert payload == abi_encode(
        ["(bytes32,bytes32,uint8)[]"], [[(i.settlement_id, i.terms_hash, i.decision) for i in items]]
    )
    assert decode_payload(payload) == tuple(items)
    raw = build_report(items, timestamp_s=7, don=DON, workflow=WORKFLOW)
    meta, decoded = decode_report(raw)
    assert decoded == tuple(items)
    assert meta.workflow_execution_id == keccak(payload) and meta.timestamp == 7


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _payload_with_decision(code: int) -> bytes:
    return _word(32) + _word(1) + b"\x01" * 32 + b"\x02" * 32 + _word(code)


@pytest.mark.parametrize("code", [0, 3, 255])
def test_decision_codes_other_than_settle_and_abort_are_malformed(code: int) -> None:
    with pytest.raises(MalformedReport, match="decision must be SETTLE"):
        decode_payload(_payload_with_decision(code))
    assert decode_payload(_payload_with_decision(1))[0].decision is Decision.SETTLE
    assert decode_payload(_payload_with_decision(2))[0].decision is Decision.ABORT


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "does not decode"),
        (_payload_with_decision(1)[:-1], "does not decode"),
        (_word(32) + _word(2) + b"\x01" * 96, "does not decode"),  # claims 2 items, holds 1
        (_word(32) + _word(1) + b"\x01" * 64 + _word(256 + 1), "does not decode"),  # uint8 with dirty padding
        (_payload_with_decision(1) + bytes(32), "not the canonical"),  # trailing word
        (_word(64) + bytes(32) + _word(1) + b"\x01" * 64 + _word(1), "not the canonical"),  # odd offset
        (_word(32) + _word(0), "at least one item"),
        (
            encode_payload([ITEMS[0], replace(ITEMS[1], settlement_id=ITEMS[0].settlement_id)]),
            "appears twice",
        ),
    ],
)
def test_malformed_payloads(payload: bytes, match: str) -> None:
    with pytest.raises(MalformedReport, match=match):
        decode_payload(payload)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_malformed_report(data: bytes) -> None:
    # Nothing but MalformedReport may escape (no IndexError, OverflowError, eth_abi errors...).
    with contextlib.suppress(MalformedReport):
        decode_payload(data)
    with contextlib.suppress(MalformedReport):
        decode_report(data)


def _reference_decode(payload: bytes) -> tuple[ReportItem, ...] | None:
    """What decode_payload accepted when it ran eth_abi: decode, build the items, re-encode, compare."""
    try:
        (rows,) = abi_decode(["(bytes32,bytes32,uint8)[]"], payload)
        items = tuple(ReportItem(sid, th, decision) for sid, th, decision in rows)
    except Exception:
        return None
    canonical = abi_encode(
        ["(bytes32,bytes32,uint8)[]"], [[(i.settlement_id, i.terms_hash, i.decision) for i in items]]
    )
    if canonical != payload or not items or len({i.settlement_id for i in items}) != len(items):
        return None
    return items


@given(items_st, st.data())
def test_corrupted_payloads_are_decoded_exactly_as_eth_abi_and_a_re_encoding_decode_them(
    items: list[ReportItem], data: st.DataObject
) -> None:
    """Corrupt bytes (structural values such as offsets, counts and decision codes included), cut
    the payload, append to it: decode_payload raises only MalformedReport, accepts exactly what the
    reference accepts, and whatever it accepts is canonical (re-encodes to the same bytes)."""
    payload = bytearray(encode_payload(items))
    byte = st.one_of(st.sampled_from([0, 1, 2, 3, 32, 64, 255]), st.integers(0, 255))
    for _ in range(data.draw(st.integers(0, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(byte)
    cut = data.draw(st.integers(0, len(payload)))
    candidate = bytes(payload[:cut]) + data.draw(st.sampled_from([b"", bytes(32), b"\x01"]))
    try:
        decoded: tuple[ReportItem, ...] | None = decode_payload(candidate)
    except MalformedReport:
        decoded = None
    assert decoded == _reference_decode(candidate)
    if decoded is not None:
        assert encode_payload(decoded) == candidate


def test_decode_report_requires_the_derived_execution_id() -> None:
    raw = _raw()
    with pytest.raises(MalformedReport, match="keccak256"):
        decode_report(raw[:1] + b"\x00" * 32 + raw[33:])
    with pytest.raises(MalformedReport, match="at least 109"):
        decode_report(raw[:100])


def test_build_report_rejections() -> None:
    with pytest.raises(MalformedReport, match="at least one item"):
        build_report([], timestamp_s=1, don=DON, workflow=WORKFLOW)
    with pytest.raises(MalformedReport, match="appears twice"):
        build_report([ITEMS[0], ITEMS[0]], timestamp_s=1, don=DON, workflow=WORKFLOW)
    with pytest.raises(MalformedReport, match=r"items\[0\] must be a ReportItem"):
        build_report([(b"\x01" * 32, b"\x01" * 32, 1)], timestamp_s=1, don=DON, workflow=WORKFLOW)  # type: ignore[list-item]
    with pytest.raises(MalformedReport, match="decision must be SETTLE"):
        ReportItem(b"\x01" * 32, b"\x01" * 32, Decision.PENDING)
    with pytest.raises(MalformedReport, match="decision must be SETTLE"):
        ReportItem(b"\x01" * 32, b"\x01" * 32, True)  # type: ignore[arg-type]
    with pytest.raises(MalformedReport, match="terms_hash"):
        ReportItem(b"\x01" * 32, b"\x01" * 33, Decision.ABORT)


def test_the_same_batch_builds_the_same_bytes() -> None:
    assert _raw() == _raw()
    assert _raw(items=ITEMS[::-1]) != _raw()


# ---------------------------------------------------------------- DON config


def test_don_config_digest_and_id() -> None:
    assert DON.config_id == (1 << 32) | 1
    expected = keccak(abi_encode(["uint32", "uint32", "uint8", "address[]"], [1, 1, 1, list(ADDRS[:4])]))
    assert DON.config_digest() == expected
    assert report_context(DON) == expected + bytes(64)
    assert len(report_context(DON)) == 96
    assert replace(DON, config_version=2).config_digest() != expected


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"f": 0}, r"f must be in \[1, 255\]"),
        ({"signers": ADDRS[:3]}, r"f=1 needs 4..31 signers, got 3"),
        ({"f": 2, "signers": ADDRS[:6]}, r"f=2 needs 7..31 signers, got 6"),
        ({"f": 10, "signers": tuple(f"0x{i:040x}" for i in range(1, 33))}, "got 32"),
        ({"signers": (*ADDRS[:3], ADDRS[0].upper().replace("0X", "0x"))}, "repeated"),
        ({"signers": (*ADDRS[:3], "0x" + "00" * 20)}, "zero address"),
        ({"signers": (*ADDRS[:3], "nope")}, r"signers\[3\] must be an address"),
        ({"don_id": 2**32}, "don_id"),
        ({"config_version": -1}, "config_version"),
    ],
)
def test_don_config_rejections(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidDonConfig, match=match):
        replace(DON, **changes)


# ---------------------------------------------------------------- signing and verification


def test_f_plus_one_good_signatures_verify() -> None:
    raw, ctx, sigs = _signed()
    assert verify_report(raw, ctx, sigs, DON) == (ADDRS[0], ADDRS[1])
    assert verify_report(raw, ctx, sigs[::-1], DON) == (ADDRS[1], ADDRS[0])
    # any f+1 of the n signers
    raw, ctx, sigs = _signed(keys=(KEYS[3], KEYS[2]))
    assert verify_report(raw, ctx, sigs, DON) == (ADDRS[3], ADDRS[2])


def test_larger_don() -> None:
    don = DonConfig(don_id=9, config_version=3, f=2, signers=ADDRS[:7])
    raw, ctx, sigs = _signed(don, keys=(KEYS[6], KEYS[0], KEYS[4]))
    assert verify_report(raw, ctx, sigs, don) == (ADDRS[6], ADDRS[0], ADDRS[4])
    with pytest.raises(WrongSignatureCount, match="exactly f\\+1 = 3"):
        verify_report(raw, ctx, sigs[:2], don)


def test_signatures_match_eth_account_and_are_low_s_and_deterministic() -> None:
    raw, ctx, sigs = _signed()
    digest = report_digest(raw, ctx)
    assert digest == keccak(keccak(raw) + ctx)
    theirs = Account.unsafe_sign_hash(digest, KEYS[0])
    assert sigs[0] == theirs.r.to_bytes(32, "big") + theirs.s.to_bytes(32, "big") + bytes([theirs.v - 27])
    assert (
        Account._recover_hash(digest, signature=sigs[0][:64] + bytes([sigs[0][64] + 27])).lower() == ADDRS[0]
    )
    for sig in sigs:
        assert len(sig) == 65 and sig[64] in (0, 1)
        assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2
    assert sign_report(raw, ctx, KEYS[0]) == sigs[0]


def test_high_s_signatures_recover_like_ecrecover() -> None:
    raw, ctx, sigs = _signed()
    sig = sigs[0]
    high = (
        sig[:32]
        + (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
        + bytes([1 - sig[64]])
    )
    assert recover_signer(raw, ctx, high) == ADDRS[0]
    assert verify_report(raw, ctx, [high, sigs[1]], DON) == (ADDRS[0], ADDRS[1])


def test_f_signatures_are_too_few() -> None:
    raw, ctx, sigs = _signed()
    with pytest.raises(WrongSignatureCount, match="exactly f\\+1 = 2 signatures, got 1"):
        verify_report(raw, ctx, sigs[:1], DON)
    with pytest.raises(WrongSignatureCount, match="got 0"):
        verify_report(raw, ctx, [], DON)


def test_f_plus_two_signatures_are_too_many() -> None:
    raw, ctx, sigs = _signed(keys=KEYS[:3])
    with pytest.raises(WrongSignatureCount, match="got 3"):
        verify_report(raw, ctx, sigs, DON)


def test_duplicate_signer() -> None:
    raw, ctx, sigs = _signed()
    with pytest.raises(DuplicateSigner, match=ADDRS[0]):
        verify_report(raw, ctx, [sigs[0], sigs[0]], DON)
    # the same signer with a different (high-s) signature is still one signer
    sig = sigs[0]
    high = (
        sig[:32]
        + (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
        + bytes([1 - sig[64]])
    )
    with pytest.raises(DuplicateSigner):
        verify_report(raw, ctx, [sig, high], DON)


def test_unknown_signer() -> None:
    raw, ctx, sigs = _signed(keys=(KEYS[0], KEYS[4]))
    with pytest.raises(UnknownSigner, match=ADDRS[4]):
        verify_report(raw, ctx, sigs, DON)


def test_wrong_don_config_version() -> None:
    v2 = replace(DON, config_version=2)
    raw, ctx, sigs = _signed(v2)
    with pytest.raises(WrongDonConfig, match="config version 2, verifying against DON 1 config version 1"):
        verify_report(raw, ctx, sigs, DON)
    with pytest.raises(WrongDonConfig):
        verify_report(raw, ctx, sigs, replace(DON, don_id=2, config_version=2))
    assert verify_report(raw, ctx, sigs, v2) == ADDRS[:2]


def test_context_must_be_the_configs() -> None:
    raw, _, sigs = _signed()
    with pytest.raises(WrongDonConfig, match="context"):
        verify_report(raw, bytes(96), sigs, DON)


def test_tampered_report_recovers_other_signers() -> None:
    raw, ctx, sigs = _signed()
    assert ITEMS[0].decision is Decision.SETTLE
    tampered_payload = encode_payload([replace(ITEMS[0], decision=Decision.ABORT), ITEMS[1]])
    tampered = raw[:REPORT_METADATA_LENGTH] + tampered_payload
    with pytest.raises(UnknownSigner, match="altered"):
        verify_report(tampered, ctx, sigs, DON)
    # a tampered timestamp too
    with pytest.raises(UnknownSigner):
        verify_report(raw[:33] + b"\x00\x00\x00\x01" + raw[37:], ctx, sigs, DON)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda s: s[:64], "65 bytes r\\|\\|s\\|\\|v, got 64"),
        (lambda s: s + b"\x00", "got 66"),
        (lambda s: s[:64] + bytes([s[64] + 27]), "v must be 0 or 1"),
        (lambda s: bytes(32) + s[32:], "no public key recovers"),  # r = 0
        (lambda s: s[:32] + SECP256K1_N.to_bytes(32, "big") + s[64:], "no public key recovers"),  # s = n
        (lambda s: "0x" + s.hex(), "must be bytes"),
    ],
)
def test_malformed_signatures(mangle: object, match: str) -> None:
    raw, ctx, sigs = _signed()
    bad = mangle(sigs[0])  # type: ignore[operator]
    with pytest.raises(MalformedSignature, match=match):
        verify_report(raw, ctx, [bad, sigs[1]], DON)


def test_short_report_is_malformed() -> None:
    _, ctx, sigs = _signed()
    with pytest.raises(MalformedReport):
        verify_report(b"\x01" * 108, ctx, sigs, DON)


def test_every_verification_error_is_a_report_verification_error() -> None:
    for cls in (WrongSignatureCount, MalformedSignature, UnknownSigner, DuplicateSigner, WrongDonConfig):
        assert issubclass(cls, ReportVerificationError)
        assert cls("x").retryable is False


def test_invalid_private_keys() -> None:
    raw, ctx, _ = _signed()
    with pytest.raises(InvalidPrivateKey, match="32 bytes"):
        sign_report(raw, ctx, b"\x01" * 31)
    with pytest.raises(InvalidPrivateKey, match="not a valid secp256k1 secret"):
        sign_report(raw, ctx, bytes(32))
    with pytest.raises(InvalidPrivateKey, match="not a valid secp256k1 secret"):
        sign_report(raw, ctx, SECP256K1_N.to_bytes(32, "big"))


def test_transmission_id_is_the_forwarders() -> None:
    receiver = "0x" + "ee" * 20
    meta = ReportMetadata.decode(_raw())
    expected = keccak(bytes.fromhex("ee" * 20) + meta.workflow_execution_id + meta.report_id)
    assert transmission_id(receiver, meta.workflow_execution_id, meta.report_id) == expected
    assert (
        transmission_id(receiver.upper().replace("0X", "0x"), meta.workflow_execution_id, b"\x00\x01")
        == expected
    )
    with pytest.raises(MalformedReport, match="report_id"):
        transmission_id(receiver, meta.workflow_execution_id, b"\x01")


def test_report_version_must_be_1() -> None:
    raw = _raw()
    with pytest.raises(MalformedReport, match="version must be 1"):
        decode_report(b"\x02" + raw[1:])


def test_report_item_from_a_verdict() -> None:
    terms = Terms(b"\x05" * 32, 10, (Leg("payments:bank-a", "USD", 1, "a", "b"),))
    item = report_item(terms, Verdict(Decision.ABORT, 10, "deadline passed"))
    assert item == ReportItem(terms.settlement_id, terms.terms_hash, Decision.ABORT)
    with pytest.raises(MalformedReport, match="PENDING"):
        report_item(terms, Verdict(Decision.PENDING, None, "waiting"))
