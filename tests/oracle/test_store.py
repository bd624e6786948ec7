"""The node store: atomic polls, write-once decisions, the non-equivocation check, resumable state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from crossdvp.oracle.errors import EquivocationRefused, TermsConflict
from crossdvp.oracle.ports import Observed, SignedReport
from crossdvp.oracle.store import NodeStore
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision, Terms
from tests.oracle.harness import CASH, dvp_terms


def _lock(terms_label: str, amount: int = 2**95) -> LockObservation:
    terms = dvp_terms(terms_label, deadline_s=2_000)
    return LockObservation(
        network=CASH,
        leg_index=1,
        settlement_id=terms.settlement_id,
        terms_hash=terms.terms_hash,
        asset="USD",
        amount_minor=amount,
        payer="acct-buyer",
        payee="acct-seller",
        deadline_s=terms.deadline_s,
        locked_at_s=1_500,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    opened = NodeStore(f"sqlite:///{tmp_path / 'store' / 'node.sqlite'}")
    try:
        yield opened
    finally:
        opened.close()


def test_poll_is_stored_with_its_cursor_and_survives_reopening(store: NodeStore, tmp_path: Path) -> None:
    lock = _lock("a")
    assert store.record_poll(Observed(CASH, (lock,), final_time_s=1_600, cursor="7"), now_ms=1) == 1
    assert (
        store.record_poll(Observed(CASH, (lock,), final_time_s=1_500, cursor="8"), now_ms=2) == 0
    )  # idempotent
    store.close()
    reopened = NodeStore(f"sqlite:///{tmp_path / 'store' / 'node.sqlite'}")
    try:
        state = reopened.network_state(CASH)
        assert state is not None and state.cursor == "8"
        assert state.final_time_s == 1_600  # never moves back
        assert reopened.locks_for(lock.settlement_id) == (lock,)  # amounts beyond int64 round-trip exactly
    finally:
        reopened.close()


def test_decisions_are_written_once(store: NodeStore) -> None:
    terms = dvp_terms("once", deadline_s=2_000)
    store.add_terms(terms, 0)
    first, new = store.record_decision(terms, Decision.SETTLE, 1_500, "all legs locked", 1)
    assert new and first.decision is Decision.SETTLE
    again, new = store.record_decision(terms, Decision.ABORT, 2_000, "deadline passed", 2)
    assert not new and again == first
    with pytest.raises(ValueError, match="PENDING"):
        store.record_decision(terms, Decision.PENDING, 0, "", 3)


def test_signing_is_refused_unless_it_matches_the_stored_decision(store: NodeStore) -> None:
    terms = dvp_terms("sign", deadline_s=2_000)
    other = dvp_terms("undecided", deadline_s=2_000)
    store.add_terms(terms, 0)
    store.record_decision(terms, Decision.SETTLE, 1_500, "", 1)
    good = ReportItem(terms.settlement_id, terms.terms_hash, Decision.SETTLE)
    store.record_signature(b"\x01" * 32, [good], "leader", 2)
    with pytest.raises(EquivocationRefused, match="refusing to sign ABORT"):
        store.record_signature(
            b"\x02" * 32, [ReportItem(terms.settlement_id, terms.terms_hash, Decision.ABORT)], "f", 3
        )
    with pytest.raises(EquivocationRefused, match="refusing to sign"):
        store.record_signature(
            b"\x03" * 32, [ReportItem(terms.settlement_id, b"\x09" * 32, Decision.SETTLE)], "f", 3
        )
    with pytest.raises(EquivocationRefused, match="not decided"):
        store.record_signature(
            b"\x04" * 32, [good, ReportItem(other.settlement_id, other.terms_hash, Decision.SETTLE)], "f", 3
        )
    assert store.signed_decisions(terms.settlement_id) == {Decision.SETTLE}


def test_terms_conflict(store: NodeStore) -> None:
    terms = dvp_terms("conflict", deadline_s=2_000)
    assert store.add_terms(terms, 0)
    assert not store.add_terms(terms, 1)
    with pytest.raises(TermsConflict, match="new settlement id"):
        store.add_terms(dvp_terms("conflict", deadline_s=2_001), 2)
    assert [t.settlement_id for t in store.undecided_terms()] == [terms.settlement_id]


def test_a_poll_stores_each_lock_fact_once_and_a_changed_field_is_a_new_fact(store: NodeStore) -> None:
    a, b = _lock("bulk-a"), _lock("bulk-b")
    moved = dataclasses.replace(a, locked_at_s=1_501)  # same lock, another block: a different fact
    assert store.record_poll(Observed(CASH, (a, b, a), final_time_s=1_600, cursor="1"), now_ms=1) == 2
    assert store.record_poll(Observed(CASH, (b, moved, a), final_time_s=1_600, cursor="2"), now_ms=2) == 1
    assert store.locks_for_many([a.settlement_id, b.settlement_id]) == {
        a.settlement_id: (a, moved),
        b.settlement_id: (b,),
    }


def test_a_batch_of_decisions_keeps_the_first_one_per_settlement(store: NodeStore) -> None:
    old, fresh = dvp_terms("batch-old", deadline_s=2_000), dvp_terms("batch-new", deadline_s=2_000)
    stored, _ = store.record_decision(old, Decision.ABORT, 1_400, "deadline passed", 1)
    results = store.record_decisions(
        [
            (old, Decision.SETTLE, 1_500, "all legs locked"),
            (fresh, Decision.SETTLE, 1_500, "all legs locked"),
            (fresh, Decision.ABORT, 1_600, "deadline passed"),
        ],
        now_ms=2,
    )
    assert [(d.decision, new) for d, new in results] == [
        (Decision.ABORT, False),
        (Decision.SETTLE, True),
        (Decision.SETTLE, False),
    ]
    assert results[0][0] == stored
    assert store.decisions_for([old.settlement_id, fresh.settlement_id]) == {
        old.settlement_id: stored,
        fresh.settlement_id: results[1][0],
    }


def test_terms_read_in_bulk_match_what_was_registered(store: NodeStore) -> None:
    many = [dvp_terms(f"bulk-{i}", deadline_s=2_000 + i) for i in range(3)]
    for i, terms in enumerate(many):
        store.add_terms(terms, now_ms=100 + i)
    ids = [t.settlement_id for t in many] + [b"\x07" * 32]  # one never registered
    assert store.terms_many(ids) == {t.settlement_id: t for t in many}
    assert store.terms_registered_ms_many(ids) == {t.settlement_id: 100 + i for i, t in enumerate(many)}
    assert store.get_terms(b"\x07" * 32) is None


def test_reports_for_many_finds_each_report_once_oldest_first(store: NodeStore) -> None:
    x, y, z = (dvp_terms(f"rep-{c}", deadline_s=2_000) for c in "xyz")

    def report(eid: int, *terms: Terms) -> SignedReport:
        items = tuple(ReportItem(t.settlement_id, t.terms_hash, Decision.SETTLE) for t in terms)
        return SignedReport(bytes([eid]) * 200, b"\x00" * 96, (b"\x01" * 65,), bytes([eid]) * 32, items)

    first, second = report(1, x, y), report(2, y)
    assert store.add_report(second, ["0xb"], [CASH], now_ms=20)
    assert store.add_report(first, ["0xa"], [CASH], now_ms=10)
    found = store.reports_for_many([x.settlement_id, y.settlement_id, z.settlement_id], limit=8)
    assert [r.report.workflow_execution_id for r in found] == [b"\x01" * 32, b"\x02" * 32]
    assert found[0].report.items == tuple(sorted(first.items, key=lambda i: i.settlement_id))
    assert len(store.reports_for_many([y.settlement_id], limit=1)) == 1
    assert store.reports_for_many([z.settlement_id], limit=8) == []


def test_take_touched_reports_new_terms_and_new_locks_once(store: NodeStore) -> None:
    """What an incremental decision pass evaluates: settlements whose terms or locks were stored."""
    assert store.take_touched() is None  # a new (or reopened) store: every settlement
    assert store.take_touched() == set()
    terms = dvp_terms("touch", deadline_s=2_000)
    assert store.add_terms(terms, 0)
    assert not store.add_terms(terms, 1)  # the same terms again change nothing
    assert store.take_touched() == {terms.settlement_id}
    assert store.take_touched() == set()
    store.record_poll(Observed(CASH, (), final_time_s=1_400, cursor="0"), now_ms=1)
    assert store.take_touched() is None  # a network's first poll: settlements waiting for its view
    lock = _lock("touch")
    assert lock.settlement_id == terms.settlement_id
    store.record_poll(Observed(CASH, (lock,), final_time_s=1_600, cursor="1"), now_ms=2)
    assert store.take_touched() == {terms.settlement_id}
    store.record_poll(Observed(CASH, (lock,), final_time_s=1_700, cursor="2"), now_ms=3)  # seen before
    assert store.take_touched() == set()
    others = [dvp_terms("touch-b", deadline_s=2_000), dvp_terms("touch-c", deadline_s=2_000)]
    store.add_terms_many([terms, *others], 4)
    assert store.take_touched() == {t.settlement_id for t in others}


def test_undecided_terms_can_be_limited_to_ids_and_reached_deadlines(store: NodeStore) -> None:
    early = dvp_terms("u-early", deadline_s=1_000)
    late = dvp_terms("u-late", deadline_s=3_000)
    other = dvp_terms("u-other", deadline_s=3_000)
    for terms in (early, late, other):
        store.add_terms(terms, 0)

    def ids(found: list[Terms]) -> set[bytes]:
        return {t.settlement_id for t in found}

    assert ids(store.undecided_terms()) == {early.settlement_id, late.settlement_id, other.settlement_id}
    assert ids(store.undecided_terms(only=[late.settlement_id])) == {late.settlement_id}
    assert ids(store.undecided_terms(only=[late.settlement_id], deadline_by_s=1_000)) == {
        early.settlement_id,
        late.settlement_id,
    }
    assert store.undecided_terms(only=[], deadline_by_s=999) == []
    store.record_decision(early, Decision.ABORT, 1_000, "deadline passed", 5)
    assert store.undecided_terms(only=[early.settlement_id], deadline_by_s=5_000) == [
        t for t in store.undecided_terms() if t.deadline_s <= 5_000
    ]
    assert early.settlement_id not in ids(store.undecided_terms(only=[early.settlement_id]))


def test_a_poll_that_changes_nothing_writes_nothing(store: NodeStore) -> None:
    lock = _lock("quiet")
    store.record_poll(Observed(CASH, (lock,), final_time_s=1_600, cursor="7"), now_ms=1)
    writes: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement)

    engines = {store.engine, store._relaxed}  # polls are written through the relaxed one
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        # The same lock again, the same cursor, an older final time: nothing to store.
        assert store.record_poll(Observed(CASH, (lock,), final_time_s=1_500, cursor="7"), now_ms=2) == 0
        assert writes == []
        store.record_poll(Observed(CASH, (), final_time_s=1_601, cursor="7"), now_ms=3)  # time advanced
        assert len(writes) == 1
        store.record_poll(Observed(CASH, (), final_time_s=1_601, cursor="8"), now_ms=4)  # cursor moved
        assert len(writes) == 2
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    state = store.network_state(CASH)
    assert state is not None and (state.cursor, state.final_time_s, state.last_poll_ms) == ("8", 1_601, 4)


def test_bookkeeping_commits_without_its_own_fsync_and_decisions_with_one(
    store: NodeStore, tmp_path: Path
) -> None:
    """A SQLite file store has two connections: synchronous=FULL for terms, decisions, signatures and
    reports; NORMAL for what can be found again (polls, delivery state, outbox acknowledgements). What
    the relaxed one commits is visible to the other at once, and survives a reopen."""
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with store._relaxed.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    seen: dict[str, list[str]] = {"durable": [], "relaxed": []}
    for name, engine in (("durable", store.engine), ("relaxed", store._relaxed)):

        def record(_c: object, _cur: object, statement: str, *_a: object, name: str = name) -> None:
            words = statement.split()
            if words and words[0].upper() in ("INSERT", "UPDATE"):
                seen[name].append(words[2] if words[0].upper() == "INSERT" else words[1])  # the table

        event.listen(engine, "before_cursor_execute", record)
    terms = dvp_terms("fsync", deadline_s=2_000)
    store.add_terms(terms, 1)
    store.record_poll(Observed(CASH, (_lock("fsync"),), final_time_s=1_600, cursor="3"), now_ms=2)
    store.record_decision(terms, Decision.SETTLE, 1_500, "locked", 3)
    assert {"terms", "decisions"} <= set(seen["durable"])
    assert set(seen["relaxed"]) == {"locks", "network_state"}
    assert store.locks_for(_lock("fsync").settlement_id) == (_lock("fsync"),)  # read through the other
    store.close()
    reopened = NodeStore(f"sqlite:///{tmp_path / 'store' / 'node.sqlite'}")
    try:
        state = reopened.network_state(CASH)
        assert state is not None and state.cursor == "3"
    finally:
        reopened.close()


def test_an_in_memory_store_has_one_connection_for_everything() -> None:
    memory = NodeStore("sqlite://")
    try:
        assert memory._relaxed is memory.engine
    finally:
        memory.close()


def test_due_outbox_caps_each_member_and_kind_and_returns_the_oldest_first(
    store: NodeStore, tmp_path: Path
) -> None:
    for i in range(5):
        store.enqueue([1, 2], "terms", {"n": i}, 100)
        store.enqueue([1], "report", {"n": i}, 100 if i % 2 == 0 else 900)
    due = store.due_outbox(500, per_kind={"terms": 3}, default_limit=2)
    assert [m.id for m in due] == sorted(m.id for m in due)
    assert [(m.member, m.kind, m.body["n"]) for m in due if m.member == 2] == [
        (2, "terms", n) for n in range(3)
    ]
    assert [m.body["n"] for m in due if m.member == 1 and m.kind == "terms"] == [0, 1, 2]
    # Reports 1 and 3 are not due before 900; the cap of 2 takes the first two due ones.
    assert [m.body["n"] for m in due if m.kind == "report"] == [0, 2]
    store.ack_outbox(m.id for m in due)
    rest = store.due_outbox(1_000, default_limit=100)
    assert sorted((m.member, m.kind, m.body["n"]) for m in rest) == sorted(
        [(1, "terms", 3), (1, "terms", 4), (2, "terms", 3), (2, "terms", 4)]
        + [(1, "report", n) for n in (1, 3, 4)]
    )


def test_a_store_created_before_the_outbox_index_gets_it_when_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    opened = NodeStore(url)
    with opened.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_outbox_queue")
    opened.close()
    reopened = NodeStore(url)
    try:
        with reopened.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE member = 1 AND kind = 'terms' ORDER BY id"
            ).all()
        assert any("ix_outbox_queue" in str(row) for row in plan), plan
    finally:
        reopened.close()
