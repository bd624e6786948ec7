"""`crossdvp payments bench`: holds placed and settled per second over HTTP, on SQLite and PostgreSQL.

For each backend it starts a real `crossdvp payments serve` process (through crossdvp.process), on a
fresh SQLite file or a scratch PostgreSQL database (created and dropped), onboards a payer and a
payee, then with a few concurrent clients: places N holds (one per settlement), and settles them
with signed reports of up to 100 items. It checks the balances and the journal afterwards, so a
figure is only printed for a run that left the ledger correct. A command that prints figures, not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from coincurve import PrivateKey
from eth_utils.crypto import keccak
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crossdvp.bench.profile import profiled
from crossdvp.payments.auth import generate_key
from crossdvp.payments.client import PaymentsClient
from crossdvp.payments.journal import verify_journal
from crossdvp.payments.store import make_engine
from crossdvp.process import free_port, start_process
from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)
from crossdvp.settlement.terms import Decision

__all__ = ["BenchResult", "run_bench"]

_BATCH = 100
# Fixed, publicly known keys: the bench ledger trusts this throwaway DON and nothing else.
_KEYS = tuple(keccak(f"crossdvp-bench-signer-{i}".encode()) for i in range(4))
_WORKFLOW = WorkflowIdentity(
    workflow_cid=bytes(32),
    workflow_name="crossdvp-bench",
    workflow_owner="0x" + "00" * 20,
    report_id=b"\x00\x01",
)


def _address(key: bytes) -> str:
    return "0x" + keccak(PrivateKey(key).public_key.format(compressed=False)[1:])[-20:].hex()


@dataclass(frozen=True, slots=True)
class BenchResult:
    backend: str
    holds: int
    clients: int
    place_s: float
    settle_s: float
    batch_place_s: float

    @property
    def placed_per_s(self) -> float:
        return self.holds / self.place_s

    @property
    def settled_per_s(self) -> float:
        return self.holds / self.settle_s

    @property
    def batch_placed_per_s(self) -> float:
        return self.holds / self.batch_place_s

    @property
    def batched_end_to_end_per_s(self) -> float:
        """Holds placed through the batch endpoint and settled, per second of both."""
        return self.holds / (self.batch_place_s + self.settle_s)

    @property
    def end_to_end_per_s(self) -> float:
        return self.holds / (self.place_s + self.settle_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "placed_per_s": round(self.placed_per_s, 1),
            "settled_per_s": round(self.settled_per_s, 1),
            "end_to_end_per_s": round(self.end_to_end_per_s, 1),
            "batch_placed_per_s": round(self.batch_placed_per_s, 1),
            "batched_end_to_end_per_s": round(self.batched_end_to_end_per_s, 1),
        }

    def describe(self) -> str:
        return (
            f"{self.backend:<10} {self.holds} holds, {self.clients} clients: placed via /v1/holds/batch "
            f"({_BATCH} per call) {self.batch_placed_per_s:,.0f} holds/s, settled {self.settled_per_s:,.0f} "
            f"holds/s (reports of {_BATCH}), place+settle {self.batched_end_to_end_per_s:,.0f} holds/s; "
            f"one hold per call: placed {self.placed_per_s:,.0f} holds/s, "
            f"place+settle {self.end_to_end_per_s:,.0f} holds/s"
        )


@contextmanager
def _postgres_scratch(server_url: str) -> Iterator[str]:
    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"crossdvp_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ready(base_url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(f"{base_url}/v1/info", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def _run_one(
    backend: str,
    database_url: str,
    *,
    holds: int,
    clients: int,
    log_dir: Path,
    profile_dir: Path | None = None,
) -> BenchResult:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    admin_key = generate_key()
    proc = start_process(
        f"payments-bench-{backend}",
        [
            *(sys.executable, "-m", "crossdvp.payments.cli", "serve"),
            *("--database-url", database_url, "--port", str(port), "--log-level", "WARNING"),
        ],
        log_path=log_dir / f"payments-{backend}.log",
        ready=_ready(base_url),
        env={"CROSSDVP_PAYMENTS_ADMIN_KEY": admin_key},
        timeout_s=120,
    )
    try:
        don = DonConfig(don_id=7, config_version=1, f=1, signers=tuple(_address(k) for k in _KEYS))
        with PaymentsClient(base_url, admin_key) as admin:
            admin.create_participant("payer", "Payer")
            admin.create_participant("payee", "Payee")
            admin.open_account("payer-usd", "payer", "USD")
            admin.open_account("payee-usd", "payee", "USD")
            admin.cash_in("payer-usd", holds * 200)
            admin.put_don_config(don)
            payer_key = admin.create_credential("participant", "payer")["api_key"]
            oracle_key = admin.create_credential("oracle")["api_key"]
            deadline_s = int(admin.info()["time_s"]) + 3600
        terms_hash = keccak(b"bench-terms")
        ids = [keccak(f"bench-{i}".encode()) for i in range(holds)]
        chunks = [ids[i::clients] for i in range(clients)]

        def place(chunk: Sequence[bytes]) -> None:
            with PaymentsClient(base_url, payer_key, timeout_s=60) as payer:
                for sid in chunk:
                    payer.place_hold(
                        settlement_id=sid,
                        leg_index=0,
                        terms_hash=terms_hash,
                        payer_account="payer-usd",
                        payee_account="payee-usd",
                        currency="USD",
                        amount_minor=100,
                        deadline_s=deadline_s,
                    )

        context = report_context(don)
        reports = []
        for start in range(0, holds, _BATCH):
            items = [ReportItem(sid, terms_hash, Decision.SETTLE) for sid in ids[start : start + _BATCH]]
            raw = build_report(items, timestamp_s=deadline_s - 3600, don=don, workflow=_WORKFLOW)
            reports.append((raw, [sign_report(raw, context, k) for k in _KEYS[:2]]))

        def settle(batch: Sequence[tuple[bytes, list[bytes]]]) -> None:
            with PaymentsClient(base_url, oracle_key, timeout_s=60) as oracle:
                for raw, signatures in batch:
                    oracle.post_report(raw, context, signatures)

        batch_ids = [keccak(f"bench-batch-{i}".encode()) for i in range(holds)]
        batches = [batch_ids[i : i + _BATCH] for i in range(0, holds, _BATCH)]

        def place_batches(mine: Sequence[Sequence[bytes]]) -> None:
            with PaymentsClient(base_url, payer_key, timeout_s=60) as payer:
                for batch in mine:
                    results = payer.place_holds(
                        [
                            {
                                "settlement_id": sid,
                                "leg_index": 0,
                                "terms_hash": terms_hash,
                                "payer_account": "payer-usd",
                                "payee_account": "payee-usd",
                                "currency": "USD",
                                "amount_minor": 100,
                                "deadline_s": deadline_s,
                            }
                            for sid in batch
                        ]
                    )
                    if any(r["status"] != 201 for r in results):
                        raise RuntimeError(f"bench on {backend}: a batched hold was refused: {results}")

        profile = (
            profiled(proc.pid, profile_dir / f"payments-{backend}.txt")
            if profile_dir is not None
            else nullcontext()
        )
        with profile, ThreadPoolExecutor(clients) as pool:
            began = time.perf_counter()
            list(pool.map(place, chunks))
            place_s = time.perf_counter() - began
            began = time.perf_counter()
            list(pool.map(settle, [reports[i::clients] for i in range(clients)]))
            settle_s = time.perf_counter() - began
            began = time.perf_counter()
            list(pool.map(place_batches, [batches[i::clients] for i in range(clients)]))
            batch_place_s = time.perf_counter() - began
        with PaymentsClient(base_url, admin_key) as admin:
            payee = admin.account("payee-usd")
            if payee["available_minor"] != holds * 100:
                raise RuntimeError(
                    f"bench on {backend}: payee has {payee['available_minor']}, expected {holds * 100}"
                )
    finally:
        proc.stop()
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            check = verify_journal(conn)
    finally:
        engine.dispose()
    if not check.ok:
        raise RuntimeError(f"bench on {backend}: journal broken: {check.first_break}")
    return BenchResult(
        backend=backend,
        holds=holds,
        clients=clients,
        place_s=place_s,
        settle_s=settle_s,
        batch_place_s=batch_place_s,
    )


def run_bench(
    *, holds: int, clients: int, postgres_url: str | None, profile_dir: Path | None = None
) -> list[BenchResult]:
    """Run on SQLite, then on PostgreSQL (a scratch database on `postgres_url`) unless it is None.

    With `profile_dir`, each server is sampled with py-spy while it is under load
    (`payments-<backend>.txt` there; see crossdvp.bench.profile)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="crossdvp-bench-") as tmp:
        tmp_path = Path(tmp)
        sqlite_url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
        results.append(
            _run_one(
                "sqlite", sqlite_url, holds=holds, clients=clients, log_dir=tmp_path, profile_dir=profile_dir
            )
        )
        if postgres_url is not None:
            with _postgres_scratch(postgres_url) as url:
                results.append(
                    _run_one(
                        "postgresql",
                        url,
                        holds=holds,
                        clients=clients,
                        log_dir=tmp_path,
                        profile_dir=profile_dir,
                    )
                )
    return results
