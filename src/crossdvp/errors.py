"""The root of every exception crossdvp raises on purpose.

    CrossDvpError                     (retryable: bool, as data — never decided by message text)
    ├── crossdvp.settlement.errors.SettlementError   invalid terms, reports, signatures
    ├── crossdvp.chain.errors.ChainError             RPC failures (retryable), contract reverts (not)
    ├── crossdvp.payments.errors.PaymentsError       ledger rejections, client transport errors
    ├── crossdvp.oracle.errors.OracleError           node configuration and peer protocol errors
    └── crossdvp.process.ProcessStartError           a managed process did not start

Every error a user can cause carries a message that says what was wrong and what to do.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CrossDvpError"]


class CrossDvpError(Exception):
    """Base class. `retryable` tells a caller whether the same call may succeed later unchanged."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConfigError(CrossDvpError):
    """A configuration file or environment variable is missing or invalid."""
