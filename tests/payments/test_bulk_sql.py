"""`insert_rows` and `update_rows`: one statement for a whole batch, rows kept in order, NULLs and
defaults handled, on SQLite (executemany) and PostgreSQL (unnest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, Column, Engine, Integer, MetaData, String, Table, event, select

from crossdvp.payments.store import insert_rows, make_engine, one_of, update_rows

_metadata = MetaData()
_items = Table(
    "bulk_items",
    _metadata,
    Column("item_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("note", String(20), nullable=True),
    Column("flag", Boolean, nullable=False, default=False),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=1)
    _metadata.create_all(engine)
    try:
        yield engine
    finally:
        _metadata.drop_all(engine)
        engine.dispose()


def _executions(engine: Engine) -> list[bool]:
    """Records, per statement sent to the driver from now on, whether it was an executemany."""
    seen: list[bool] = []

    def record(*args: Any) -> None:
        seen.append(bool(args[-1]))

    event.listen(engine, "before_cursor_execute", record)
    return seen


def test_insert_keeps_order_values_and_nulls(engine: Engine) -> None:
    big = 2**62 + 5  # beyond int32: the array type must not narrow it
    rows = [
        {"name": f"n{i}", "amount_minor": big - i, "note": None if i % 2 else f"t{i}", "flag": i == 3}
        for i in range(250)
    ]
    with engine.begin() as conn:
        seen = _executions(engine)
        insert_rows(conn, _items, rows)
    if engine.dialect.name == "postgresql":
        assert seen == [False], "a batch is one statement (unnest), not an executemany"
    with engine.connect() as conn:
        stored = conn.execute(select(_items).order_by(_items.c.item_id)).all()
    # Autoincrement ids follow the list: the journal orders postings by id.
    assert [(r.name, r.amount_minor, r.note, r.flag) for r in stored] == [
        (r["name"], r["amount_minor"], r["note"], r["flag"]) for r in rows
    ]


def test_insert_leaving_out_a_defaulted_column_still_applies_the_default(engine: Engine) -> None:
    rows = [{"name": "a", "amount_minor": 1, "note": None}, {"name": "b", "amount_minor": 2, "note": None}]
    with engine.begin() as conn:
        insert_rows(conn, _items, rows)
    with engine.connect() as conn:
        assert conn.execute(select(_items.c.flag)).scalars().all() == [False, False]


def test_insert_of_nothing_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        seen = _executions(engine)
        insert_rows(conn, _items, [])
    assert seen == []


def test_update_sets_each_row_its_values_and_the_fixed_ones(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, _items, [{"name": f"n{i}", "amount_minor": i, "note": None} for i in range(5)])
    with engine.begin() as conn:
        seen = _executions(engine)
        update_rows(
            conn,
            _items,
            "name",
            [{"name": "n1", "amount_minor": 100}, {"name": "n3", "amount_minor": 300}],
            note="done",
            flag=True,
        )
    if engine.dialect.name == "postgresql":
        assert seen == [False]
    with engine.connect() as conn:
        stored = {r.name: (r.amount_minor, r.note, r.flag) for r in conn.execute(select(_items))}
    assert stored == {
        "n0": (0, None, False),
        "n1": (100, "done", True),
        "n2": (2, None, False),
        "n3": (300, "done", True),
        "n4": (4, None, False),
    }


def test_update_with_a_null_fixed_value(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, _items, [{"name": f"n{i}", "amount_minor": i, "note": "x"} for i in range(3)])
        changes = [{"name": "n0", "amount_minor": 7}, {"name": "n2", "amount_minor": 9}]
        update_rows(conn, _items, "name", changes, note=None)
    with engine.connect() as conn:
        stored = {r.name: (r.amount_minor, r.note) for r in conn.execute(select(_items))}
    assert stored == {"n0": (7, None), "n1": (1, "x"), "n2": (9, None)}


def test_one_of_selects_what_in_selects_with_one_statement_text_for_any_count(engine: Engine) -> None:
    big = 2**62 + 5
    rows = [{"name": f"n{i}", "amount_minor": big - i, "note": None, "flag": False} for i in range(120)]
    with engine.begin() as conn:
        insert_rows(conn, _items, rows)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.connect() as conn:
        for values in (["n3", "n7", "missing"], [f"n{i}" for i in range(0, 120, 2)], []):
            mine = conn.scalars(select(_items.c.name).where(one_of(conn, _items.c.name, values)))
            theirs = conn.scalars(select(_items.c.name).where(_items.c.name.in_(values)))
            assert sorted(mine) == sorted(theirs) == sorted(v for v in values if v != "missing")
        amounts = [big - 1, big - 119, 5]
        found = conn.scalars(
            select(_items.c.amount_minor).where(one_of(conn, _items.c.amount_minor, amounts))
        )
        assert sorted(found) == [big - 119, big - 1]
    if engine.dialect.name == "postgresql":
        by_values = statements[0:6:2]
        assert len(set(by_values)) == 1 and "unnest" in by_values[0], by_values
