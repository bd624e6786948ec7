"""Fixtures for the payments conformance suite: an in-process ledger on each backend with a manual
clock, an admin key, and two participants (alice pays, bob is paid) with funded USD accounts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crossdvp.clock import ManualClock
from crossdvp.payments.api import create_app
from crossdvp.payments.auth import generate_key, hash_key, new_credential_id
from crossdvp.payments.config import Settings
from crossdvp.payments.ledger import ensure_admin_credential
from crossdvp.payments.store import Store

START_S = 1_800_000_000
GRACE_S = 60
FUNDED_MINOR = 1_000_000


@dataclass
class Ledger:
    """An in-process ledger: the app, its store and clock, and an HTTP client per role."""

    app: FastAPI
    http: TestClient
    store: Store
    clock: ManualClock
    admin_key: str
    alice_key: str = ""
    bob_key: str = ""
    oracle_key: str = ""

    def call(self, method: str, path: str, key: str | None, **kwargs: object):  # type: ignore[no-untyped-def]
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    def admin(self, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        response = self.call(method, path, self.admin_key, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def balance(self, account_id: str) -> tuple[int, int]:
        body = self.admin("GET", f"/v1/accounts/{account_id}")
        return body["available_minor"], body["held_minor"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=START_S * 1000)


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    """An empty ledger with an admin key."""
    app = create_app(
        Settings(database_url=database_url, ledger_id="test-ledger", grace_s=GRACE_S), clock=clock
    )
    store: Store = app.state.service.store
    admin_key = generate_key()
    with store.write() as tx:
        ensure_admin_credential(tx, key_hash=hash_key(admin_key), credential_id=new_credential_id())
    with TestClient(app, raise_server_exceptions=False) as http:
        yield Ledger(app=app, http=http, store=store, clock=clock, admin_key=admin_key)
    store.engine.dispose()


@pytest.fixture
def world(ledger: Ledger) -> Ledger:
    """alice (alice-usd funded with 1,000,000, alice-eur) and bob (bob-usd), plus an oracle key."""
    for pid in ("alice", "bob"):
        ledger.admin("POST", "/v1/participants", json={"participant_id": pid, "name": pid.title()})
    ledger.admin(
        "POST", "/v1/accounts", json={"account_id": "alice-usd", "participant_id": "alice", "currency": "USD"}
    )
    ledger.admin(
        "POST", "/v1/accounts", json={"account_id": "alice-eur", "participant_id": "alice", "currency": "EUR"}
    )
    ledger.admin(
        "POST", "/v1/accounts", json={"account_id": "bob-usd", "participant_id": "bob", "currency": "USD"}
    )
    ledger.admin("POST", "/v1/cash-in", json={"account_id": "alice-usd", "amount_minor": FUNDED_MINOR})
    ledger.alice_key = ledger.admin(
        "POST", "/v1/credentials", json={"role": "participant", "participant_id": "alice"}
    )["api_key"]
    ledger.bob_key = ledger.admin(
        "POST", "/v1/credentials", json={"role": "participant", "participant_id": "bob"}
    )["api_key"]
    ledger.oracle_key = ledger.admin("POST", "/v1/credentials", json={"role": "oracle"})["api_key"]
    return ledger
