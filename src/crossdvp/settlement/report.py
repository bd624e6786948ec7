"""Reports in the exact CRE / Keystone layout: encoding, signing, verification (DESIGN.md step 4).

A raw report is 109 bytes of metadata followed by the payload:

    offset size field                     how crossdvp derives it (every signed byte is derived)
    0      1    version                   1
    1      32   workflow_execution_id     keccak256(payload)
    33     4    timestamp                 the latest decision time of the items (uint32, seconds)
    37     4    don_id                    from the DON config
    41     4    don_config_version        from the DON config
    45     32   workflow_cid              fixed by deployment
    77     10   workflow_name             sha256(name).hexdigest()[:10] as ASCII, as CRE encodes it
    87     20   workflow_owner            fixed by deployment
    107    2    report_id                 fixed per report kind
    109    ...  payload                   abi.encode((bytes32 settlementId, bytes32 termsHash,
                                                     uint8 decision)[])

KeystoneForwarder reads the config id from bytes 37..45, checks exactly f+1 signatures over
keccak256(keccak256(rawReport) || reportContext) with `ecrecover(hash, sig[64] + 27, r, s)`, then calls
`receiver.onReport(rawReport[45:109], rawReport[109:])`. The payment ledger runs `verify_report`, which
applies the same rules, so one signed report executes on every network of its batch. It is stricter
where crossdvp derives what the forwarder leaves free: the context must be report_context(don), and
`decode_report` requires version 1 and execution id = keccak256(payload). Honest nodes always meet
these, so the extra checks refuse nothing an honest DON signs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from coincurve import PrivateKey, PublicKey
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from crossdvp.settlement import _validate as v
from crossdvp.settlement.decision import Verdict
from crossdvp.settlement.errors import (
    DuplicateSigner,
    InvalidDonConfig,
    InvalidPrivateKey,
    InvalidWorkflowIdentity,
    MalformedReport,
    MalformedSignature,
    UnknownSigner,
    WrongDonConfig,
    WrongSignatureCount,
)
from crossdvp.settlement.terms import Decision, Terms

__all__ = [
    "FORWARDER_METADATA_LENGTH",
    "MAX_SIGNERS",
    "PAYLOAD_ABI_TYPE",
    "REPORT_CONTEXT_LENGTH",
    "REPORT_METADATA_LENGTH",
    "REPORT_VERSION",
    "SIGNATURE_LENGTH",
    "DonConfig",
    "ReportItem",
    "ReportMetadata",
    "WorkflowIdentity",
    "build_report",
    "decode_payload",
    "decode_report",
    "encode_payload",
    "encode_workflow_name",
    "recover_signer",
    "report_context",
    "report_digest",
    "report_item",
    "report_timestamp",
    "sign_report",
    "transmission_id",
    "verify_report",
]

REPORT_METADATA_LENGTH: Final = 109
FORWARDER_METADATA_LENGTH: Final = 45  # the forwarder passes rawReport[45:109] to the receiver
SIGNATURE_LENGTH: Final = 65
REPORT_CONTEXT_LENGTH: Final = 96
REPORT_VERSION: Final = 1
MAX_SIGNERS: Final = 31  # KeystoneForwarder.MAX_ORACLES
PAYLOAD_ABI_TYPE: Final = "(bytes32,bytes32,uint8)[]"
# Its canonical encoding: a head (offset 0x20, item count), then 3 words per item.
_PAYLOAD_OFFSET: Final = (32).to_bytes(32, "big")
_PAYLOAD_HEAD_SIZE: Final = 64
_PAYLOAD_ITEM_SIZE: Final = 96
_ZERO_PADDING: Final = bytes(31)

_MAX_UINT32 = 2**32 - 1
# version(1) execution id(32) timestamp(4) don_id(4) config version(4) cid(32) name(10) owner(20) report id(2)
_METADATA = struct.Struct(">B32sIII32s10s20s2s")
assert _METADATA.size == REPORT_METADATA_LENGTH


@dataclass(frozen=True, slots=True)
class DonConfig:
    """A DON configuration as KeystoneForwarder.setConfig accepts it; signers in configured order.

    Raises InvalidDonConfig when: don_id or config_version is not a uint32; f is not in 1..255; there
    are fewer than 3f+1 or more than 31 signers; a signer is not an address, is the zero address, or is
    repeated. Signers are stored lowercase (a list is accepted and stored as a tuple).
    """

    don_id: int
    config_version: int
    f: int
    signers: tuple[str, ...]

    def __post_init__(self) -> None:
        err = InvalidDonConfig
        v.check_int(self.don_id, "don_id", 0, _MAX_UINT32, err)
        v.check_int(self.config_version, "config_version", 0, _MAX_UINT32, err)
        v.check_int(self.f, "f", 1, 255, err)
        signers: object = self.signers
        if not isinstance(signers, tuple | list):
            raise err(f"signers must be a tuple of addresses, got {type(signers).__name__}")
        normalized = tuple(v.check_address(s, f"signers[{i}]", err) for i, s in enumerate(signers))
        if not 3 * self.f + 1 <= len(normalized) <= MAX_SIGNERS:
            raise err(
                f"a DON with f={self.f} needs {3 * self.f + 1}..{MAX_SIGNERS} signers, got {len(normalized)}"
            )
        if len(set(normalized)) != len(normalized):
            dupes = sorted({s for s in normalized if normalized.count(s) > 1})
            raise err(f"signers must be distinct; repeated: {dupes}")
        object.__setattr__(self, "signers", normalized)

    @property
    def config_id(self) -> int:
        """(don_id << 32) | config_version: the forwarder's key for this config."""
        return (self.don_id << 32) | self.config_version

    def config_digest(self) -> bytes:
        """keccak256(abi.encode(uint32 don_id, uint32 config_version, uint8 f, address[] signers))."""
        return keccak(
            abi_encode(
                ["uint32", "uint32", "uint8", "address[]"],
                [self.don_id, self.config_version, self.f, list(self.signers)],
            )
        )


def encode_workflow_name(name: str) -> bytes:
    """The 10-byte workflow name as CRE writes it: the first 10 hex characters of sha256(name), ASCII."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:10].encode("ascii")


@dataclass(frozen=True, slots=True)
class WorkflowIdentity:
    """Who the receiver accepts reports from; fixed by deployment.

    Raises InvalidWorkflowIdentity when: workflow_cid is not 32 bytes; workflow_name is not a non-empty
    string; workflow_owner is not an address (stored lowercase); report_id is not 2 bytes.
    """

    workflow_cid: bytes
    workflow_name: str
    workflow_owner: str
    report_id: bytes

    def __post_init__(self) -> None:
        err = InvalidWorkflowIdentity
        object.__setattr__(self, "workflow_cid", v.check_bytes(self.workflow_cid, "workflow_cid", 32, err))
        if not isinstance(self.workflow_name, str) or not self.workflow_name:
            raise err(f"workflow_name must be a non-empty string, got {self.workflow_name!r}")
        object.__setattr__(
            self,
            "workflow_owner",
            v.check_address(self.workflow_owner, "workflow_owner", err, allow_zero=True),
        )
        object.__setattr__(self, "report_id", v.check_bytes(self.report_id, "report_id", 2, err))

    @property
    def encoded_name(self) -> bytes:
        """The 10 bytes the metadata (and the escrow's immutable workflowName) carry."""
        return encode_workflow_name(self.workflow_name)


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One decided settlement in a report.

    Raises MalformedReport when: settlement_id or terms_hash is not 32 bytes; decision is not SETTLE (1)
    or ABORT (2) — PENDING is never reported. An int 1/2 is accepted and stored as Decision.
    """

    settlement_id: bytes
    terms_hash: bytes
    decision: Decision

    def __post_init__(self) -> None:
        err = MalformedReport
        object.__setattr__(self, "settlement_id", v.check_bytes(self.settlement_id, "settlement_id", 32, err))
        object.__setattr__(self, "terms_hash", v.check_bytes(self.terms_hash, "terms_hash", 32, err))
        decision = self.decision
        if isinstance(decision, bool) or not isinstance(decision, int) or decision not in (1, 2):
            raise err(f"decision must be SETTLE (1) or ABORT (2), got {decision!r}")
        object.__setattr__(self, "decision", Decision(decision))


@dataclass(frozen=True, slots=True)
class ReportMetadata:
    """The 109-byte metadata at the head of a raw report (layout in the module docstring).

    Raises MalformedReport when a field is out of range: version not a uint8; timestamp, don_id or
    don_config_version not a uint32; workflow_execution_id or workflow_cid not 32 bytes; workflow_name
    not 10 bytes; workflow_owner not an address (stored lowercase); report_id not 2 bytes.
    """

    version: int
    workflow_execution_id: bytes
    timestamp: int
    don_id: int
    don_config_version: int
    workflow_cid: bytes
    workflow_name: bytes
    workflow_owner: str
    report_id: bytes

    def __post_init__(self) -> None:
        err = MalformedReport
        v.check_int(self.version, "version", 0, 255, err)
        v.check_int(self.timestamp, "timestamp", 0, _MAX_UINT32, err)
        v.check_int(self.don_id, "don_id", 0, _MAX_UINT32, err)
        v.check_int(self.don_config_version, "don_config_version", 0, _MAX_UINT32, err)
        for name, size in (
            ("workflow_execution_id", 32),
            ("workflow_cid", 32),
            ("workflow_name", 10),
            ("report_id", 2),
        ):
            object.__setattr__(self, name, v.check_bytes(getattr(self, name), name, size, err))
        object.__setattr__(
            self,
            "workflow_owner",
            v.check_address(self.workflow_owner, "workflow_owner", err, allow_zero=True),
        )

    @property
    def config_id(self) -> int:
        return (self.don_id << 32) | self.don_config_version

    def encode(self) -> bytes:
        """The 109 metadata bytes."""
        return _METADATA.pack(
            self.version,
            self.workflow_execution_id,
            self.timestamp,
            self.don_id,
            self.don_config_version,
            self.workflow_cid,
            self.workflow_name,
            bytes.fromhex(self.workflow_owner[2:]),
            self.report_id,
        )

    @classmethod
    def decode(cls, raw: bytes) -> ReportMetadata:
        """The metadata of `raw`: the 109 metadata bytes alone or a whole raw report (metadata first).

        Raises MalformedReport when `raw` is shorter than 109 bytes.
        """
        raw = bytes(raw)
        if len(raw) < REPORT_METADATA_LENGTH:
            raise MalformedReport(
                f"a report is at least {REPORT_METADATA_LENGTH} bytes of metadata, got {len(raw)} bytes"
            )
        version, exec_id, timestamp, don_id, cfg, cid, name, owner, report_id = _METADATA.unpack_from(raw)
        return cls(
            version=version,
            workflow_execution_id=exec_id,
            timestamp=timestamp,
            don_id=don_id,
            don_config_version=cfg,
            workflow_cid=cid,
            workflow_name=name,
            workflow_owner="0x" + owner.hex(),
            report_id=report_id,
        )


def report_item(terms: Terms, verdict: Verdict) -> ReportItem:
    """The report item carrying `verdict` for `terms`.

    Raises MalformedReport when the verdict is PENDING (only decided settlements are reported).
    """
    if not verdict.decided:
        raise MalformedReport(
            f"settlement 0x{terms.settlement_id.hex()} is PENDING; only decisions are reported"
        )
    return ReportItem(terms.settlement_id, terms.terms_hash, verdict.decision)


def encode_payload(items: Sequence[ReportItem]) -> bytes:
    """abi.encode((bytes32 settlementId, bytes32 termsHash, uint8 decision)[]) of `items`, in order.

    The layout is fixed, so it is written out rather than run through eth_abi (which took about 15 us
    per item, and every node encodes or decodes each batch several times: proposing, signing,
    accepting, delivering): the head word (offset 0x20), the length, then each tuple in place as
    three words, the decision left-padded. Tests check it byte for byte against eth_abi.
    """
    parts = [_PAYLOAD_OFFSET, len(items).to_bytes(32, "big")]
    for item in items:
        parts += (item.settlement_id, item.terms_hash, int(item.decision).to_bytes(32, "big"))
    return b"".join(parts)


def decode_payload(payload: bytes) -> tuple[ReportItem, ...]:
    """The items of a payload.

    Accepts exactly the canonical ABI encoding of (bytes32,bytes32,uint8)[] (the bytes encode_payload
    gives for the items it holds), read field by field; tests check that it accepts and refuses the
    same bytes as eth_abi's decoder followed by a re-encoding.

    Raises MalformedReport when: the bytes do not ABI-decode as (bytes32,bytes32,uint8)[] (too short
    for the items they announce, a uint8 with dirty padding); they are not the canonical encoding
    (trailing data, another offset); a decision code is not 1 or 2; the batch is empty; two items name
    the same settlement_id (a batch carries one decision per settlement).
    """
    payload = bytes(payload)
    size = len(payload)
    if size < _PAYLOAD_HEAD_SIZE:
        raise MalformedReport(f"payload does not decode as {PAYLOAD_ABI_TYPE}: {size} bytes, no array head")
    if payload[:32] != _PAYLOAD_OFFSET:
        raise MalformedReport(
            "payload is not the canonical ABI encoding of its items: array offset is not 0x20"
        )
    count = int.from_bytes(payload[32:_PAYLOAD_HEAD_SIZE], "big")
    if size - _PAYLOAD_HEAD_SIZE < count * _PAYLOAD_ITEM_SIZE:
        raise MalformedReport(
            f"payload does not decode as {PAYLOAD_ABI_TYPE}: {count} items announced, {size} bytes"
        )
    if size - _PAYLOAD_HEAD_SIZE > count * _PAYLOAD_ITEM_SIZE:
        raise MalformedReport("payload is not the canonical ABI encoding of its items: trailing bytes")
    items = []
    for start in range(_PAYLOAD_HEAD_SIZE, size, _PAYLOAD_ITEM_SIZE):
        decision = payload[start + 64 : start + 96]
        if decision[:31] != _ZERO_PADDING:
            raise MalformedReport(
                f"payload does not decode as {PAYLOAD_ABI_TYPE}: a uint8 with dirty padding"
            )
        # ReportItem refuses a code other than 1 or 2 (MalformedReport) and turns it into a Decision.
        code = cast(Decision, decision[31])
        items.append(ReportItem(payload[start : start + 32], payload[start + 32 : start + 64], code))
    _check_batch(items)
    return tuple(items)


def _check_batch(items: Sequence[ReportItem]) -> None:
    if not items:
        raise MalformedReport("a report carries at least one item")
    seen: set[bytes] = set()
    for item in items:
        if item.settlement_id in seen:
            raise MalformedReport(f"settlement 0x{item.settlement_id.hex()} appears twice in one report")
        seen.add(item.settlement_id)


def report_timestamp(decided_at_s: Sequence[int]) -> int:
    """The metadata timestamp of a batch: the latest of its items' decision times (Verdict.decided_at_s).

    Raises MalformedReport when the sequence is empty or the maximum does not fit the uint32 field.
    """
    if not decided_at_s:
        raise MalformedReport("a report carries at least one item")
    latest = max(decided_at_s)
    v.check_int(latest, "timestamp", 0, _MAX_UINT32, MalformedReport)
    return latest


def build_report(
    items: Sequence[ReportItem], *, timestamp_s: int, don: DonConfig, workflow: WorkflowIdentity
) -> bytes:
    """The raw report (metadata || payload) for a batch; version 1, execution id = keccak256(payload).

    Two leaders batching the same items in the same order build the same bytes, so the forwarder's
    transmission id makes the second delivery a no-op.

    Raises MalformedReport when: items is empty or names a settlement twice; an element is not a
    ReportItem; timestamp_s is not a uint32.
    """
    items = tuple(items)
    for index, item in enumerate(items):
        if not isinstance(item, ReportItem):
            raise MalformedReport(f"items[{index}] must be a ReportItem, got {type(item).__name__}")
    _check_batch(items)
    payload = encode_payload(items)
    metadata = ReportMetadata(
        version=REPORT_VERSION,
        workflow_execution_id=keccak(payload),
        timestamp=timestamp_s,
        don_id=don.don_id,
        don_config_version=don.config_version,
        workflow_cid=workflow.workflow_cid,
        workflow_name=workflow.encoded_name,
        workflow_owner=workflow.workflow_owner,
        report_id=workflow.report_id,
    )
    return metadata.encode() + payload


def decode_report(raw: bytes) -> tuple[ReportMetadata, tuple[ReportItem, ...]]:
    """The metadata and items of a raw report.

    Raises MalformedReport when: the report is shorter than 109 bytes; the version is not 1; the
    payload is malformed (see decode_payload); the workflow_execution_id is not keccak256(payload).
    crossdvp always derives version and execution id, so other values mean the bytes were not built
    by an honest node.
    """
    raw = bytes(raw)
    metadata = ReportMetadata.decode(raw)
    if metadata.version != REPORT_VERSION:
        raise MalformedReport(f"report version must be {REPORT_VERSION}, got {metadata.version}")
    payload = raw[REPORT_METADATA_LENGTH:]
    items = decode_payload(payload)
    if metadata.workflow_execution_id != keccak(payload):
        raise MalformedReport("workflow_execution_id is not keccak256(payload)")
    return metadata, items


def report_context(don: DonConfig) -> bytes:
    """The 96-byte report context: config_digest || 64 zero bytes (derived from the config, never chosen).

    The forwarder only hashes the context into the signed digest; binding it to the config makes a
    signature for one DON config useless under another.
    """
    return don.config_digest() + bytes(64)


def report_digest(raw: bytes, context: bytes) -> bytes:
    """keccak256(keccak256(raw) || context): the 32 bytes each signer signs (no EIP-191 prefix)."""
    return keccak(keccak(bytes(raw)) + bytes(context))


def sign_report(raw: bytes, context: bytes, private_key: bytes) -> bytes:
    """A 65-byte signature r || s || v (v in {0, 1}) over report_digest(raw, context).

    Deterministic (RFC 6979) and always low-s, as libsecp256k1 produces.

    Raises InvalidPrivateKey when the key is not 32 bytes or not a valid secp256k1 secret.
    """
    key_bytes = v.check_bytes(private_key, "private_key", 32, InvalidPrivateKey)
    try:
        key = PrivateKey(key_bytes)
    except Exception as exc:  # coincurve raises ValueError for 0 or >= n
        raise InvalidPrivateKey(
            "private_key is not a valid secp256k1 secret (0 or >= the group order)"
        ) from exc
    signature: bytes = key.sign_recoverable(report_digest(raw, context), hasher=None)
    return signature


def _recover(digest: bytes, signature: bytes) -> str:
    if not isinstance(signature, bytes | bytearray | memoryview):
        raise MalformedSignature(f"a signature must be bytes, got {type(signature).__name__}")
    signature = bytes(signature)
    if len(signature) != SIGNATURE_LENGTH:
        raise MalformedSignature(
            f"a signature is {SIGNATURE_LENGTH} bytes r||s||v, got {len(signature)} bytes"
        )
    if signature[64] not in (0, 1):
        # The forwarder adds 27 itself; a 27/28-style v would recover nothing there.
        raise MalformedSignature(f"signature v must be 0 or 1 (the forwarder adds 27), got {signature[64]}")
    try:
        # Like ecrecover, this accepts high-s signatures; r and s must be in [1, n-1].
        public_key = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception as exc:  # coincurve raises ValueError/Exception for r/s out of range or no point
        raise MalformedSignature("no public key recovers from the signature (r or s out of range)") from exc
    return "0x" + keccak(public_key.format(compressed=False)[1:])[-20:].hex()


def recover_signer(raw: bytes, context: bytes, signature: bytes) -> str:
    """The lowercase address that produced `signature` over report_digest(raw, context).

    Raises MalformedSignature when the signature is not 65 bytes, v is not 0 or 1, or no key recovers.
    A signature over other bytes recovers to some unrelated address; callers check membership.
    """
    return _recover(report_digest(raw, context), signature)


def verify_report(raw: bytes, context: bytes, signatures: Sequence[bytes], don: DonConfig) -> tuple[str, ...]:
    """Check that `signatures` authorize `raw` under `don`, as KeystoneForwarder.report does.

    Returns the signers (lowercase), in signature order. Does not decode the payload: call
    `decode_report` for the items. Checks, in order, each with its own error:

    - MalformedReport: raw is shorter than the 109-byte metadata;
    - WrongDonConfig: the metadata's don_id / don_config_version is not `don`'s, or `context` is not
      report_context(don);
    - WrongSignatureCount: not exactly f+1 signatures;
    - MalformedSignature: a signature is not 65 bytes, has v outside {0, 1}, or recovers no key;
    - UnknownSigner: a signature recovers to an address outside `don.signers` (this is also what a
      tampered report or context gives: the signature then recovers to an unrelated address);
    - DuplicateSigner: two signatures recover to the same signer.
    """
    raw = bytes(raw)
    context = bytes(context)
    metadata = ReportMetadata.decode(raw)
    if (metadata.don_id, metadata.don_config_version) != (don.don_id, don.config_version):
        raise WrongDonConfig(
            f"report is for DON {metadata.don_id} config version {metadata.don_config_version}, "
            f"verifying against DON {don.don_id} config version {don.config_version}"
        )
    if context != report_context(don):
        raise WrongDonConfig(
            f"report context is not the one derived from DON {don.don_id} config version {don.config_version}"
        )
    if isinstance(signatures, bytes | bytearray | str):
        raise MalformedSignature("signatures must be a sequence of signatures, not a single bytes/str value")
    if len(signatures) != don.f + 1:
        raise WrongSignatureCount(f"need exactly f+1 = {don.f + 1} signatures, got {len(signatures)}")
    digest = report_digest(raw, context)
    allowed = frozenset(don.signers)
    signers: list[str] = []
    for index, signature in enumerate(signatures):
        signer = _recover(digest, signature)
        if signer not in allowed:
            raise UnknownSigner(
                f"signatures[{index}] recovers to {signer}, not a signer of DON {don.don_id} "
                f"config version {don.config_version} (or the report/context was altered)"
            )
        if signer in signers:
            raise DuplicateSigner(f"signatures[{index}] is a second signature by {signer}")
        signers.append(signer)
    return tuple(signers)


def transmission_id(receiver: str, workflow_execution_id: bytes, report_id: bytes) -> bytes:
    """keccak256(receiver(20) || workflow_execution_id(32) || report_id(2)): the forwarder's
    getTransmissionId, under which it records a delivery (and refuses a second successful one).

    Raises MalformedReport when receiver is not an address or the ids have the wrong sizes.
    """
    address = v.check_address(receiver, "receiver", MalformedReport, allow_zero=True)
    exec_id = v.check_bytes(workflow_execution_id, "workflow_execution_id", 32, MalformedReport)
    rid = v.check_bytes(report_id, "report_id", 2, MalformedReport)
    return keccak(bytes.fromhex(address[2:]) + exec_id + rid)
