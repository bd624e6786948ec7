"""The HTTP boundary: pydantic request and response models (the OpenAPI document is generated from them).

Requests are strict (no coercion of "100" to 100, no floats for money) and forbid unknown fields, so
a client's mistake is reported against the field instead of being guessed at.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossdvp.payments.ledger import MAX_BALANCE_MINOR

__all__ = [
    "AccountIn",
    "AccountOut",
    "AccountPage",
    "CashIn",
    "CredentialIn",
    "CredentialOut",
    "DonConfigIn",
    "DonConfigOut",
    "EventOut",
    "EventPage",
    "FreezeIn",
    "HoldBatchIn",
    "HoldBatchOut",
    "HoldBatchResult",
    "HoldIn",
    "HoldOut",
    "HoldPage",
    "InfoOut",
    "ParticipantIn",
    "ParticipantOut",
    "PaymentIn",
    "Problem",
    "ReportIn",
    "ReportOut",
    "StatementPage",
    "TransferOut",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HEX32_PATTERN = r"^0x[0-9a-fA-F]{64}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
HEX_PATTERN = r"^0x([0-9a-fA-F]{2})*$"
MAX_REPORT_HEX = 2 + 2 * 512 * 1024  # 512 KiB of report bytes

Identifier = Annotated[str, Field(pattern=ID_PATTERN, description="1-64 characters of [A-Za-z0-9._-]")]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code, e.g. USD")]
AmountMinor = Annotated[int, Field(ge=1, le=MAX_BALANCE_MINOR, description="integer minor units (cents)")]
Hex32 = Annotated[str, Field(pattern=HEX32_PATTERN, description="0x + 64 hex digits")]
Reference = Annotated[str, Field(max_length=200, pattern=r"^[\x20-\x7e]*$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ParticipantIn(_Request):
    participant_id: Identifier
    # No control characters: PostgreSQL refuses NUL in text, and no display name needs them.
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ParticipantOut(BaseModel):
    participant_id: str
    name: str
    created_at_s: int


class CredentialIn(_Request):
    role: Literal["admin", "participant", "oracle"]
    participant_id: Identifier | None = None


class CredentialOut(BaseModel):
    credential_id: str
    role: Literal["admin", "participant", "oracle"]
    participant_id: str | None
    created_at_s: int
    api_key: str = Field(description="shown only in this response; the ledger stores only its hash")


class AccountIn(_Request):
    account_id: Identifier
    participant_id: Identifier
    currency: Currency


class AccountOut(BaseModel):
    account_id: str
    participant_id: str | None
    currency: str
    frozen: bool
    available_minor: int
    held_minor: int
    created_at_s: int


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_after: str | None = Field(description="pass as `after` for the next page; null when done")


class FreezeIn(_Request):
    frozen: bool


class CashIn(_Request):
    account_id: Identifier
    amount_minor: AmountMinor
    reference: Reference = ""


class PaymentIn(_Request):
    from_account: Identifier
    to_account: Identifier
    currency: Currency
    amount_minor: AmountMinor
    reference: Reference = ""


class TransferOut(BaseModel):
    entry_seq: int
    kind: Literal["cash_in", "cash_out", "payment"]
    from_account: str
    to_account: str
    currency: str
    amount_minor: int
    reference: str
    time_s: int


class StatementLineOut(BaseModel):
    posting_id: int
    entry_seq: int
    kind: str
    reference: str
    time_s: int
    bucket: Literal["available", "held"]
    amount_minor: int


class StatementPage(BaseModel):
    items: list[StatementLineOut]
    next_after: int | None


class HoldIn(_Request):
    settlement_id: Hex32
    leg_index: Annotated[int, Field(ge=0, le=255)]
    terms_hash: Hex32
    payer_account: Identifier
    payee_account: Identifier
    currency: Currency
    amount_minor: AmountMinor
    deadline_s: Annotated[int, Field(ge=0, le=2**63 - 1)]

    @field_validator("settlement_id", "terms_hash")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        return value.lower()


HoldState = Literal["held", "settled", "released", "reclaimed"]


class HoldOut(BaseModel):
    hold_id: str
    settlement_id: str
    leg_index: int
    terms_hash: str
    payer_account: str
    payee_account: str
    currency: str
    amount_minor: int
    deadline_s: int
    state: HoldState
    placed_at_s: int
    final_at_s: int | None
    workflow_execution_id: str | None


class HoldBatchIn(_Request):
    holds: Annotated[list[HoldIn], Field(min_length=1, max_length=100)]


class HoldBatchResult(BaseModel):
    status: int = Field(description="201 if placed, else the status the single-hold call would return")
    hold: HoldOut | None
    problem: Problem | None


class HoldBatchOut(BaseModel):
    results: list[HoldBatchResult] = Field(description="one per requested hold, in request order")


class HoldPage(BaseModel):
    items: list[HoldOut]
    next_after: str | None


class EventOut(BaseModel):
    cursor: int
    kind: Literal["hold_placed", "hold_settled", "hold_released", "hold_reclaimed"]
    time_s: int
    time_ms: int
    hold_id: str
    settlement_id: str
    leg_index: int
    terms_hash: str
    payer_account: str
    payee_account: str
    currency: str
    amount_minor: int
    deadline_s: int
    placed_at_s: int
    workflow_execution_id: str | None


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: int
    now_s: int = Field(description="watermark: no event with time_s <= now_s can be committed later")
    has_more: bool


class DonConfigIn(_Request):
    f: Annotated[int, Field(ge=1, le=255)]
    signers: Annotated[
        list[Annotated[str, Field(pattern=ADDRESS_PATTERN)]], Field(min_length=4, max_length=31)
    ]


class DonConfigOut(BaseModel):
    don_id: int
    config_version: int
    f: int
    signers: list[str]
    active: bool
    set_at_s: int


class ReportIn(_Request):
    report: Annotated[
        str, Field(pattern=HEX_PATTERN, max_length=MAX_REPORT_HEX, description="raw report, 0x hex")
    ]
    context: Annotated[str, Field(pattern=HEX_PATTERN, max_length=2 + 2 * 1024)]
    signatures: Annotated[
        list[Annotated[str, Field(pattern=HEX_PATTERN, max_length=2 + 2 * 128)]], Field(max_length=64)
    ]


class ReportHoldOut(BaseModel):
    hold_id: str
    leg_index: int
    outcome: Literal["settled", "released", "skipped"]
    reason: Literal["already-final", "terms-hash-mismatch"] | None


class ReportItemOut(BaseModel):
    settlement_id: str
    terms_hash: str
    decision: Literal["settle", "abort"]
    outcome: Literal["applied", "skipped"]
    reason: Literal["unknown-settlement", "already-final", "terms-hash-mismatch"] | None
    holds: list[ReportHoldOut]


class ReportOut(BaseModel):
    workflow_execution_id: str
    report: str
    context: str
    signatures: list[str]
    don_id: int
    config_version: int
    signers: list[str]
    applied_at_s: int
    items: list[ReportItemOut]


class InfoOut(BaseModel):
    ledger_id: str
    network: str
    time_s: int
    grace_s: int


class ValidationIssue(BaseModel):
    field: str
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="stable URI, urn:crossdvp:payments:<code>")
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None
    errors: list[ValidationIssue] | None = None
