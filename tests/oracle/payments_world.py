"""The real payments service for the oracle's payment-ledger adapter tests.

In-process: the service's own app (SQLite, a manual ledger clock) reached through httpx.ASGITransport,
so ledger times are exact. As a process: `crossdvp payments serve`, started through crossdvp.process.
Both are set up the same way: alice (alice-usd, funded) pays bob (bob-usd); an oracle key; the test
DON's signer set.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from crossdvp.clock import ManualClock
from crossdvp.payments.api import create_app
from crossdvp.payments.auth import generate_key, hash_key, new_credential_id
from crossdvp.payments.config import Settings
from crossdvp.payments.ledger import ensure_admin_credential
from crossdvp.process import ManagedProcess, port_open, start_process
from crossdvp.settlement.report import WorkflowIdentity
from tests.oracle.evm_world import DON, run

START_S = 1_800_000_000
NETWORK = "payments:oracle-tests"
BASE = "http://ledger.test"
TERMS_HASH = b"\x33" * 32
WORKFLOW = WorkflowIdentity(
    workflow_cid=b"\x11" * 32,
    workflow_name="crossdvp-settlement",
    workflow_owner="0x" + "ab" * 20,
    report_id=b"\x00\x01",
)


@dataclass
class Keys:
    admin: str
    oracle: str = ""
    alice: str = ""


async def call(client: httpx.AsyncClient, key: str, method: str, path: str, body: Any = None) -> Any:
    response = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code < 300, response.text
    return response.json()


async def setup_ledger(client: httpx.AsyncClient, keys: Keys) -> None:
    """alice (alice-usd, funded) pays bob (bob-usd); an oracle key; the DON's signer set."""
    for pid in ("alice", "bob"):
        await call(
            client, keys.admin, "POST", "/v1/participants", {"participant_id": pid, "name": pid.title()}
        )
        account = {"account_id": f"{pid}-usd", "participant_id": pid, "currency": "USD"}
        await call(client, keys.admin, "POST", "/v1/accounts", account)
    await call(
        client, keys.admin, "POST", "/v1/cash-in", {"account_id": "alice-usd", "amount_minor": 10_000_000}
    )
    alice = await call(
        client, keys.admin, "POST", "/v1/credentials", {"role": "participant", "participant_id": "alice"}
    )
    oracle = await call(client, keys.admin, "POST", "/v1/credentials", {"role": "oracle"})
    keys.alice, keys.oracle = alice["api_key"], oracle["api_key"]
    don = {"f": DON.f, "signers": list(DON.signers)}
    await call(client, keys.admin, "PUT", f"/v1/don-configs/{DON.don_id}/{DON.config_version}", don)


async def place_hold(
    client: httpx.AsyncClient,
    keys: Keys,
    settlement_id: bytes,
    amount_minor: int = 500,
    *,
    leg_index: int = 1,
    terms_hash: bytes = TERMS_HASH,
    deadline_s: int = START_S + 3_600,
) -> Any:
    """alice holds `amount_minor` USD for bob."""
    hold = {
        "settlement_id": "0x" + settlement_id.hex(),
        "leg_index": leg_index,
        "terms_hash": "0x" + terms_hash.hex(),
        "payer_account": "alice-usd",
        "payee_account": "bob-usd",
        "currency": "USD",
        "amount_minor": amount_minor,
        "deadline_s": deadline_s,
    }
    return await call(client, keys.alice, "POST", "/v1/holds", hold)


@dataclass
class InProcess:
    app: Any
    clock: ManualClock
    keys: Keys

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport(), base_url=BASE)


@contextmanager
def in_process_ledger(tmp_path: Path) -> Iterator[InProcess]:
    clock = ManualClock(start_ms=START_S * 1000)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}", ledger_id="oracle-tests", grace_s=60
    )
    app = create_app(settings, clock=clock)
    keys = Keys(admin=generate_key())
    store = app.state.service.store
    with store.write() as tx:
        ensure_admin_credential(tx, key_hash=hash_key(keys.admin), credential_id=new_credential_id())
    here = InProcess(app, clock, keys)

    async def setup() -> None:
        async with here.client() as client:
            await setup_ledger(client, keys)

    try:
        run(setup)
        yield here
    finally:
        store.engine.dispose()


def start_ledger(database: Path, port: int, admin_key: str, log_dir: Path) -> ManagedProcess:
    crossdvp = str(Path(sys.executable).with_name("crossdvp"))
    argv = [crossdvp, "payments", "serve", "--database-url", f"sqlite:///{database}", "--port", str(port)]
    argv += ["--ledger-id", "oracle-tests", "--log-level", "WARNING"]
    return start_process(
        "payments",
        argv,
        log_path=log_dir / f"payments-{port}.log",
        ready=lambda: port_open("127.0.0.1", port),
        env={"CROSSDVP_PAYMENTS_ADMIN_KEY": admin_key},
    )
