"""Errors of the EVM chain adapter.

ChainError                 (crossdvp.errors.CrossDvpError)
├── RpcError               the node could not be reached, timed out, or refused the request
│                          (retryable=True for transport failures and timeouts, False when the node
│                          answered with an error that will not change on retry)
├── ContractRevert         a call or transaction reverted; the custom error decoded (never retryable)
└── TransactionTimeout     a sent transaction had no receipt in time (retryable: it may still be mined)
"""

from __future__ import annotations

from collections.abc import Mapping

from crossdvp.errors import CrossDvpError

__all__ = ["ChainError", "ContractRevert", "RpcError", "TransactionTimeout"]


class ChainError(CrossDvpError):
    """Base class of everything the chain adapter raises."""


class RpcError(ChainError):
    """A JSON-RPC request failed.

    `code` and `data` are the JSON-RPC error's fields when the node answered with an error, None when
    the request never got an answer (connection refused, timeout, malformed response).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        method: str,
        code: int | None = None,
        data: object = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.method = method
        self.code = code
        self.data = data


class ContractRevert(ChainError):  # noqa: N818 - the name the spec and callers use
    """A contract call or transaction reverted.

    `error_name` is the Solidity error ("ZeroAmount", "Error" for require strings, "Panic" for
    assertion/arithmetic failures, "" when the revert carried no data or an unknown selector);
    `error_args` its decoded arguments in declaration order and `named_args` the same by parameter
    name. (The arguments are not in `.args`: Python reserves that attribute of every exception for
    the constructor arguments, here the message.) `revert_data` holds the raw revert bytes.
    """

    retryable = False

    def __init__(
        self,
        error_name: str,
        args: tuple[object, ...],
        message: str,
        *,
        named_args: Mapping[str, object] | None = None,
        revert_data: bytes = b"",
        tx_hash: bytes | None = None,
    ) -> None:
        super().__init__(message, retryable=False)
        self.error_name = error_name
        self.error_args = args
        self.named_args: dict[str, object] = dict(named_args or {})
        self.revert_data = revert_data
        self.tx_hash = tx_hash


class TransactionTimeout(ChainError):  # noqa: N818 - the name the spec and callers use
    """No receipt for `tx_hash` within the wait; the transaction may still be mined later."""

    retryable = True

    def __init__(self, message: str, *, tx_hash: bytes) -> None:
        super().__init__(message, retryable=True)
        self.tx_hash = tx_hash
