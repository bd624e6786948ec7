"""The node's HTTP API (FastAPI): register and inspect settlements, the peer endpoint, health, metrics.

    POST /v1/settlements          register terms (validated, shared with every peer); 201 new, 200 known
    POST /v1/settlements/batch    register up to 200 terms in one transaction; a result per item
    GET  /v1/settlements          list (?status=pending|decided|reported|delivered&limit=&after=0x..)
    GET  /v1/settlements/{id}     status, legs, locks seen, decision, reports (hex) and deliveries
    POST /v1/peer/messages        the peer transport (authenticated envelopes, see peers.py)
    GET  /health                  node name, per-network cursor / final time / last poll
    GET  /metrics                 Prometheus text format

Errors are application/problem+json (RFC 9457) with a `detail` that names the field at fault.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from crossdvp.oracle.errors import TermsConflict
from crossdvp.oracle.node import Node
from crossdvp.oracle.peers import MAX_TERMS_PER_BATCH
from crossdvp.oracle.ports import DeliveryState
from crossdvp.oracle.store import hex32
from crossdvp.settlement.decision import leg_lock, lock_matches
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.terms import Terms

__all__ = ["create_app", "settlement_view"]

STATUSES = ("pending", "decided", "reported", "delivered")
#: Terms per POST /v1/settlements/batch (the same bound as a peer's terms batch).
MAX_REGISTER_BATCH = MAX_TERMS_PER_BATCH


def _problem_body(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        _problem_body(status, title, detail), status_code=status, media_type="application/problem+json"
    )


def _item_problem(settlement_id: str | None, status: int, title: str, detail: str) -> dict[str, Any]:
    """One refused item of a batch: its settlement id (None if it named none) and the problem."""
    return {"settlement_id": settlement_id, "status": status, "problem": _problem_body(status, title, detail)}


def _named_id(item: object) -> str | None:
    """The settlement id an invalid item names, if it names a well-formed one."""
    named = item.get("settlement_id") if isinstance(item, dict) else None
    parsed = _settlement_id(named) if isinstance(named, str) else None
    return None if parsed is None else hex32(parsed)


def _client_terms(raw: object) -> Terms | str:
    """Terms from a client's JSON, or why they are invalid (the detail of a 422)."""
    try:
        return Terms.from_dict(raw)  # type: ignore[arg-type]  # rejects a non-mapping itself
    except SettlementError as exc:
        return str(exc)
    except (TypeError, KeyError, ValueError) as exc:
        return f"malformed terms: {exc}"


def settlement_view(node: Node, terms: Terms) -> dict[str, Any]:
    """The operator's view of one settlement, from this node's store."""
    store = node.store
    locks = store.locks_for(terms.settlement_id)
    decision = store.decision(terms.settlement_id)
    reports = store.reports_for(terms.settlement_id)
    legs = []
    for index, leg in enumerate(terms.legs):
        locked = leg_lock(terms, index, locks) is not None
        legs.append({"index": index, **leg.to_dict(), "locked": locked})
    report_views = []
    any_delivered_everywhere = False
    for stored in reports:
        deliveries = store.deliveries_for(stored.report.workflow_execution_id)
        if deliveries and all(d.state is DeliveryState.DELIVERED for d in deliveries):
            any_delivered_everywhere = True
        report_views.append(
            {
                "execution_id": hex32(stored.report.workflow_execution_id),
                "raw": "0x" + stored.report.raw.hex(),
                "context": "0x" + stored.report.context.hex(),
                "signatures": ["0x" + s.hex() for s in stored.report.signatures],
                "signers": list(stored.signers),
                "deliveries": [
                    {
                        "network": d.network,
                        "state": d.state.value,
                        "reference": d.reference,
                        "detail": d.detail,
                        "attempts": d.attempts,
                    }
                    for d in deliveries
                ],
            }
        )
    if any_delivered_everywhere:
        status = "delivered"
    elif reports:
        status = "reported"
    elif decision is not None:
        status = "decided"
    else:
        status = "pending"
    return {
        "settlement_id": hex32(terms.settlement_id),
        "terms_hash": hex32(terms.terms_hash),
        "deadline_s": terms.deadline_s,
        "status": status,
        "legs": legs,
        "locks": [
            {
                "network": lock.network,
                "leg_index": lock.leg_index,
                "terms_hash": hex32(lock.terms_hash),
                "asset": lock.asset,
                "amount_minor": lock.amount_minor,
                "payer": lock.payer,
                "payee": lock.payee,
                "deadline_s": lock.deadline_s,
                "locked_at_s": lock.locked_at_s,
                "matches": lock.leg_index < len(terms.legs) and lock_matches(terms, lock.leg_index, lock),
            }
            for lock in locks
        ],
        "decision": None
        if decision is None
        else {
            "decision": decision.decision.name,
            "decided_at_s": decision.decided_at_s,
            "reason": decision.reason,
        },
        "report": report_views[0] if report_views else None,
        "reports": report_views,
    }


def _settlement_id(value: str) -> bytes | None:
    if not value.startswith("0x") or len(value) != 66:
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None


def create_app(node: Node) -> FastAPI:
    """The API of one node. Handlers are async and run on the node's event loop (no thread pool)."""
    app = FastAPI(title=f"crossdvp oracle node {node.settings.name}", version="1")

    @app.post("/v1/settlements", status_code=201, response_model=None)
    async def register(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return problem(422, "Invalid terms", "the body must be a JSON object of terms")
        terms = _client_terms(body)
        if isinstance(terms, str):
            return problem(422, "Invalid terms", terms)
        try:
            new = node.register_terms(terms)
        except TermsConflict as exc:
            return problem(409, "Settlement id already registered with other terms", str(exc))
        return JSONResponse(settlement_view(node, terms), status_code=201 if new else 200)

    @app.post("/v1/settlements/batch", response_model=None)
    async def register_batch(request: Request) -> JSONResponse:
        """Register many terms at once: one store transaction (one disk sync) for all of them.

        The body is {"settlements": [terms, ...]} with 1..MAX_REGISTER_BATCH items. The answer is 200
        with one result per item, in order: {"settlement_id", "status"} where status is what
        POST /v1/settlements would answer (201 new, 200 known, 409 other terms under that id, 422
        invalid terms), and a "problem" for 409 and 422. An invalid item is refused alone; a body
        that is not such a list is refused whole (422).
        """
        try:
            body = await request.json()
        except ValueError:
            body = None
        raw = body.get("settlements") if isinstance(body, dict) else None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_REGISTER_BATCH:
            return problem(
                422,
                "Invalid batch",
                f'the body must be {{"settlements": [terms, ...]}} with 1 to {MAX_REGISTER_BATCH} terms',
            )
        results: list[dict[str, Any] | None] = []
        valid: list[Terms] = []
        for item in raw:
            parsed = _client_terms(item)
            if isinstance(parsed, str):
                results.append(_item_problem(_named_id(item), 422, "Invalid terms", parsed))
            else:
                valid.append(parsed)
                results.append(None)
        registered = iter(zip(valid, node.register_terms_many(valid), strict=True))
        out: list[dict[str, Any]] = []
        for result in results:
            if result is not None:
                out.append(result)
                continue
            terms, outcome = next(registered)
            sid = hex32(terms.settlement_id)
            if isinstance(outcome, TermsConflict):
                title = "Settlement id already registered with other terms"
                out.append(_item_problem(sid, 409, title, str(outcome)))
            else:
                out.append({"settlement_id": sid, "status": 201 if outcome else 200})
        return JSONResponse({"results": out})

    @app.get("/v1/settlements/{settlement_id}", response_model=None)
    async def get_settlement(settlement_id: str) -> JSONResponse:
        sid = _settlement_id(settlement_id)
        if sid is None:
            return problem(400, "Invalid settlement id", "settlement_id must be 0x + 64 hex characters")
        terms = node.store.get_terms(sid)
        if terms is None:
            return problem(
                404, "Unknown settlement", f"settlement {settlement_id} is not registered at this node"
            )
        return JSONResponse(settlement_view(node, terms))

    @app.get("/v1/settlements", response_model=None)
    async def list_settlements(
        status: str | None = None, limit: int = 100, after: str | None = None
    ) -> JSONResponse:
        if status is not None and status not in STATUSES:
            return problem(422, "Invalid filter", f"status must be one of {', '.join(STATUSES)}")
        if not 1 <= limit <= 1000:
            return problem(422, "Invalid filter", "limit must be in 1..1000")
        after_id = None
        if after is not None:
            after_id = _settlement_id(after)
            if after_id is None:
                return problem(422, "Invalid filter", "after must be 0x + 64 hex characters")
        views: list[dict[str, Any]] = []
        cursor = after_id
        # Filtering by status happens after reading; page through until `limit` views are found.
        while len(views) < limit:
            batch = node.store.list_terms(limit=200, after=cursor)
            if not batch:
                break
            for terms in batch:
                view = settlement_view(node, terms)
                if status is None or view["status"] == status:
                    views.append(view)
                    if len(views) == limit:
                        break
            cursor = batch[-1].settlement_id
        return JSONResponse(
            {"settlements": views, "next_after": views[-1]["settlement_id"] if views else None}
        )

    @app.post("/v1/peer/messages", response_model=None)
    async def peer_message(request: Request) -> JSONResponse:
        try:
            envelope = await request.json()
        except ValueError:
            envelope = None
        status, reply = await node.handle_peer_message(envelope)
        return JSONResponse(reply, status_code=status)

    @app.get("/health", response_model=None)
    async def health() -> JSONResponse:
        return JSONResponse(node.health())

    @app.get("/metrics", response_model=None)
    async def metrics() -> Response:
        return Response(node.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
