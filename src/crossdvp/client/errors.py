"""Errors of the trading-desk SDK.

DeskError                  (CrossDvpError)
├── InvalidOrder           bad input, found before anything was registered or locked
├── RegistrationError      fewer than f+1 nodes accepted the terms (nothing was locked)
├── LockError              a party's lock (escrow lock / ledger hold) was refused
└── SettlementTimeout      `wait` gave up before the settlement was final (retryable: it may
                           still complete; ask `status`)
"""

from __future__ import annotations

from crossdvp.errors import CrossDvpError

__all__ = ["DeskError", "InvalidOrder", "LockError", "RegistrationError", "SettlementTimeout"]


class DeskError(CrossDvpError):
    """Root of the SDK's errors."""


class InvalidOrder(DeskError):  # noqa: N818 (an order is invalid; "Error" would add nothing)
    """The request is invalid; nothing was registered or locked. The message names the field."""


class RegistrationError(DeskError):
    """Too few nodes accepted the terms for them to be decided; nothing was locked."""


class LockError(DeskError):
    """A ledger refused a party's lock; the message carries the ledger's reason."""


class SettlementTimeout(DeskError):  # noqa: N818
    """The settlement was not final in time. It may still complete."""

    retryable = True
