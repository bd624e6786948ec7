"""Every rejection the payment ledger can give, each with a stable problem `type` and HTTP status.

    PaymentsError                         (crossdvp.errors.CrossDvpError)
    ├── LedgerRejection                   the ledger refused a request; rendered as RFC 9457 problem+json
    │   ├── Unauthorized        401       missing or unknown API key
    │   ├── Forbidden           403       the credential's role may not call this operation
    │   ├── NotFound            404       unknown resource, or one the caller may not see
    │   ├── Conflict            409       already exists / wrong state / idempotency key reused / ...
    │   └── Unprocessable       422       a field is invalid, the deadline passed, a report does not verify
    └── PaymentsApiError                  what the client raises from a problem+json (or a transport failure)

The `type` URI is the contract: clients branch on it, never on `detail` text. Each error names the
request field at fault (`field`) when there is one.
"""

from __future__ import annotations

from typing import Any

from crossdvp.errors import CrossDvpError

__all__ = [
    "TYPE_PREFIX",
    "Conflict",
    "Forbidden",
    "LedgerRejection",
    "NotFound",
    "PaymentsApiError",
    "PaymentsError",
    "Unauthorized",
    "Unprocessable",
]

TYPE_PREFIX = "urn:crossdvp:payments:"


class PaymentsError(CrossDvpError):
    """Root of the payments service's and client's errors."""


class LedgerRejection(PaymentsError):  # noqa: N818 (a rejection, not a failure of the ledger)
    """The ledger refused a request. `code` becomes the problem type `urn:crossdvp:payments:<code>`."""

    status: int = 400
    title: str = "Bad request"

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail, retryable=False)
        self.code = code
        self.detail = detail
        self.field = field
        self.extra = dict(extra or {})

    @property
    def type_uri(self) -> str:
        return TYPE_PREFIX + self.code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 body."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        if instance is not None:
            body["instance"] = instance
        body.update(self.extra)
        return body


class Unauthorized(LedgerRejection):
    status = 401
    title = "Unauthorized"


class Forbidden(LedgerRejection):
    status = 403
    title = "Forbidden"


class NotFound(LedgerRejection):
    status = 404
    title = "Not found"


class Conflict(LedgerRejection):
    status = 409
    title = "Conflict"


class Unprocessable(LedgerRejection):
    status = 422
    title = "Unprocessable request"


class PaymentsApiError(PaymentsError):
    """A call to the payments service failed.

    `type`, `status`, `detail` and `field` come from the problem+json body; `status` is 0 for a
    transport failure (connection refused, timeout), which is retryable, as is every 5xx.
    """

    def __init__(
        self,
        *,
        type: str,
        status: int,
        detail: str,
        field: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        retryable = status == 0 or status >= 500 or status == 429
        super().__init__(f"{status} {type}: {detail}", retryable=retryable)
        self.type = type
        self.status = status
        self.detail = detail
        self.field = field
        self.body = dict(body or {})

    @property
    def code(self) -> str:
        """The short code after `urn:crossdvp:payments:` (e.g. `insufficient-funds`)."""
        return self.type.removeprefix(TYPE_PREFIX)
