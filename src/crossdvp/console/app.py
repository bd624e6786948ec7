"""The console's web app (FastAPI + Jinja2): pages, the HTML fragments the pages poll, and JSON.

    GET /settlements[?status=&party=]     the live list          (fragment: /fragments/settlements)
    GET /settlements/{id}                 one settlement          (fragment: /fragments/settlements/{id})
    GET /don                              the nodes' health       (fragment: /fragments/don)
    GET /ledgers                          holders and accounts    (fragment: /fragments/ledgers)
    GET /api/settlements, /api/settlements/{id}, /api/don, /api/ledgers   the same as JSON
    GET /static/...                       console.js / console.css, shipped in the package

Pages are rendered on the server; console.js re-fetches a page's fragment every second and swaps it
in, so nothing needs a reload and the pages still read without JavaScript. Every answer carries a
strict Content-Security-Policy (scripts and styles from this origin only) and `Cache-Control: no-store`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from crossdvp.console.format import (
    countdown,
    format_amount,
    format_utc,
    relative_age,
    short_hex,
    short_hold_id,
)
from crossdvp.console.service import Console, Snapshot
from crossdvp.console.views import STATUSES, as_json

__all__ = ["create_app"]

_HERE = Path(__file__).parent
_SETTLEMENT_ID = re.compile(r"^0x[0-9a-f]{64}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    env = templates.env
    env.filters["utc"] = format_utc
    env.filters["age"] = relative_age
    env.filters["countdown"] = countdown
    env.filters["short"] = short_hex
    env.filters["short_hold"] = short_hold_id
    env.filters["amount"] = format_amount
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


def _clean_status(value: str | None) -> str | None:
    return value if value in STATUSES else None


def _clean_party(value: str | None) -> str | None:
    return value.strip()[:128] or None if value else None


def create_app(console: Console, *, on_shutdown: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    """The console's ASGI app over `console`. `on_shutdown` closes the sources' connections."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = FastAPI(
        title="crossdvp console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    templates = _templates()
    config = console.config

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("now_s", console.now_s())
        context.setdefault("source", config.source)
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def _problems(snap: Snapshot) -> list[str]:
        """One line per source that cannot be read, shown above the list."""
        out = [f"node {p.endpoint.name} is down ({p.error})" for p in snap.probes if not p.up]
        if not snap.chain.ok:
            out.append(f"chain {snap.chain.network}: {snap.chain.error}")
        if not snap.ledger.ok:
            out.append(f"ledger {snap.ledger.network}: {snap.ledger.error}")
        return out

    async def list_context(status: str | None, party: str | None) -> dict[str, Any]:
        status, party = _clean_status(status), _clean_party(party)
        snap = await console.snapshot()
        return {
            "rows": await console.rows(status=status, party=party),
            "status": status,
            "party": party,
            "statuses": STATUSES,
            "parties": config.parties,
            "problems": _problems(snap),
        }

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/settlements", status_code=303)

    @app.get("/settlements", response_class=HTMLResponse)
    async def settlements_page(
        request: Request, status: str | None = None, party: str | None = None
    ) -> HTMLResponse:
        return render(request, "settlements.html", nav="settlements", **await list_context(status, party))

    @app.get("/fragments/settlements", response_class=HTMLResponse)
    async def settlements_fragment(
        request: Request, status: str | None = None, party: str | None = None
    ) -> HTMLResponse:
        return render(request, "_settlements.html", **await list_context(status, party))

    @app.get("/api/settlements")
    async def settlements_json(status: str | None = None, party: str | None = None) -> JSONResponse:
        rows = await console.rows(status=_clean_status(status), party=_clean_party(party))
        return JSONResponse({"now_s": console.now_s(), "settlements": as_json(rows)})

    async def detail_or_none(settlement_id: str) -> Any:
        sid = settlement_id.lower()
        return await console.detail(sid) if _SETTLEMENT_ID.match(sid) else None

    @app.get("/settlements/{settlement_id}", response_class=HTMLResponse)
    async def settlement_page(request: Request, settlement_id: str) -> HTMLResponse:
        detail = await detail_or_none(settlement_id)
        return render(
            request,
            "settlement.html",
            status_code=200 if detail is not None else 404,
            nav="settlements",
            detail=detail,
            settlement_id=settlement_id,
            problems=_problems(await console.snapshot()),
        )

    @app.get("/fragments/settlements/{settlement_id}", response_class=HTMLResponse)
    async def settlement_fragment(request: Request, settlement_id: str) -> HTMLResponse:
        detail = await detail_or_none(settlement_id)
        return render(
            request,
            "_settlement.html",
            status_code=200 if detail is not None else 404,
            detail=detail,
            settlement_id=settlement_id,
            problems=_problems(await console.snapshot()),
        )

    @app.get("/api/settlements/{settlement_id}")
    async def settlement_json(settlement_id: str) -> JSONResponse:
        detail = await detail_or_none(settlement_id)
        if detail is None:
            return JSONResponse(
                {
                    "title": "Unknown settlement",
                    "detail": "no node knows a settlement with this id (0x + 64 hex)",
                },
                status_code=404,
            )
        return JSONResponse({"now_s": console.now_s(), "settlement": as_json(detail)})

    @app.get("/don", response_class=HTMLResponse)
    async def don_page(request: Request) -> HTMLResponse:
        return render(request, "don.html", nav="don", don=await console.don())

    @app.get("/fragments/don", response_class=HTMLResponse)
    async def don_fragment(request: Request) -> HTMLResponse:
        return render(request, "_don.html", don=await console.don())

    @app.get("/api/don")
    async def don_json() -> JSONResponse:
        don = await console.don()
        return JSONResponse(
            {"now_s": console.now_s(), "f": don.f, "up": don.up_count, "nodes": as_json(don.nodes)}
        )

    @app.get("/ledgers", response_class=HTMLResponse)
    async def ledgers_page(request: Request) -> HTMLResponse:
        return render(request, "ledgers.html", nav="ledgers", ledgers=await console.ledgers())

    @app.get("/fragments/ledgers", response_class=HTMLResponse)
    async def ledgers_fragment(request: Request) -> HTMLResponse:
        return render(request, "_ledgers.html", ledgers=await console.ledgers())

    @app.get("/api/ledgers")
    async def ledgers_json() -> JSONResponse:
        return JSONResponse({"now_s": console.now_s(), "ledgers": as_json(await console.ledgers())})

    return app
