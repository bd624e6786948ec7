"""Database access: engines for SQLite and PostgreSQL, Alembic migrations, and the two transaction kinds.

Every state change is one database transaction, and every write transaction is *serialized*:
SQLite takes the database write lock up front (`BEGIN IMMEDIATE`, WAL, busy_timeout); PostgreSQL
locks the single `ledger_head` row (`SELECT ... FOR UPDATE`) as its first statement. The journal is
a hash chain, so appends need a single predecessor anyway; serializing on the head row also makes
balance checks race-free (READ COMMITTED re-reads after the lock is granted), gives event cursors
without gaps, and lets the event feed compute a time watermark that no later write can precede
(see `WriteTx.now_ms`). Per-account row locks would add nothing under this global order, and a
single lock taken first cannot deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from crossdvp.clock import Clock
from crossdvp.payments.models import ledger_head

__all__ = [
    "GENESIS_HASH",
    "Store",
    "WriteTx",
    "ensure_head",
    "insert_rows",
    "make_engine",
    "migrate",
    "one_of",
    "update_rows",
]

GENESIS_HASH = "0x" + "00" * 32
_SQLITE_BUSY_TIMEOUT_MS = 60_000


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (all with the same keys) in one statement.

    On PostgreSQL a batch is one `INSERT ... SELECT FROM unnest(<one array per column>)`, a statement
    whose text does not depend on the row count (compiled once, one round trip, one execution). An
    executemany, which psycopg pipelines, still executes one INSERT per row while the ledger head is
    locked; a multi-row VALUES statement is compiled afresh for each row count. Rows keep their order
    (the unnest is ordered by ordinality, so an autoincrement id follows the list). Elsewhere (SQLite,
    in process) it is an executemany.
    """
    if not rows:
        return
    keys = tuple(rows[0])
    if conn.dialect.name == "postgresql" and len(rows) > 1 and _covers_defaults(table, keys):
        conn.execute(_unnest_insert(table, keys), {k: [row[k] for row in rows] for k in keys})
    else:
        conn.execute(insert(table), list(rows))


@functools.cache
def _covers_defaults(table: Table, keys: tuple[str, ...]) -> bool:
    """True if no column left out of `keys` needs a Python-side default (INSERT ... SELECT does not apply
    one)."""
    return all(c.name in keys or c.default is None for c in table.columns)


def _unnest(table: Table, keys: tuple[str, ...], prefix: str, *, ordinality: bool) -> TableValuedAlias:
    """`unnest(CAST(:<prefix><key> AS <type>[]), ...) AS u(<keys>[, _ord])`: one array parameter per
    column, typed as the column so that PostgreSQL never has to guess (an all-NULL list, a bigint)."""
    arrays = [cast(bindparam(f"{prefix}{k}"), postgresql.ARRAY(table.c[k].type)) for k in keys]
    rows = func.unnest(*arrays).table_valued(*keys, with_ordinality="_ord" if ordinality else None)
    return rows.render_derived(name="u")


@functools.cache
def _unnest_insert(table: Table, keys: tuple[str, ...]) -> Insert:
    rows = _unnest(table, keys, "", ordinality=True)
    return insert(table).from_select(list(keys), select(*(rows.c[k] for k in keys)).order_by(rows.c._ord))


def one_of(conn: Connection, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (values)` for a batch of keys, as PostgreSQL can look up quickly whatever it plans.

    On PostgreSQL `column IN (SELECT unnest(CAST(:values AS <column type>[])))`: a semi-join with the
    values, which the planner runs as index probes or as one hash of the values, and one array
    parameter, so the statement text does not depend on how many values there are. An IN list (or
    `= ANY(:array)`) is instead tested against every row with a linear search of the values whenever
    the planner picks a sequential scan, as it does while a table is small or its statistics are
    stale: 100 hold ids against 6,000 holds took 15 ms. Elsewhere (SQLite) an IN list."""
    if conn.dialect.name != "postgresql":
        return column.in_(values)
    array: BindParameter[Any] = bindparam(f"{column.key}_any", value=list(values), unique=True)
    return column.in_(select(func.unnest(cast(array, postgresql.ARRAY(column.type)))))


def update_rows(
    conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]], **fixed: Any
) -> None:
    """UPDATE one row per entry of `rows` (matched on column `key`; each row's other keys are its new
    values) and set `fixed` on all of them: one `UPDATE ... FROM unnest(...)` on PostgreSQL, an
    executemany elsewhere."""
    if not rows:
        return
    keys = tuple(rows[0])
    changed = tuple(k for k in keys if k != key)
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        params = {f"u_{k}": [row[k] for row in rows] for k in keys}
        params.update({f"f_{k}": v for k, v in fixed.items()})
        conn.execute(_unnest_update(table, key, changed, tuple(fixed)), params)
        return
    conn.execute(
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"))
        .values({**{k: bindparam(f"b_{k}") for k in changed}, **fixed}),
        [{f"b_{k}": row[k] for k in keys} for row in rows],
    )


@functools.cache
def _unnest_update(table: Table, key: str, changed: tuple[str, ...], fixed: tuple[str, ...]) -> Update:
    rows = _unnest(table, (key, *changed), "u_", ordinality=False)
    values: dict[str, Any] = {k: rows.c[k] for k in changed}
    values.update({k: bindparam(f"f_{k}", type_=table.c[k].type) for k in fixed})
    return update(table).where(table.c[key] == rows.c[key]).values(values)


def make_engine(database_url: str, *, pool_size: int = 8) -> Engine:
    """An engine for `sqlite:///path` or `postgresql+psycopg://...`.

    SQLite connections run in WAL mode with a long busy timeout; every transaction starts with
    `BEGIN IMMEDIATE` (writers queue on the database lock instead of failing on upgrade) unless the
    connection carries the execution option `sqlite_begin="DEFERRED"` (reads).
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED and too late).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _binary_lists(dbapi_connection: Any, _record: Any) -> None:
        # The batch statements pass one list per column (`insert_rows`, `update_rows`). psycopg sends a
        # list of strings in text form by default, quoting each element in Python (a regular
        # expression per element) while the ledger is locked; in binary form no element is quoted.
        # Every such list is cast to its column's array type in the statement, so the element type
        # psycopg picks for the wire never reaches a column.
        dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)

    return engine


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("crossdvp.payments") / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied, then make sure the head row exists."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    with engine.begin() as conn:
        ensure_head(conn)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None if never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_head(conn: Connection) -> None:
    """Insert the ledger head row (genesis) if it is missing."""
    if conn.execute(select(ledger_head.c.id).where(ledger_head.c.id == 1)).first() is None:
        conn.execute(
            insert(ledger_head).values(
                id=1,
                last_entry_seq=0,
                last_entry_hash=GENESIS_HASH,
                last_event_cursor=0,
                last_time_ms=0,
                watermark_ms=0,
            )
        )


@dataclass
class WriteTx:
    """An open, serialized write transaction and the ledger head as this transaction moves it.

    `now_ms` is the ledger time of everything this transaction stamps: the clock, but never earlier
    than any time already stamped or handed out as a feed watermark, so ledger time never runs
    backwards even if the wall clock does.
    """

    conn: Connection
    now_ms: int
    last_entry_seq: int
    last_entry_hash: str
    last_event_cursor: int
    watermark_ms: int
    dirty: bool = field(default=False)

    @property
    def now_s(self) -> int:
        return self.now_ms // 1000


class Store:
    """The engine plus the two ways to use it: `write()` (serialized) and `read()` (snapshot)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """A serialized transaction; commits on normal exit, rolls back on any exception."""
        with self.engine.begin() as conn:
            # On SQLite BEGIN IMMEDIATE already holds the write lock; FOR UPDATE is a no-op there.
            head = conn.execute(select(ledger_head).where(ledger_head.c.id == 1).with_for_update()).one()
            now_ms = max(self.clock.now_ms(), head.last_time_ms, head.watermark_ms)
            tx = WriteTx(
                conn=conn,
                now_ms=now_ms,
                last_entry_seq=head.last_entry_seq,
                last_entry_hash=head.last_entry_hash,
                last_event_cursor=head.last_event_cursor,
                watermark_ms=head.watermark_ms,
            )
            yield tx
            if tx.dirty:
                conn.execute(
                    update(ledger_head)
                    .where(ledger_head.c.id == 1)
                    .values(
                        last_entry_seq=tx.last_entry_seq,
                        last_entry_hash=tx.last_entry_hash,
                        last_event_cursor=tx.last_event_cursor,
                        last_time_ms=tx.now_ms,
                        watermark_ms=tx.watermark_ms,
                    )
                )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (DEFERRED on SQLite, so readers never wait for the write lock)."""
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn
