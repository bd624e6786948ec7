"""Peer envelope signatures: computed with libsecp256k1, byte-compatible with eth_account's personal_sign."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_hash.auto import keccak

from crossdvp.oracle.errors import PeerMessageRejected
from crossdvp.oracle.peers import PeerSigner, canonical_json
from tests.oracle.harness import dvp_terms, node_key

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEYS = [node_key(i) for i in range(4)]
SIGNERS = tuple(k.address for k in KEYS)


def _signer(index: int) -> PeerSigner:
    return PeerSigner(key=KEYS[index], index=index, don_id=7, config_version=1, signers=SIGNERS)


def _personal_sign_hash(envelope: dict[str, Any]) -> Any:
    fields = {k: v for k, v in envelope.items() if k != "signature"}
    return encode_defunct(primitive=keccak(canonical_json(fields)))


def _with_signature(envelope: dict[str, Any], signature: bytes) -> dict[str, Any]:
    return {**envelope, "signature": "0x" + signature.hex()}


def _body(label: str = "sig") -> dict[str, Any]:
    return {"terms": dvp_terms(label, deadline_s=5_000).to_dict()}


def test_seal_is_what_eth_account_signs_and_recovers() -> None:
    envelope = _signer(1).seal(0, "terms", _body())
    signature = bytes.fromhex(envelope["signature"][2:])
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert Account.recover_message(_personal_sign_hash(envelope), signature=signature).lower() == SIGNERS[1]
    # Both are RFC 6979 deterministic: the very same bytes, so the wire format is unchanged.
    expected = Account.sign_message(_personal_sign_hash(envelope), KEYS[1].private_key).signature
    assert signature == bytes(expected)


def test_open_accepts_an_eth_account_signature() -> None:
    seen_v = set()
    for label in "abcdefgh":  # a few messages, so both recovery ids occur
        unsigned = {k: v for k, v in _signer(2).seal(0, "terms", _body(label)).items() if k != "signature"}
        signed = Account.sign_message(_personal_sign_hash(unsigned), KEYS[2].private_key)
        seen_v.add(signed.v)
        message = _signer(0).open(_with_signature(unsigned, bytes(signed.signature)))
        assert (message.sender, message.kind, message.body) == (2, "terms", _body(label))
    assert seen_v == {27, 28}


def test_high_s_twin_recovers_like_eth_account() -> None:
    envelope = _signer(1).seal(0, "terms", _body())
    sig = bytes.fromhex(envelope["signature"][2:])
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    twin = _with_signature(envelope, high)
    assert Account.recover_message(_personal_sign_hash(twin), signature=high).lower() == SIGNERS[1]
    assert _signer(0).open(twin).sender == 1


def _garbage(sig: bytes) -> list[str]:
    n = SECP256K1_N.to_bytes(32, "big")
    return [
        "0x" + sig[:64].hex(),  # 64 bytes
        "0x" + (sig + b"\x00").hex(),  # 66 bytes
        "0x" + sig[:64].hex() + "1d",  # v = 29
        "0x" + sig[:64].hex() + bytes([sig[64] - 27]).hex(),  # v in {0, 1}: not what a peer writes
        "0x" + (bytes(32) + sig[32:]).hex(),  # r = 0
        "0x" + (sig[:32] + n + sig[64:]).hex(),  # s = n
        "0x" + (n + sig[32:]).hex(),  # r = n
        "0xzz" + sig.hex()[2:],  # not hex
        "0x" + sig.hex()[:-1],  # odd length
        "",
    ]


def test_garbage_and_foreign_signatures_are_bad_signature() -> None:
    envelope = _signer(1).seal(0, "terms", _body())
    sig = bytes.fromhex(envelope["signature"][2:])
    for garbage in _garbage(sig):
        with pytest.raises(PeerMessageRejected) as rejected:
            _signer(0).open({**envelope, "signature": garbage})
        assert rejected.value.reason == "bad_signature", garbage
    # A valid signature by another member, and a genuine one over an altered body.
    forged = _signer(2).seal(0, "terms", _body())
    for envelope_ in ({**forged, "sender": 1}, {**envelope, "body": _body("other")}):
        with pytest.raises(PeerMessageRejected) as rejected:
            _signer(0).open(envelope_)
        assert rejected.value.reason == "bad_signature"
