"""The node store: atomic polls, write-once decisions, the non-equivocation check, resumable state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crossdvp.oracle.errors import EquivocationRefused, TermsConflict
from crossdvp.oracle.ports import Observed
from crossdvp.oracle.store import NodeStore
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision
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
