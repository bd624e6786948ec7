"""Authenticated messages between the nodes of one DON, and the transport that carries them.

An envelope is `{"v": 1, "don_id", "config_version", "sender", "to", "kind", "body", "signature"}`. The
signature is the sender's DON key over EIP-191 of keccak256(canonical JSON of every other field), so a
message is bound to one DON config, one sender and one recipient. A receiver drops (and counts) a
message that is malformed, meant for another DON or node, from a non-member, or badly signed.

Replies are not signed: every fact in a reply that matters is itself verifiable (report signatures are
checked against the DON signer set, complete reports with verify_report), and a reply only ever
travels on the connection the requester opened to the member's configured URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from coincurve import PrivateKey
from eth_hash.auto import keccak

from crossdvp.oracle.errors import PeerMessageRejected, PeerUnavailable
from crossdvp.oracle.keys import NodeKey
from crossdvp.settlement.errors import MalformedSignature
from crossdvp.settlement.report import _recover as recover_address

__all__ = [
    "HttpPeerTransport",
    "PeerEnvelope",
    "PeerSigner",
    "PeerTransport",
    "canonical_json",
]

ENVELOPE_VERSION = 1
# "terms_batch" carries up to MAX_TERMS_PER_BATCH terms in one envelope: {"terms": [terms, ...]}.
KINDS = frozenset({"terms", "terms_batch", "propose", "report"})
MAX_TERMS_PER_BATCH = 200
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only: the same value always serializes to the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class PeerEnvelope:
    """An authenticated message as the receiver accepted it."""

    sender: int
    kind: str
    body: dict[str, Any]


class PeerSigner:
    """Seals outgoing envelopes with this node's key and opens incoming ones against the DON members."""

    def __init__(self, *, key: NodeKey, index: int, don_id: int, config_version: int, signers: Sequence[str]):
        # One parsed key for every seal: libsecp256k1 signs in microseconds, eth_account in milliseconds.
        self._key = PrivateKey(key.private_key)
        self.index = index
        self._don_id = don_id
        self._config_version = config_version
        self._signers = tuple(s.lower() for s in signers)

    def _digest(self, fields: Mapping[str, Any]) -> bytes:
        """EIP-191 personal_sign hash of keccak256(canonical JSON): what eth_account's sign_message signs."""
        return keccak(_EIP191_PREFIX + keccak(canonical_json(dict(fields))))

    def seal(self, to: int, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "don_id": self._don_id,
            "config_version": self._config_version,
            "sender": self.index,
            "to": to,
            "kind": kind,
            "body": dict(body),
        }
        signature = self._key.sign_recoverable(self._digest(fields), hasher=None)
        # r || s || v with v in {27, 28}, as eth_account writes it (libsecp256k1 gives the recovery id).
        return {**fields, "signature": "0x" + (signature[:64] + bytes([signature[64] + 27])).hex()}

    def open(self, envelope: object) -> PeerEnvelope:
        """Authenticate an incoming envelope.

        Raises PeerMessageRejected with reason: "malformed" (not an envelope, unknown version or kind,
        bad field types), "wrong_don" (other don_id/config_version), "wrong_recipient", "non_member"
        (sender index outside the DON), "bad_signature" (unrecoverable, or not the sender's signer).
        """
        if not isinstance(envelope, dict):
            raise PeerMessageRejected("a peer message must be a JSON object", reason="malformed")
        expected = {"v", "don_id", "config_version", "sender", "to", "kind", "body", "signature"}
        if set(envelope) != expected:
            raise PeerMessageRejected(f"peer message fields must be {sorted(expected)}", reason="malformed")
        sender, kind, body, signature = (
            envelope["sender"],
            envelope["kind"],
            envelope["body"],
            envelope["signature"],
        )
        if envelope["v"] != ENVELOPE_VERSION or kind not in KINDS or not isinstance(body, dict):
            raise PeerMessageRejected(
                "unknown envelope version or kind, or body not an object", reason="malformed"
            )
        if not isinstance(sender, int) or isinstance(sender, bool) or not isinstance(signature, str):
            raise PeerMessageRejected("sender must be an int and signature a hex string", reason="malformed")
        if envelope["don_id"] != self._don_id or envelope["config_version"] != self._config_version:
            raise PeerMessageRejected(
                f"message for DON {envelope['don_id']} v{envelope['config_version']}", reason="wrong_don"
            )
        if envelope["to"] != self.index:
            raise PeerMessageRejected(f"message addressed to node {envelope['to']}", reason="wrong_recipient")
        if not 0 <= sender < len(self._signers) or sender == self.index:
            raise PeerMessageRejected(
                f"sender {sender} is not another member of the DON", reason="non_member"
            )
        fields = {k: v for k, v in envelope.items() if k != "signature"}
        try:
            raw_sig = bytes.fromhex(signature.removeprefix("0x"))
            if len(raw_sig) != 65 or raw_sig[64] not in (27, 28):
                raise ValueError("a peer signature is 65 bytes r || s || v with v in {27, 28}")
            recovered = recover_address(self._digest(fields), raw_sig[:64] + bytes([raw_sig[64] - 27]))
        except (ValueError, MalformedSignature) as exc:
            raise PeerMessageRejected(
                f"unrecoverable signature from sender {sender}", reason="bad_signature"
            ) from exc
        if recovered.lower() != self._signers[sender]:
            raise PeerMessageRejected(
                f"message claims sender {sender} but is signed by {recovered.lower()}", reason="bad_signature"
            )
        return PeerEnvelope(sender=sender, kind=kind, body=body)


class PeerTransport(Protocol):
    """Delivers a sealed envelope to member `to` and returns its JSON reply."""

    async def send(self, to: int, envelope: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Raises PeerUnavailable when the peer cannot be reached, times out or answers an error."""
        ...


class HttpPeerTransport:
    """POSTs envelopes to `<member url>/v1/peer/messages`."""

    def __init__(self, urls: Sequence[str], *, client: httpx.AsyncClient | None = None) -> None:
        self._urls = tuple(u.rstrip("/") for u in urls)
        self._client = client or httpx.AsyncClient()

    async def send(self, to: int, envelope: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        url = f"{self._urls[to]}/v1/peer/messages"
        try:
            response = await self._client.post(url, json=envelope, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise PeerUnavailable(f"peer {to} at {url}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PeerUnavailable(f"peer {to} at {url} answered HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError as exc:
            raise PeerUnavailable(f"peer {to} at {url} answered non-JSON") from exc
        if not isinstance(reply, dict):
            raise PeerUnavailable(f"peer {to} at {url} answered a non-object")
        return reply

    async def aclose(self) -> None:
        await self._client.aclose()
