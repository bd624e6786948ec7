"""The payment ledger's figures beside PostgreSQL's own ceiling, measured in the same run:

- `sqlite_holds_per_s` / `postgres_holds_per_s`: holds placed and settled per second over HTTP
  (crossdvp.payments.bench: a real `crossdvp payments serve`, a few concurrent clients), placed
  through `POST /v1/holds/batch` (100 per call, as a bank client with many holds and the DvP bench
  place them) and settled by signed reports of 100: holds / (placement time + settlement time). The
  ledger's balances and journal are checked before a figure is printed;
- `*_holds_single_call_per_s`: the same with one hold per `POST /v1/holds` call (HTTP and a
  serialized transaction per hold);
- `pgbench_tps`: `pgbench`'s TPC-B-like transactions per second on a scratch database of the same
  server (created and dropped here), with as many clients as the ledger bench used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from crossdvp.errors import ConfigError, CrossDvpError
from crossdvp.payments.bench import run_bench

__all__ = ["PaymentsFigures", "measure_payments", "pgbench_binary", "run_pgbench"]

_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


@dataclass(frozen=True, slots=True)
class PaymentsFigures:
    # Placed through the batch endpoint (100 per call) and settled by reports of 100.
    sqlite_holds_per_s: float
    postgres_holds_per_s: float | None
    # The same with one hold per call.
    sqlite_holds_single_call_per_s: float
    postgres_holds_single_call_per_s: float | None
    pgbench_tps: float | None
    details: tuple[dict[str, Any], ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sqlite_holds_per_s": round(self.sqlite_holds_per_s, 1),
            "postgres_holds_per_s": None
            if self.postgres_holds_per_s is None
            else round(self.postgres_holds_per_s, 1),
            "sqlite_holds_single_call_per_s": round(self.sqlite_holds_single_call_per_s, 1),
            "postgres_holds_single_call_per_s": None
            if self.postgres_holds_single_call_per_s is None
            else round(self.postgres_holds_single_call_per_s, 1),
            "pgbench_tps": None if self.pgbench_tps is None else round(self.pgbench_tps, 1),
            "details": list(self.details),
            "note": self.note,
        }


def pgbench_binary() -> str | None:
    """`pgbench` on PATH, else the newest under /usr/lib/postgresql/*/bin (Debian's layout)."""
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/pgbench"))
    return candidates[-1] if candidates else None


@contextmanager
def _scratch_database(server_url: str) -> Iterator[URL]:
    server = make_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"crossdvp_pgbench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_pgbench(server_url: str, *, clients: int, seconds: int) -> float:
    """TPS of `pgbench -c clients -T seconds` (scale 1, TPC-B-like) on a scratch database of the
    server at `server_url` (a SQLAlchemy URL), which is dropped afterwards.

    Raises ConfigError if pgbench is not installed; CrossDvpError if it fails or prints no TPS.
    """
    binary = pgbench_binary()
    if binary is None:
        raise ConfigError("pgbench not found (Debian: apt-get install postgresql-client)")
    with _scratch_database(server_url) as url:
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        target = [
            *("-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)),
            *("-U", url.username or "postgres"),
        ]
        db = str(url.database)
        init = subprocess.run(
            [binary, "-i", "-s", "1", "-q", *target, db], env=env, capture_output=True, text=True, timeout=120
        )
        if init.returncode != 0:
            raise CrossDvpError(f"pgbench -i failed: {init.stderr.strip()[-400:]}")
        threads = max(1, min(clients, os.cpu_count() or 1))
        run = subprocess.run(
            [binary, "-c", str(clients), "-j", str(threads), "-T", str(seconds), *target, db],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        match = _TPS.search(run.stdout)
        if run.returncode != 0 or match is None:
            raise CrossDvpError(f"pgbench failed: {(run.stderr or run.stdout).strip()[-400:]}")
        return float(match.group(1))


def measure_payments(
    *, holds: int, clients: int, postgres_url: str | None, pgbench_s: int, profile_dir: Path | None = None
) -> PaymentsFigures:
    """The ledger bench on SQLite (and PostgreSQL unless `postgres_url` is None), then pgbench on the
    same server. Raises what crossdvp.payments.bench and run_pgbench raise."""
    results = run_bench(holds=holds, clients=clients, postgres_url=postgres_url, profile_dir=profile_dir)
    by_backend = {r.backend: r for r in results}
    postgres = by_backend.get("postgresql")
    tps = None
    if postgres_url is not None:
        tps = run_pgbench(postgres_url, clients=clients, seconds=pgbench_s)
    return PaymentsFigures(
        sqlite_holds_per_s=by_backend["sqlite"].batched_end_to_end_per_s,
        postgres_holds_per_s=None if postgres is None else postgres.batched_end_to_end_per_s,
        sqlite_holds_single_call_per_s=by_backend["sqlite"].end_to_end_per_s,
        postgres_holds_single_call_per_s=None if postgres is None else postgres.end_to_end_per_s,
        pgbench_tps=tps,
        details=tuple(r.to_dict() for r in results),
        note=None if postgres_url is not None else "PostgreSQL skipped (--skip-postgres)",
    )
