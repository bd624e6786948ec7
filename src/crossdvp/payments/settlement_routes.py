"""The /v1 routes of the settlement protocol: holds (lock, reclaim), the oracle event feed (long-poll
and SSE), DON configs and reports. The feed is async so a long-poll holds no thread while it waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from crossdvp.payments import ledger, reports
from crossdvp.payments._deps import (
    AUTH_PROBLEMS,
    Admin,
    AdminOrOracle,
    AdminOrParticipant,
    AnyRole,
    IdempotencyKey,
    Limit,
    ServiceDep,
    Uint32,
    problems,
    reject_unknown_query,
    request_identity,
)
from crossdvp.payments.errors import Conflict, LedgerRejection
from crossdvp.payments.feed import FeedPage, latest_cursor, read_feed
from crossdvp.payments.schemas import (
    HEX32_PATTERN,
    ID_PATTERN,
    DonConfigIn,
    DonConfigOut,
    EventOut,
    EventPage,
    HoldBatchIn,
    HoldBatchOut,
    HoldBatchResult,
    HoldIn,
    HoldOut,
    HoldPage,
    Problem,
    ReportIn,
    ReportOut,
)
from crossdvp.payments.store import WriteTx

__all__ = ["router"]

router = APIRouter(prefix="/v1", dependencies=[Depends(reject_unknown_query)])

HoldIdPath = Annotated[str, Path(pattern=r"^hold-[0-9a-f]{64}-[0-9]{1,3}$")]


def _hold_out(h: ledger.Hold) -> HoldOut:
    return HoldOut(
        hold_id=h.hold_id,
        settlement_id=h.settlement_id,
        leg_index=h.leg_index,
        terms_hash=h.terms_hash,
        payer_account=h.payer_account,
        payee_account=h.payee_account,
        currency=h.currency,
        amount_minor=h.amount_minor,
        deadline_s=h.deadline_s,
        state=h.state,  # one of the four states by construction
        placed_at_s=h.placed_at_s,
        final_at_s=h.final_at_s,
        workflow_execution_id=h.workflow_execution_id,
    )


def _don_out(s: reports.StoredDonConfig) -> DonConfigOut:
    return DonConfigOut(
        don_id=s.config.don_id,
        config_version=s.config.config_version,
        f=s.config.f,
        signers=list(s.config.signers),
        active=s.active,
        set_at_s=s.set_at_s,
    )


# --- holds -------------------------------------------------------------------------------------


@router.post(
    "/holds",
    status_code=201,
    response_model=HoldOut,
    tags=["holds"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def place_hold(
    body: HoldIn,
    request: Request,
    service: ServiceDep,
    principal: AdminOrParticipant,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Lock a settlement leg on this ledger (the payer's consent): available -> held.
    Refused once ledger time is past `deadline_s` (422 deadline-passed)."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        201,
        lambda tx: _hold_out(ledger.place_hold(tx, principal, ledger.HoldRequest(**body.model_dump()))),
    )


@router.post(
    "/holds/batch",
    response_model=HoldBatchOut,
    tags=["holds"],
    responses=problems(*AUTH_PROBLEMS, 409),
)
def place_holds(
    body: HoldBatchIn,
    request: Request,
    service: ServiceDep,
    principal: AdminOrParticipant,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Place up to 100 holds in one transaction (throughput). Each hold is placed or refused on its
    own, exactly as `POST /v1/holds` would; a refused hold never blocks the others."""

    def op(tx: WriteTx) -> HoldBatchOut:
        requests = [ledger.HoldRequest(**item.model_dump()) for item in body.holds]
        results: list[HoldBatchResult] = []
        for outcome in ledger.place_holds(tx, principal, requests):
            if isinstance(outcome, LedgerRejection):
                problem = Problem.model_validate(outcome.problem(instance=request.url.path))
                results.append(HoldBatchResult(status=outcome.status, hold=None, problem=problem))
            else:
                results.append(HoldBatchResult(status=201, hold=_hold_out(outcome), problem=None))
        return HoldBatchOut(results=results)

    return service.mutate(principal, key, request_identity(request, body.model_dump()), 200, op)


@router.get("/holds", response_model=HoldPage, tags=["holds"], responses=problems(*AUTH_PROBLEMS))
def list_holds(
    service: ServiceDep,
    principal: AnyRole,
    settlement_id: Annotated[str | None, Query(pattern=HEX32_PATTERN)] = None,
    state: Annotated[str | None, Query(pattern=r"^(held|settled|released|reclaimed)$")] = None,
    account_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    after: Annotated[str | None, Query(max_length=80)] = None,
    limit: Limit = 100,
) -> HoldPage:
    """Holds by id (a participant sees those it pays or is paid by)."""
    with service.store.read() as conn:
        items = ledger.list_holds(
            conn,
            principal,
            settlement_id=settlement_id.lower() if settlement_id else None,
            state=state,
            account_id=account_id,
            after=after,
            limit=limit,
        )
    return HoldPage(
        items=[_hold_out(h) for h in items], next_after=items[-1].hold_id if len(items) == limit else None
    )


@router.get(
    "/holds/{hold_id}", response_model=HoldOut, tags=["holds"], responses=problems(*AUTH_PROBLEMS, 404)
)
def get_hold(hold_id: HoldIdPath, service: ServiceDep, principal: AnyRole) -> HoldOut:
    """One hold (`hold-<settlement id hex>-<leg index>`)."""
    with service.store.read() as conn:
        return _hold_out(ledger.get_hold(conn, principal, hold_id))


@router.post(
    "/holds/{hold_id}/reclaim",
    response_model=HoldOut,
    tags=["holds"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def reclaim_hold(
    hold_id: HoldIdPath,
    request: Request,
    service: ServiceDep,
    principal: AdminOrParticipant,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """The payer takes back a hold no report finalised, once ledger time > deadline_s + grace_s."""
    grace_s = service.settings.grace_s
    return service.mutate(
        principal,
        key,
        request_identity(request),
        200,
        lambda tx: _hold_out(ledger.reclaim(tx, principal, hold_id, grace_s=grace_s)),
    )


# --- event feed --------------------------------------------------------------------------------


def _event_out(e: ledger.HoldEvent) -> EventOut:
    h = e.hold
    return EventOut(
        cursor=e.cursor,
        kind=e.kind,  # one of the four kinds by construction
        time_s=e.time_s,
        time_ms=e.time_ms,
        hold_id=h.hold_id,
        settlement_id=h.settlement_id,
        leg_index=h.leg_index,
        terms_hash=h.terms_hash,
        payer_account=h.payer_account,
        payee_account=h.payee_account,
        currency=h.currency,
        amount_minor=h.amount_minor,
        deadline_s=h.deadline_s,
        placed_at_s=h.placed_at_s,
        workflow_execution_id=e.workflow_execution_id,
    )


def _page_out(page: FeedPage) -> EventPage:
    return EventPage(
        events=[_event_out(e) for e in page.events],
        next_cursor=page.next_cursor,
        now_s=page.now_s,
        has_more=page.has_more,
    )


Cursor = Annotated[int, Query(ge=0, le=2**63 - 1)]


@router.get("/events", response_model=EventPage, tags=["oracle"], responses=problems(*AUTH_PROBLEMS))
async def get_events(
    service: ServiceDep,
    principal: AdminOrOracle,
    after: Cursor = 0,
    limit: Limit = 100,
    wait_s: Annotated[float, Query(ge=0, le=30)] = 0,
) -> EventPage:
    """Hold events after cursor `after`; with `wait_s` > 0, waits (long-poll) until one arrives.
    `now_s` is a watermark: no event with time_s <= now_s can be committed after this response."""
    store = service.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while wait_s > 0:
        version = service.notifier.version
        if await run_in_threadpool(latest_cursor, store) > after:
            break
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        # Other server processes on the same database do not bump our notifier: re-check each second.
        await service.notifier.wait_change(version, min(remaining, 1.0))
    page = await run_in_threadpool(read_feed, store, after=after, limit=limit)
    return _page_out(page)


@router.get(
    "/events/stream",
    tags=["oracle"],
    responses={
        200: {"description": "text/event-stream of hold events", "content": {"text/event-stream": {}}},
        **problems(*AUTH_PROBLEMS),
    },
)
async def stream_events(
    request: Request,
    service: ServiceDep,
    principal: AdminOrOracle,
    after: Cursor = 0,
    max_duration_s: Annotated[float, Query(gt=0, le=3600)] = 300,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")] = None,
) -> StreamingResponse:
    """Server-sent events: `event: <kind>` with `id: <cursor>` and the event JSON, and
    `event: watermark` with `{"now_s": ...}` after every batch (and at least once a second).
    Reconnect with `Last-Event-ID` (or `after`); the stream ends after `max_duration_s`."""
    cursor = int(last_event_id) if last_event_id else after
    store = service.store

    async def generate() -> AsyncIterator[str]:
        nonlocal cursor
        loop = asyncio.get_running_loop()
        end = loop.time() + max_duration_s
        while loop.time() < end and not await request.is_disconnected():
            version = service.notifier.version
            page = await run_in_threadpool(read_feed, store, after=cursor, limit=500)
            for event in page.events:
                data = _event_out(event).model_dump_json()
                yield f"id: {event.cursor}\nevent: {event.kind}\ndata: {data}\n\n"
            cursor = page.next_cursor
            yield f"event: watermark\ndata: {json.dumps({'now_s': page.now_s, 'cursor': cursor})}\n\n"
            if not page.has_more:
                await service.notifier.wait_change(version, min(1.0, max(0.0, end - loop.time())))

    return StreamingResponse(
        generate(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# --- DON configs and reports -------------------------------------------------------------------


@router.put(
    "/don-configs/{don_id}/{config_version}",
    response_model=DonConfigOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 409),
)
def put_don_config(
    don_id: Uint32,
    config_version: Uint32,
    body: DonConfigIn,
    request: Request,
    service: ServiceDep,
    principal: Admin,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Set the DON signer set reports must be signed by (admin), like the forwarder's setConfig."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        200,
        lambda tx: _don_out(reports.put_don_config(tx, don_id, config_version, body.f, body.signers)),
    )


@router.delete(
    "/don-configs/{don_id}/{config_version}",
    response_model=DonConfigOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def clear_don_config(
    don_id: Uint32,
    config_version: Uint32,
    request: Request,
    service: ServiceDep,
    principal: Admin,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Clear a DON config: reports naming it are refused from now on (admin)."""
    return service.mutate(
        principal,
        key,
        request_identity(request),
        200,
        lambda tx: _don_out(reports.clear_don_config(tx, don_id, config_version)),
    )


@router.get("/don-configs", response_model=list[DonConfigOut], tags=["reports"], responses=problems(401, 403))
def list_don_configs(service: ServiceDep, principal: AnyRole) -> list[DonConfigOut]:
    """Every DON config ever set, active or cleared."""
    with service.store.read() as conn:
        return [_don_out(s) for s in reports.list_don_configs(conn)]


def _unhex(value: str) -> bytes:
    return bytes.fromhex(value[2:])


@router.post(
    "/reports", response_model=ReportOut, tags=["reports"], responses=problems(*AUTH_PROBLEMS, 409, 422)
)
def submit_report(
    body: ReportIn, request: Request, service: ServiceDep, principal: AnyRole, key: IdempotencyKey = None
) -> ReportOut:
    """Deliver a signed report (any role: the report authenticates itself by its f+1 signatures).
    Each item is applied or skipped with a reason; a second delivery returns the first outcome."""
    identity = request_identity(request, body.model_dump())
    # Reports are idempotent by content; the key only has to refuse reuse with another body.
    if key is not None and service.check_idempotency(principal, key, identity) is False:
        raise Conflict(
            "idempotency-key-reused",
            "this Idempotency-Key was already used with a different request; use a new key",
            field="Idempotency-Key",
        )

    def remember(tx: WriteTx, record: dict[str, Any]) -> None:
        if key is not None:
            service.remember_idempotency(
                tx, principal, key, identity, 200, {"workflow_execution_id": record["workflow_execution_id"]}
            )

    record = reports.submit_report(
        service.store,
        _unhex(body.report),
        _unhex(body.context),
        [_unhex(s) for s in body.signatures],
        remember=remember,
    )
    service.notifier.bump()
    return ReportOut.model_validate(record)


@router.get(
    "/reports/{workflow_execution_id}",
    response_model=ReportOut,
    tags=["reports"],
    responses=problems(*AUTH_PROBLEMS, 404),
)
def get_report(
    workflow_execution_id: Annotated[str, Path(pattern=HEX32_PATTERN)],
    service: ServiceDep,
    principal: AnyRole,
) -> ReportOut:
    """A report this ledger applied: raw bytes, context, signatures, per-item outcome (for relaying)."""
    with service.store.read() as conn:
        return ReportOut.model_validate(reports.get_report(conn, workflow_execution_id))
