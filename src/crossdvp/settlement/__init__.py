"""The settlement core: terms, the decision rule, and Keystone reports. Pure: no I/O, no clock.

- `terms` — `Terms` / `Leg` and their canonical encoding and `terms_hash` (protocol step 1);
- `decision` — `decide(terms, views) -> Verdict` over final `LedgerView`s (step 3);
- `report` — the 109-byte-metadata Keystone report, its context, digest, signing and verification
  (step 4), byte-compatible with the genuine KeystoneForwarder;
- `errors` — `SettlementError` and its subclasses.

The chain adapter, the payment ledger and the oracle node all call into this package; it calls none
of them.
"""

from __future__ import annotations

from crossdvp.settlement.decision import LedgerView, LockObservation, Verdict, decide, leg_lock, lock_matches
from crossdvp.settlement.errors import (
    DuplicateSigner,
    InvalidDonConfig,
    InvalidObservation,
    InvalidPrivateKey,
    InvalidTerms,
    InvalidWorkflowIdentity,
    MalformedReport,
    MalformedSignature,
    ReportVerificationError,
    SettlementError,
    UnknownSigner,
    WrongDonConfig,
    WrongSignatureCount,
)
from crossdvp.settlement.report import (
    FORWARDER_METADATA_LENGTH,
    REPORT_CONTEXT_LENGTH,
    REPORT_METADATA_LENGTH,
    SIGNATURE_LENGTH,
    DonConfig,
    ReportItem,
    ReportMetadata,
    WorkflowIdentity,
    build_report,
    decode_payload,
    decode_report,
    encode_payload,
    encode_workflow_name,
    recover_signer,
    report_context,
    report_digest,
    report_item,
    report_timestamp,
    sign_report,
    transmission_id,
    verify_report,
)
from crossdvp.settlement.terms import MAX_AMOUNT_MINOR, MAX_DEADLINE_S, MAX_LEGS, Decision, Leg, Terms

__all__ = [
    "FORWARDER_METADATA_LENGTH",
    "MAX_AMOUNT_MINOR",
    "MAX_DEADLINE_S",
    "MAX_LEGS",
    "REPORT_CONTEXT_LENGTH",
    "REPORT_METADATA_LENGTH",
    "SIGNATURE_LENGTH",
    "Decision",
    "DonConfig",
    "DuplicateSigner",
    "InvalidDonConfig",
    "InvalidObservation",
    "InvalidPrivateKey",
    "InvalidTerms",
    "InvalidWorkflowIdentity",
    "LedgerView",
    "Leg",
    "LockObservation",
    "MalformedReport",
    "MalformedSignature",
    "ReportItem",
    "ReportMetadata",
    "ReportVerificationError",
    "SettlementError",
    "Terms",
    "UnknownSigner",
    "Verdict",
    "WorkflowIdentity",
    "WrongDonConfig",
    "WrongSignatureCount",
    "build_report",
    "decide",
    "decode_payload",
    "decode_report",
    "encode_payload",
    "encode_workflow_name",
    "leg_lock",
    "lock_matches",
    "recover_signer",
    "report_context",
    "report_digest",
    "report_item",
    "report_timestamp",
    "sign_report",
    "transmission_id",
    "verify_report",
]
