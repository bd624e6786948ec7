"""Errors of the EVM chain adapter.

ChainError                 (crossdvp.errors.CrossDvpError)
├── RpcError               the node could not be reached, timed out, or refused the request
│                          (retryable=True for transport failures and timeouts, False when the node
│                          answered with an error that will not change on retry)
├── ContractRevert         a call or transaction reverted; the custom error decoded (never retryable)
└── TransactionTimeout     a sent transaction had no receipt in time (retryable: it may still be mined)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crossdvp.errors import CrossDvpError

__all__ = [
    "BLOCK_RACE_ATTEMPTS",
    "BLOCK_RACE_PAUSE_S",
    "ChainError",
    "ContractRevert",
    "RpcError",
    "TransactionTimeout",
    "is_block_race",
]

# A read at a moving tag can race the block being mined: anvil with --prune-history answers
# -32602 ("invalid params": block height is N but requested was N-1). Asked again, it answers, so
# every JSON-RPC client here asks again up to BLOCK_RACE_ATTEMPTS times before raising.
_MOVING_TAGS = frozenset({"latest", "pending", "safe", "finalized"})
_INVALID_PARAMS = -32602
BLOCK_RACE_ATTEMPTS = 4
BLOCK_RACE_PAUSE_S = 0.05


def is_block_race(code: object, params: Sequence[object]) -> bool:
    """Whether a JSON-RPC error answer is a read at a moving tag that raced the next block."""
    return code == _INVALID_PARAMS and any(isinstance(p, str) and p in _MOVING_TAGS for p in params)


def is_nonce_conflict(code: object, message: str) -> bool:
    """Whether a node refused a transaction because its nonce is already used.

    Nodes report this with a generic code (anvil -32003, geth -32000) shared with unrelated
    rejections such as insufficient funds, so the message text is the only signal there is; this is
    the single place crossdvp reads an error message, and it only decides whether to resync a nonce.
    """
    text = message.lower()
    return code is not None and ("nonce too low" in text or "replacement transaction underpriced" in text)


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
