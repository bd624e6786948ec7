"""The errors of the settlement core. None of them is retryable: the same input fails the same way.

SettlementError
├── InvalidTerms              a terms or leg field is out of range; the message names the field
├── InvalidObservation        a lock observation or ledger view is inconsistent (an observer bug)
├── InvalidDonConfig          a DON config violates the forwarder's rules (f, n >= 3f+1, signers)
├── InvalidWorkflowIdentity   a workflow identity field has the wrong size or form
├── InvalidPrivateKey         a signing key is not a valid secp256k1 secret
├── MalformedReport           too short, bad payload encoding, bad decision code, bad metadata field
└── ReportVerificationError   the signatures do not authorize the report
    ├── WrongSignatureCount   not exactly f+1 signatures (KeystoneForwarder requires exactly f+1)
    ├── MalformedSignature    not 65 bytes, v not in {0, 1}, or no public key recovers from it
    ├── UnknownSigner         the recovered address is not a signer of the DON config
    ├── DuplicateSigner       two signatures from the same signer
    └── WrongDonConfig        the metadata's don_id/config_version, or the report context, is not
                              the one of the DON config given
"""

from __future__ import annotations

from crossdvp.errors import CrossDvpError

__all__ = [
    "DuplicateSigner",
    "InvalidDonConfig",
    "InvalidObservation",
    "InvalidPrivateKey",
    "InvalidTerms",
    "InvalidWorkflowIdentity",
    "MalformedReport",
    "MalformedSignature",
    "ReportVerificationError",
    "SettlementError",
    "UnknownSigner",
    "WrongDonConfig",
    "WrongSignatureCount",
]


class SettlementError(CrossDvpError):
    """Root of the settlement core's errors. Never retryable: the core is pure."""

    retryable = False


class InvalidTerms(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A terms or leg field is invalid. The message names the field and the accepted range."""


class InvalidObservation(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A lock observation or ledger view is internally inconsistent (wrong type, size, or network)."""


class InvalidDonConfig(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A DON config that KeystoneForwarder.setConfig would refuse, or that is not normalized."""


class InvalidWorkflowIdentity(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A workflow identity field (cid, name, owner, report id) has the wrong size or form."""


class InvalidPrivateKey(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A private key that is not 32 bytes or not in [1, n-1] of secp256k1."""


class MalformedReport(SettlementError):  # noqa: N818 (names fixed by the shared spec)
    """A report (or report item / metadata) that does not decode, or carries a bad field."""


class ReportVerificationError(SettlementError):
    """Base of the signature failures: the report is not authorized by the DON config given."""


class WrongSignatureCount(ReportVerificationError):  # noqa: N818 (names fixed by the shared spec)
    """Not exactly f+1 signatures."""


class MalformedSignature(ReportVerificationError):  # noqa: N818 (names fixed by the shared spec)
    """A signature that is not 65 bytes, has v outside {0, 1}, or from which no key recovers."""


class UnknownSigner(ReportVerificationError):  # noqa: N818 (names fixed by the shared spec)
    """A signature that recovers to an address outside the DON config (or over other bytes)."""


class DuplicateSigner(ReportVerificationError):  # noqa: N818 (names fixed by the shared spec)
    """Two signatures recover to the same signer."""


class WrongDonConfig(ReportVerificationError):  # noqa: N818 (names fixed by the shared spec)
    """The report names another DON id / config version, or its context is not this config's."""
