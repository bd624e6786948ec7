"""Shared pieces of the HTTP layer: the Service (store + settings + mutation helper), authentication
and role dependencies, the Idempotency-Key header, and OpenAPI problem+json response entries."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import insert, select

from crossdvp.payments.auth import Principal, Role, authenticate, hash_key
from crossdvp.payments.config import Settings
from crossdvp.payments.errors import Conflict, Forbidden, Unauthorized
from crossdvp.payments.feed import FeedNotifier
from crossdvp.payments.models import idempotency_keys
from crossdvp.payments.store import Store, WriteTx

__all__ = [
    "AUTH_PROBLEMS",
    "PROBLEM_MEDIA_TYPE",
    "Admin",
    "AdminOrOracle",
    "AdminOrParticipant",
    "AnyRole",
    "Limit",
    "ServiceDep",
    "Uint32",
    "request_identity",
    "IdempotencyKey",
    "Service",
    "current_principal",
    "get_service",
    "problems",
    "require",
]

logger = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"
_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer cdp_...`")

_STATUS_TEXT = {
    400: "Bad request",
    401: "Missing or unknown API key",
    403: "The credential's role may not call this operation",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the ledger's state, or an Idempotency-Key reused with another request",
    422: "A field is invalid (`field` names it; validation errors list every issue in `errors`)",
    503: "The database is busy or unreachable; retry",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem+json errors."""
    return {
        status: {
            "description": _STATUS_TEXT[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


class Service:
    """What the routes need: the store, settings, feed notifier, and the mutation helper."""

    # Known keys are remembered briefly so a busy client costs one database read per few seconds,
    # not one per request. Unknown keys are never cached (a new credential works at once).
    AUTH_CACHE_TTL_S = 5.0

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.notifier = FeedNotifier()
        self._auth_cache: dict[str, tuple[Principal, float]] = {}
        self._auth_lock = threading.Lock()

    def authenticate(self, api_key: str) -> Principal | None:
        """The principal for `api_key` (cached for AUTH_CACHE_TTL_S), or None if unknown/revoked."""
        now = time.monotonic()
        digest = hash_key(api_key)  # never keep plaintext keys around longer than the request
        with self._auth_lock:
            cached = self._auth_cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self.store.read() as conn:
            principal = authenticate(conn, api_key)
        if principal is not None:
            with self._auth_lock:
                if len(self._auth_cache) > 10_000:
                    self._auth_cache.clear()
                self._auth_cache[digest] = (principal, now + self.AUTH_CACHE_TTL_S)
        return principal

    @staticmethod
    def _request_hash(request_identity: dict[str, Any]) -> str:
        canonical = json.dumps(request_identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def check_idempotency(
        self, principal: Principal, key: str, request_identity: dict[str, Any]
    ) -> bool | None:
        """None if `key` is unused; True if it was used for this same request; False for another."""
        with self.store.read() as conn:
            stored = conn.execute(
                select(idempotency_keys.c.request_hash).where(
                    idempotency_keys.c.credential_id == principal.credential_id,
                    idempotency_keys.c.idem_key == key,
                )
            ).first()
        if stored is None:
            return None
        return bool(stored.request_hash == self._request_hash(request_identity))

    def remember_idempotency(
        self,
        tx: WriteTx,
        principal: Principal,
        key: str,
        request_identity: dict[str, Any],
        status_code: int,
        body: Any,
    ) -> None:
        """Record `key` for this request inside `tx`, unless it is recorded already (a report delivered
        again under the same key). Reports call this from their own transaction: they are idempotent by
        content, so the key only has to refuse later reuse with another body."""
        exists = tx.conn.execute(
            select(idempotency_keys.c.idem_key).where(
                idempotency_keys.c.credential_id == principal.credential_id,
                idempotency_keys.c.idem_key == key,
            )
        ).first()
        if exists is None:
            self._insert_idempotency(
                tx, principal, key, self._request_hash(request_identity), status_code, body
            )

    @staticmethod
    def _insert_idempotency(
        tx: WriteTx, principal: Principal, key: str, request_hash: str, status_code: int, body: Any
    ) -> None:
        tx.conn.execute(
            insert(idempotency_keys).values(
                credential_id=principal.credential_id,
                idem_key=key,
                request_hash=request_hash,
                status_code=status_code,
                response=json.dumps(body),
                created_at_ms=tx.now_ms,
            )
        )

    def mutate(
        self,
        principal: Principal,
        idempotency_key: str | None,
        request_identity: dict[str, Any],
        status_code: int,
        operation: Callable[[WriteTx], BaseModel],
    ) -> JSONResponse:
        """Run `operation` in one serialized transaction, with Idempotency-Key replay/conflict."""
        request_hash = self._request_hash(request_identity)
        with self.store.write() as tx:
            if idempotency_key is not None:
                stored = tx.conn.execute(
                    select(idempotency_keys).where(
                        idempotency_keys.c.credential_id == principal.credential_id,
                        idempotency_keys.c.idem_key == idempotency_key,
                    )
                ).first()
                if stored is not None:
                    if stored.request_hash != request_hash:
                        raise Conflict(
                            "idempotency-key-reused",
                            "this Idempotency-Key was already used with a different request; use a new key",
                            field="Idempotency-Key",
                        )
                    return JSONResponse(json.loads(stored.response), status_code=stored.status_code)
            body = operation(tx).model_dump(mode="json")
            if idempotency_key is not None:
                self._insert_idempotency(tx, principal, idempotency_key, request_hash, status_code, body)
        self.notifier.bump()
        return JSONResponse(body, status_code=status_code)


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def current_principal(
    service: Annotated[Service, Depends(get_service)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """Rejects: no bearer key, or a key that is unknown or revoked (401 unauthorized)."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("unauthorized", "send `Authorization: Bearer <api key>`", field="Authorization")
    principal = service.authenticate(credentials.credentials)
    if principal is None:
        raise Unauthorized("unauthorized", "unknown or revoked API key", field="Authorization")
    return principal


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only `roles` (403 forbidden otherwise)."""

    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(
                "forbidden", f"the {principal.role.value} role may not do this (allowed: {allowed})"
            )
        return principal

    return check


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="same key + same request replays the first response; another request is a 409",
    ),
]


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not declare: a typo such as `?afer=5` must not be
    silently ignored (it would return the first page instead of the one asked for)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route.dependant)
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"}
                for name in unknown
            ]
        )


ServiceDep = Annotated[Service, Depends(get_service)]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
AdminOrParticipant = Annotated[Principal, Depends(require(Role.ADMIN, Role.PARTICIPANT))]
AdminOrOracle = Annotated[Principal, Depends(require(Role.ADMIN, Role.ORACLE))]
AnyRole = Annotated[Principal, Depends(require(Role.ADMIN, Role.PARTICIPANT, Role.ORACLE))]
Uint32 = Annotated[int, Path(ge=0, le=2**32 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]
AUTH_PROBLEMS = (401, 403, 422)


def request_identity(request: Request, body: Any = None) -> dict[str, Any]:
    """What an Idempotency-Key is bound to: method, path and the validated body."""
    return {"method": request.method, "path": request.url.path, "body": body}
