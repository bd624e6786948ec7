"""Python client for the payments ledger (httpx), used by the oracle nodes, the CLI and the tests.

`PaymentsClient` is synchronous; `AsyncPaymentsClient` offers what a node needs (info, events,
holds, reports) without blocking its event loop. Every failure raises `PaymentsApiError` carrying the
problem's `type`, `status`, `detail` and `field`; transport failures and 5xx are `retryable`.
Mutating calls always send an `Idempotency-Key` (generated unless given), and a retry after a
transport failure reuses it, so a timed-out request is never applied twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from crossdvp.payments.errors import TYPE_PREFIX, PaymentsApiError
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.report import DonConfig

__all__ = [
    "AsyncPaymentsClient",
    "Feed",
    "FeedEvent",
    "PaymentsApiError",
    "PaymentsClient",
    "ReportItemOutcome",
    "ReportRecord",
]


def _hex(value: bytes | str) -> str:
    return value.lower() if isinstance(value, str) else "0x" + bytes(value).hex()


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One hold event from the feed (`kind`: hold_placed | hold_settled | hold_released | hold_reclaimed)."""

    cursor: int
    kind: str
    time_s: int
    hold_id: str
    settlement_id: bytes
    leg_index: int
    terms_hash: bytes
    payer_account: str
    payee_account: str
    currency: str
    amount_minor: int
    deadline_s: int
    placed_at_s: int
    workflow_execution_id: bytes | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeedEvent:
        return cls(
            cursor=int(d["cursor"]),
            kind=str(d["kind"]),
            time_s=int(d["time_s"]),
            hold_id=str(d["hold_id"]),
            settlement_id=_unhex(d["settlement_id"]),
            leg_index=int(d["leg_index"]),
            terms_hash=_unhex(d["terms_hash"]),
            payer_account=str(d["payer_account"]),
            payee_account=str(d["payee_account"]),
            currency=str(d["currency"]),
            amount_minor=int(d["amount_minor"]),
            deadline_s=int(d["deadline_s"]),
            placed_at_s=int(d["placed_at_s"]),
            workflow_execution_id=_unhex(d["workflow_execution_id"])
            if d.get("workflow_execution_id")
            else None,
        )

    def lock_observation(self, network: str) -> LockObservation:
        """The lock this hold represents, for `decide` (locked_at_s = the ledger time it was placed)."""
        return LockObservation(
            network=network,
            leg_index=self.leg_index,
            settlement_id=self.settlement_id,
            terms_hash=self.terms_hash,
            asset=self.currency,
            amount_minor=self.amount_minor,
            payer=self.payer_account,
            payee=self.payee_account,
            deadline_s=self.deadline_s,
            locked_at_s=self.placed_at_s,
        )


@dataclass(frozen=True, slots=True)
class Feed:
    """A page of the feed. `now_s` is a watermark: no event stamped <= now_s can appear later."""

    events: tuple[FeedEvent, ...]
    next_cursor: int
    now_s: int
    has_more: bool

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Feed:
        return cls(
            events=tuple(FeedEvent.from_json(e) for e in d["events"]),
            next_cursor=int(d["next_cursor"]),
            now_s=int(d["now_s"]),
            has_more=bool(d["has_more"]),
        )


@dataclass(frozen=True, slots=True)
class ReportItemOutcome:
    settlement_id: bytes
    terms_hash: bytes
    decision: str  # "settle" | "abort"
    outcome: str  # "applied" | "skipped"
    reason: str | None  # unknown-settlement | already-final | terms-hash-mismatch
    holds: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A report as the ledger stored it: enough to relay it to another network."""

    workflow_execution_id: bytes
    report: bytes
    context: bytes
    signatures: tuple[bytes, ...]
    don_id: int
    config_version: int
    signers: tuple[str, ...]
    applied_at_s: int
    items: tuple[ReportItemOutcome, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReportRecord:
        return cls(
            workflow_execution_id=_unhex(d["workflow_execution_id"]),
            report=_unhex(d["report"]),
            context=_unhex(d["context"]),
            signatures=tuple(_unhex(s) for s in d["signatures"]),
            don_id=int(d["don_id"]),
            config_version=int(d["config_version"]),
            signers=tuple(d["signers"]),
            applied_at_s=int(d["applied_at_s"]),
            items=tuple(
                ReportItemOutcome(
                    settlement_id=_unhex(i["settlement_id"]),
                    terms_hash=_unhex(i["terms_hash"]),
                    decision=i["decision"],
                    outcome=i["outcome"],
                    reason=i["reason"],
                    holds=tuple(i["holds"]),
                )
                for i in d["items"]
            ),
        )


def _error_from(response: httpx.Response) -> PaymentsApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return PaymentsApiError(
            type=TYPE_PREFIX + "http-error",
            status=response.status_code,
            detail=response.text[:500] or "no body",
        )
    return PaymentsApiError(
        type=str(body.get("type", TYPE_PREFIX + "http-error")),
        status=int(body.get("status", response.status_code)),
        detail=str(body.get("detail", "")),
        field=body.get("field"),
        body=body,
    )


def _transport_error(exc: httpx.HTTPError) -> PaymentsApiError:
    return PaymentsApiError(
        type=TYPE_PREFIX + "transport-error", status=0, detail=f"{type(exc).__name__}: {exc}"
    )


def _hold_body(
    settlement_id: bytes | str,
    leg_index: int,
    terms_hash: bytes | str,
    payer_account: str,
    payee_account: str,
    currency: str,
    amount_minor: int,
    deadline_s: int,
) -> dict[str, Any]:
    return {
        "settlement_id": _hex(settlement_id),
        "leg_index": leg_index,
        "terms_hash": _hex(terms_hash),
        "payer_account": payer_account,
        "payee_account": payee_account,
        "currency": currency,
        "amount_minor": amount_minor,
        "deadline_s": deadline_s,
    }


def _report_body(raw: bytes, context: bytes, signatures: Sequence[bytes]) -> dict[str, Any]:
    return {"report": _hex(raw), "context": _hex(context), "signatures": [_hex(s) for s in signatures]}


class PaymentsClient:
    """Synchronous client. `transport` lets tests plug an in-process app (httpx.MockTransport or
    starlette's TestClient transport); `retries` re-sends retryable failures with the same key."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, transport=transport, timeout=timeout_s)
        self._retries = retries
        self._backoff_s = backoff_s

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PaymentsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One call; returns the decoded JSON body or raises PaymentsApiError."""
        headers: dict[str, str] = {}
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    headers=headers,
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
                if response.is_success:
                    return response.json()
                error = _error_from(response)
            except httpx.HTTPError as exc:
                error = _transport_error(exc)
            if not error.retryable or attempt >= self._retries:
                raise error
            attempt += 1
            time.sleep(self._backoff_s * attempt)

    # ledger
    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/info")
        return result

    # admin
    def create_participant(
        self, participant_id: str, name: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body = {"participant_id": participant_id, "name": name}
        result: dict[str, Any] = self.request(
            "POST", "/v1/participants", json=body, idempotency_key=idempotency_key
        )
        return result

    def create_credential(self, role: str, participant_id: str | None = None) -> dict[str, Any]:
        """Returns the credential including `api_key` (shown once)."""
        result: dict[str, Any] = self.request(
            "POST", "/v1/credentials", json={"role": role, "participant_id": participant_id}
        )
        return result

    def open_account(self, account_id: str, participant_id: str, currency: str) -> dict[str, Any]:
        body = {"account_id": account_id, "participant_id": participant_id, "currency": currency}
        result: dict[str, Any] = self.request("POST", "/v1/accounts", json=body)
        return result

    def freeze(self, account_id: str, frozen: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/v1/accounts/{account_id}/freeze", json={"frozen": frozen}
        )
        return result

    def cash_in(
        self, account_id: str, amount_minor: int, reference: str = "", *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body = {"account_id": account_id, "amount_minor": amount_minor, "reference": reference}
        result: dict[str, Any] = self.request(
            "POST", "/v1/cash-in", json=body, idempotency_key=idempotency_key
        )
        return result

    def cash_out(
        self, account_id: str, amount_minor: int, reference: str = "", *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body = {"account_id": account_id, "amount_minor": amount_minor, "reference": reference}
        result: dict[str, Any] = self.request(
            "POST", "/v1/cash-out", json=body, idempotency_key=idempotency_key
        )
        return result

    def put_don_config(self, don: DonConfig) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/v1/don-configs/{don.don_id}/{don.config_version}",
            json={"f": don.f, "signers": list(don.signers)},
        )
        return result

    def clear_don_config(self, don_id: int, config_version: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/v1/don-configs/{don_id}/{config_version}")
        return result

    # participant
    def account(self, account_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/accounts/{account_id}")
        return result

    def accounts(
        self, *, participant_id: str | None = None, after: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        params = {"participant_id": participant_id, "after": after, "limit": limit}
        result: dict[str, Any] = self.request("GET", "/v1/accounts", params=params)
        return result

    def statement(self, account_id: str, *, after: int = 0, limit: int = 100) -> dict[str, Any]:
        params = {"after": after, "limit": limit}
        result: dict[str, Any] = self.request("GET", f"/v1/accounts/{account_id}/statement", params=params)
        return result

    def pay(
        self,
        from_account: str,
        to_account: str,
        currency: str,
        amount_minor: int,
        reference: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "from_account": from_account,
            "to_account": to_account,
            "currency": currency,
            "amount_minor": amount_minor,
            "reference": reference,
        }
        result: dict[str, Any] = self.request(
            "POST", "/v1/payments", json=body, idempotency_key=idempotency_key
        )
        return result

    def place_hold(
        self,
        *,
        settlement_id: bytes | str,
        leg_index: int,
        terms_hash: bytes | str,
        payer_account: str,
        payee_account: str,
        currency: str,
        amount_minor: int,
        deadline_s: int,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = _hold_body(
            settlement_id,
            leg_index,
            terms_hash,
            payer_account,
            payee_account,
            currency,
            amount_minor,
            deadline_s,
        )
        result: dict[str, Any] = self.request("POST", "/v1/holds", json=body, idempotency_key=idempotency_key)
        return result

    def place_holds(
        self, holds: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Place up to 100 holds in one call; each mapping takes `place_hold`'s keyword arguments.
        Returns one result per hold, in order: {"status": 201, "hold": {...}} or {"status", "problem"}."""
        body = {"holds": [_hold_body(**h) for h in holds]}
        result = self.request("POST", "/v1/holds/batch", json=body, idempotency_key=idempotency_key)
        return list(result["results"])

    def hold(self, hold_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/holds/{hold_id}")
        return result

    def holds(
        self,
        *,
        settlement_id: bytes | str | None = None,
        state: str | None = None,
        account_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        params = {
            "settlement_id": _hex(settlement_id) if settlement_id is not None else None,
            "state": state,
            "account_id": account_id,
            "after": after,
            "limit": limit,
        }
        result: dict[str, Any] = self.request("GET", "/v1/holds", params=params)
        return result

    def reclaim(self, hold_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/v1/holds/{hold_id}/reclaim", idempotency_key=idempotency_key
        )
        return result

    # oracle
    def events(self, *, after: int = 0, limit: int = 100, wait_s: float = 0) -> Feed:
        params = {"after": after, "limit": limit, "wait_s": wait_s}
        timeout = httpx.Timeout(wait_s + 10.0)
        body = self.request("GET", "/v1/events", params=params, timeout_s=timeout.read)
        return Feed.from_json(body)

    def post_report(self, raw: bytes, context: bytes, signatures: Sequence[bytes]) -> ReportRecord:
        return ReportRecord.from_json(
            self.request("POST", "/v1/reports", json=_report_body(raw, context, signatures))
        )

    def get_report(self, workflow_execution_id: bytes | str) -> ReportRecord:
        return ReportRecord.from_json(self.request("GET", f"/v1/reports/{_hex(workflow_execution_id)}"))


class AsyncPaymentsClient:
    """Asynchronous client with what an oracle node needs: info, events, holds, reports."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, transport=transport, timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPaymentsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One call (no automatic retry: a node's loop decides); raises PaymentsApiError."""
        headers = {"Idempotency-Key": uuid.uuid4().hex} if method in ("POST", "PUT", "DELETE") else {}
        try:
            response = await self._http.request(
                method,
                path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
                timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if not response.is_success:
            raise _error_from(response)
        return response.json()

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/info")
        return result

    async def events(self, *, after: int = 0, limit: int = 100, wait_s: float = 0) -> Feed:
        params = {"after": after, "limit": limit, "wait_s": wait_s}
        return Feed.from_json(await self.request("GET", "/v1/events", params=params, timeout_s=wait_s + 10.0))

    async def hold(self, hold_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/holds/{hold_id}")
        return result

    async def holds(self, *, settlement_id: bytes | str | None = None, limit: int = 100) -> dict[str, Any]:
        params = {"settlement_id": _hex(settlement_id) if settlement_id is not None else None, "limit": limit}
        result: dict[str, Any] = await self.request("GET", "/v1/holds", params=params)
        return result

    async def post_report(self, raw: bytes, context: bytes, signatures: Sequence[bytes]) -> ReportRecord:
        body = _report_body(raw, context, signatures)
        return ReportRecord.from_json(await self.request("POST", "/v1/reports", json=body))

    async def get_report(self, workflow_execution_id: bytes | str) -> ReportRecord:
        return ReportRecord.from_json(await self.request("GET", f"/v1/reports/{_hex(workflow_execution_id)}"))
