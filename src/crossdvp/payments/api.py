"""The HTTP API of the payment ledger (FastAPI), under /v1. Build it with `create_app`.

Authentication: `Authorization: Bearer <api key>`. Authorization has two layers:
- role (403 `forbidden`): checked first, from the route's allowed roles;
- resource (404): a participant asking for an account or hold that is not its own gets the same
  404 as for one that does not exist, so the API never reveals other participants' accounts.
  A payee account is the exception by necessity: a payer names it, and an unknown payee is a 422.

Idempotency: every mutating call accepts `Idempotency-Key` (scoped per credential). The stored
response is written in the same transaction as the change, so a retry after a timeout either finds
the change and its response, or neither. The same key with another method/path/body is a 409
`idempotency-key-reused`. A request that was rejected is not recorded (a retry runs again).
Reports are idempotent by content as well: the same report returns its first outcome.

Errors are RFC 9457 problem+json everywhere, including validation errors, unknown routes and
unexpected failures, with a stable `type` (`urn:crossdvp:payments:<code>`) and the `field` at fault.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from crossdvp.clock import Clock, SystemClock
from crossdvp.payments import routes, settlement_routes
from crossdvp.payments._deps import PROBLEM_MEDIA_TYPE, Service, problems
from crossdvp.payments.config import Settings
from crossdvp.payments.errors import TYPE_PREFIX, LedgerRejection
from crossdvp.payments.schemas import Problem
from crossdvp.payments.store import Store, make_engine, migrate

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def _problem_response(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


class _SingleValuedQuery:
    """Refuses a query parameter given more than once (422 validation-error). Every query parameter
    of this API takes one value, and FastAPI would otherwise silently keep the last one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if raw:
            counts = Counter(key for key, _ in parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
            repeated = sorted(key for key, n in counts.items() if n > 1)
            if repeated:
                issues = [
                    {"field": key, "message": "given more than once", "type": "repeated_query_parameter"}
                    for key in repeated
                ]
                body = {
                    "type": TYPE_PREFIX + "validation-error",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": f"{repeated[0]}: given more than once; each query parameter takes one value",
                    "field": repeated[0],
                    "instance": scope.get("path", ""),
                    "errors": issues,
                }
                await _problem_response(422, body)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LedgerRejection)
    async def _rejection(request: Request, exc: LedgerRejection) -> JSONResponse:
        logger.info("rejected %s %s: %s", request.method, request.url.path, exc.code)
        return _problem_response(exc.status, exc.problem(instance=request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {
                "field": _field_of(tuple(err.get("loc", ()))),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        first = issues[0] if issues else {"field": "body", "message": "invalid request"}
        body = {
            "type": TYPE_PREFIX + "validation-error",
            "title": "Invalid request",
            "status": 422,
            "detail": f"{first['field']}: {first['message']}"
            + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""),
            "field": first["field"],
            "instance": request.url.path,
            "errors": issues,
        }
        return _problem_response(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI raises 400 for a body it cannot parse at all (e.g. not UTF-8): a validation error.
            body = {
                "type": TYPE_PREFIX + "validation-error",
                "title": "Invalid request",
                "status": 422,
                "detail": f"body: {exc.detail}",
                "field": "body",
                "instance": request.url.path,
                "errors": [{"field": "body", "message": str(exc.detail), "type": "body_decode"}],
            }
            return _problem_response(422, body)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        body = {
            "type": TYPE_PREFIX + code,
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}",
            "instance": request.url.path,
        }
        return JSONResponse(
            body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE, headers=exc.headers
        )

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        body = {
            "type": TYPE_PREFIX + "database-unavailable",
            "title": "Service unavailable",
            "status": 503,
            "detail": "the ledger database is busy or unreachable; retry with the same Idempotency-Key",
        }
        return _problem_response(503, body)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        body = {
            "type": TYPE_PREFIX + "internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": "the ledger failed unexpectedly; nothing was committed for this request",
        }
        return _problem_response(500, body)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    run_migrations: bool = True,
) -> FastAPI:
    """The ASGI app for one ledger. Migrates the database first unless told not to."""
    engine = engine or make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    store = Store(engine, clock or SystemClock())
    app = FastAPI(
        title="crossdvp payments ledger",
        version="1",
        description=__doc__,
        responses=problems(422, 503),
    )
    app.state.service = Service(store, settings)
    _install_error_handlers(app)
    app.add_middleware(_SingleValuedQuery)
    app.include_router(routes.router)
    app.include_router(settlement_routes.router)

    original_openapi = app.openapi

    def openapi_with_problem() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(
                Problem.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"]
                if "$defs" in Problem.model_json_schema()
                else {}
            )
            problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            problem_schema.pop("$defs", None)
            components["Problem"] = problem_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_problem  # type: ignore[method-assign]
    return app
