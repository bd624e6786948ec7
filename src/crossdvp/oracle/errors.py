"""The errors of an oracle node.

OracleError                     (crossdvp.errors.CrossDvpError)
├── NodeConfigError             a config file / environment value is missing or invalid (names the key)
├── KeyLoadError                the node's signing key cannot be loaded (keystore, password, raw key)
├── PeerMessageRejected         a peer message is malformed, from a non-member, or badly signed
├── PeerUnavailable             a peer did not answer (retryable)
├── TermsConflict               terms registered under an id already holding different terms
├── EquivocationRefused         signing would contradict a decision this node already stored
├── ObserverError               a network could not be read (retryable)
│   └── LedgerUnavailable       RPC/HTTP transport error, timeout, 5xx, malformed answer (retryable)
├── LedgerAccessDenied          the ledger refused the node's credentials (HTTP 401/403)
├── RpcReverted                 an eth_call / eth_estimateGas reverted; carries the revert data
└── FinalityViolation           a block the node had read as final was replaced (deeper reorg than
                                the configured finality); never retried, an operator must look
"""

from __future__ import annotations

from crossdvp.errors import ConfigError, CrossDvpError

__all__ = [
    "EquivocationRefused",
    "FinalityViolation",
    "KeyLoadError",
    "LedgerAccessDenied",
    "LedgerUnavailable",
    "NodeConfigError",
    "NonceTaken",
    "ObserverError",
    "OracleError",
    "PeerMessageRejected",
    "PeerUnavailable",
    "RpcReverted",
    "TermsConflict",
]


class OracleError(CrossDvpError):
    """Root of the node's own errors."""


class NodeConfigError(OracleError, ConfigError):
    """A node configuration value is missing or invalid; the message names the key (e.g. `don.f`)."""


class KeyLoadError(OracleError, ConfigError):
    """The node's DON signing key could not be loaded."""


class PeerMessageRejected(OracleError):  # noqa: N818 (reads as a sentence)
    """A peer message was dropped: malformed, from outside the DON, or with a bad signature.

    `reason` is a short machine-readable label used as the metrics label (e.g. "bad_signature").
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, retryable=False)
        self.reason = reason


class PeerUnavailable(OracleError):  # noqa: N818 (reads as a sentence)
    """A peer did not answer in time or refused the connection."""

    retryable = True


class TermsConflict(OracleError):  # noqa: N818 (reads as a sentence)
    """Terms were registered under a settlement id that already holds different terms."""


class EquivocationRefused(OracleError):  # noqa: N818 (reads as a sentence)
    """Signing was refused because it would contradict a decision this node has stored."""


class ObserverError(OracleError):
    """A network could not be read; the poll is retried later with the same cursor."""

    retryable = True


class LedgerUnavailable(ObserverError):  # noqa: N818 (reads as a sentence)
    """A ledger (EVM JSON-RPC endpoint or payments service) failed, timed out or answered nonsense.

    Used by observers and deliverers alike; the same call may succeed later, so it is retryable.
    """

    retryable = True


class NonceTaken(LedgerUnavailable):
    """The chain refused a transaction because its nonce is already used (another process sent from
    the same key, or this process counted wrong): read the nonce again and send again."""


class LedgerAccessDenied(OracleError):  # noqa: N818 (reads as a sentence)
    """The ledger refused the node's credentials (HTTP 401/403): fix the oracle API key in the config."""

    retryable = False


class RpcReverted(OracleError):  # noqa: N818 (reads as a sentence)
    """An eth_call or eth_estimateGas reverted. `data` is the revert data (custom error selector + args)."""

    retryable = False

    def __init__(self, method: str, data: bytes, message: str) -> None:
        super().__init__(f"{method} reverted: {message or 'no reason'} (data 0x{data.hex()})")
        self.method = method
        self.data = data


class FinalityViolation(OracleError):  # noqa: N818 (reads as a sentence)
    """A block read as final has a different hash now: the chain reorganised deeper than the finality
    depth the node was configured with. Observations already made may be wrong; the node must stop
    observing this network and an operator must raise the depth (or use the `finalized` tag).
    """

    retryable = False

    def __init__(
        self, message: str, *, block_number: int, expected_hash: str, actual_hash: str | None
    ) -> None:
        super().__init__(message)
        self.block_number = block_number
        self.expected_hash = expected_hash
        self.actual_hash = actual_hash
