"""The node's own store (SQLAlchemy 2 Core; SQLite by default): everything needed to resume after kill -9.

Invariants kept here, not by callers:
- The locks one poll found and that network's cursor + final time are written in ONE transaction, so
  a crash can neither skip an event nor claim a watermark whose locks were not stored.
- Every settlement whose inputs to the decision rule changed (new terms, a new lock) is remembered in
  memory after the write commits, for the node's next incremental decision pass (`take_touched`); a
  new store starts with "everything touched", so a restarted node's first pass is a full one.
- A decision is written once per settlement and never replaced (`record_decision` returns the stored
  one if there is one). Signing goes through `record_signature`, which refuses any item that differs
  from the stored decision: this is the node's non-equivocation, and it survives restarts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url

from crossdvp.oracle._tables import (
    LOCK_FACT_COLUMNS,
    decisions_table,
    deliveries_table,
    locks_table,
    metadata,
    networks_table,
    outbox_table,
    report_items_table,
    reports_table,
    signatures_table,
    terms_table,
)
from crossdvp.oracle.errors import EquivocationRefused, TermsConflict
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, Observed, SignedReport
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.report import ReportItem
from crossdvp.settlement.terms import Decision, Terms

__all__ = [
    "NetworkState",
    "NodeStore",
    "OutboxMessage",
    "StoredDecision",
    "StoredDelivery",
    "StoredReport",
    "hex32",
]


# Ids per `IN (...)` query: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500
# Parsed terms kept in memory: well above the settlements in flight at once.
_TERMS_CACHE_SIZE = 10_000


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


@dataclass(frozen=True, slots=True)
class NetworkState:
    network: str
    cursor: str | None
    final_time_s: int
    last_poll_ms: int


@dataclass(frozen=True, slots=True)
class StoredDecision:
    settlement_id: bytes
    decision: Decision
    decided_at_s: int
    terms_hash: bytes
    reason: str
    recorded_ms: int

    def item(self) -> ReportItem:
        return ReportItem(
            settlement_id=self.settlement_id, terms_hash=self.terms_hash, decision=self.decision
        )


@dataclass(frozen=True, slots=True)
class StoredReport:
    report: SignedReport
    signers: tuple[str, ...]
    received_ms: int


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    execution_id: bytes
    network: str
    state: DeliveryState
    reference: str | None
    detail: str
    attempts: int
    next_check_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    member: int
    kind: str
    body: dict[str, Any]
    attempts: int


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return on_connect


class NodeStore:
    """One node's persistent state. All methods are synchronous and short (SQLite, local disk)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            connect_args["check_same_thread"] = False
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        # Writes that only record what can be found again (a poll's cursor and locks, which a re-poll
        # reads again idempotently; delivery bookkeeping, which every attempt re-reads from the network
        # first; outbox acknowledgements, whose loss means a resend the peer answers "duplicate") go
        # through `_relaxed`: on a SQLite file, a connection that commits without its own fsync.
        # Everything else (terms, decisions, signatures, reports) commits with synchronous=FULL. That
        # is safe because the WAL is one file written in commit order: a FULL commit's fsync makes
        # every earlier commit durable too, so nothing durable can rest on a relaxed write that a power
        # loss took back. A process crash (kill -9) loses neither: the WAL is already in the OS.
        self._relaxed: Engine = self.engine
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas("FULL"))
            if parsed.database and parsed.database != ":memory:":
                self._relaxed = create_engine(url, connect_args=connect_args)
                event.listen(self._relaxed, "connect", _sqlite_pragmas("NORMAL"))
        metadata.create_all(self.engine)
        for index in outbox_table.indexes:  # added to stores created before it (create_all skips them)
            index.create(self.engine, checkfirst=True)
        self._terms_cache: dict[str, Terms] = {}  # settlement id -> parsed terms, insertion order
        # Settlements touched since the last take_touched(); None = all of them (see take_touched).
        self._touched: set[str] | None = None
        self._touched_lock = threading.Lock()
        # Each network's row as this store last read or wrote it. The node is the only writer of its
        # networks' rows, so a poll reads its cursor, and finds a quiet poll has nothing to write,
        # without a query (at sub-second blocks a node polls tens of times a second).
        self._network_rows: dict[str, NetworkState] = {}

    def close(self) -> None:
        self.engine.dispose()
        self._relaxed.dispose()

    # -- terms --------------------------------------------------------------------------------------

    def add_terms(self, terms: Terms, now_ms: int, *, share_with: Iterable[int] = ()) -> bool:
        """Store terms; True if new, False if the identical terms were already stored. New terms are
        queued for the members `share_with` in the same transaction (one disk sync per registration).

        Raises TermsConflict when the settlement id already holds different terms.
        """
        (result,) = self.add_terms_many([terms], now_ms, share_with=share_with)
        if isinstance(result, TermsConflict):
            raise result
        return result

    def add_terms_many(
        self, batch: Sequence[Terms], now_ms: int, *, share_with: Iterable[int] = ()
    ) -> list[bool | TermsConflict]:
        """add_terms for each of `batch` in ONE transaction (one fsync, not one per terms), new terms
        queued for the members `share_with` in the same transaction.

        Per item: True (new), False (identical terms already stored) or the TermsConflict add_terms
        would raise; a conflict does not stop the other items.
        """
        members = list(share_with)
        results: list[bool | TermsConflict] = []
        with self.engine.begin() as conn:
            for terms in batch:
                try:
                    new = self._insert_terms(conn, terms, now_ms)
                except TermsConflict as exc:  # raised before anything is written for this item
                    results.append(exc)
                    continue
                if new:
                    self._enqueue(conn, members, "terms", {"terms": terms.to_dict()}, now_ms)
                results.append(new)
        for terms, result in zip(batch, results, strict=True):  # committed: parsed terms worth keeping
            if result is True:
                self._cache_terms(hex32(terms.settlement_id), terms)
        self._touch(hex32(t.settlement_id) for t, new in zip(batch, results, strict=True) if new is True)
        return results

    @staticmethod
    def _insert_terms(conn: Connection, terms: Terms, now_ms: int) -> bool:
        sid = hex32(terms.settlement_id)
        row = conn.execute(select(terms_table.c.terms_hash).where(terms_table.c.settlement_id == sid)).first()
        if row is not None:
            if row.terms_hash != hex32(terms.terms_hash):
                raise TermsConflict(
                    f"settlement {sid} is already registered with terms hash {row.terms_hash}, "
                    f"not {hex32(terms.terms_hash)}; use a new settlement id"
                )
            return False
        conn.execute(
            insert(terms_table).values(
                settlement_id=sid,
                terms_json=json.dumps(terms.to_dict(), sort_keys=True),
                terms_hash=hex32(terms.terms_hash),
                deadline_s=terms.deadline_s,
                registered_ms=now_ms,
            )
        )
        return True

    def get_terms(self, settlement_id: bytes) -> Terms | None:
        return self.terms_many([settlement_id]).get(settlement_id)

    def terms_many(self, settlement_ids: Iterable[bytes]) -> dict[bytes, Terms]:
        """The stored terms of each settlement (one query per 500 ids; unknown ids are absent)."""
        return {sid: terms for sid, (terms, _) in self._terms_rows(settlement_ids).items()}

    def terms_registered_ms_many(self, settlement_ids: Iterable[bytes]) -> dict[bytes, int]:
        """When each settlement's terms were registered here (unknown ids are absent)."""
        return {sid: registered for sid, (_, registered) in self._terms_rows(settlement_ids).items()}

    def _terms_rows(self, settlement_ids: Iterable[bytes]) -> dict[bytes, tuple[Terms, int]]:
        ids = sorted({hex32(s) for s in settlement_ids})
        found: dict[bytes, tuple[Terms, int]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                rows = conn.execute(
                    select(
                        terms_table.c.settlement_id, terms_table.c.terms_json, terms_table.c.registered_ms
                    ).where(terms_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK]))
                ).all()
                for row in rows:
                    found[_bytes(row.settlement_id)] = (
                        self._parsed_terms(row.settlement_id, row.terms_json),
                        int(row.registered_ms),
                    )
        return found

    def _parsed_terms(self, settlement_id: str, terms_json: str) -> Terms:
        """Terms never change once stored, so each is parsed (and its hash computed) once; the cache
        is bounded, and a miss only costs the parse."""
        terms = self._terms_cache.get(settlement_id)
        if terms is None:
            terms = Terms.from_dict(json.loads(terms_json))
            self._cache_terms(settlement_id, terms)
        return terms

    def _cache_terms(self, settlement_id: str, terms: Terms) -> None:
        if len(self._terms_cache) >= _TERMS_CACHE_SIZE:
            self._terms_cache.pop(next(iter(self._terms_cache)))  # the oldest entry
        self._terms_cache[settlement_id] = terms

    def cached_terms(self, settlement_id: object) -> Terms | None:
        """The stored terms of `settlement_id` ("0x" + 64 lowercase hex digits) if this store has them
        parsed in memory; None says nothing (not cached is not unknown). No query."""
        return self._terms_cache.get(settlement_id) if isinstance(settlement_id, str) else None

    def list_terms(self, *, limit: int = 100, after: bytes | None = None) -> list[Terms]:
        query = select(terms_table.c.terms_json).order_by(terms_table.c.settlement_id).limit(limit)
        if after is not None:
            query = query.where(terms_table.c.settlement_id > hex32(after))
        with self.engine.connect() as conn:
            return [Terms.from_dict(json.loads(r.terms_json)) for r in conn.execute(query)]

    def undecided_terms(
        self, *, only: Iterable[bytes] | None = None, deadline_by_s: int | None = None
    ) -> list[Terms]:
        """Registered settlements without a decision, by id; each is parsed once (`_parsed_terms`).

        Without arguments: all of them. With `only`: those among `only`, and with `deadline_by_s` also
        every one whose deadline is at or before it (an incremental decision pass: what was touched,
        and what a final time past its deadline may now abort).
        """
        base = (
            select(terms_table.c.settlement_id, terms_table.c.terms_json)
            .outerjoin(decisions_table, decisions_table.c.settlement_id == terms_table.c.settlement_id)
            .where(decisions_table.c.settlement_id.is_(None))
        )
        rows: dict[str, str] = {}
        with self.engine.connect() as conn:
            if only is None:
                rows.update((r.settlement_id, r.terms_json) for r in conn.execute(base).all())
            else:
                ids = sorted({hex32(s) for s in only})
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = base.where(terms_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK]))
                    rows.update((r.settlement_id, r.terms_json) for r in conn.execute(chunk).all())
                if deadline_by_s is not None:
                    expired = base.where(terms_table.c.deadline_s <= deadline_by_s)
                    rows.update((r.settlement_id, r.terms_json) for r in conn.execute(expired).all())
        return [self._parsed_terms(sid, rows[sid]) for sid in sorted(rows)]

    def take_touched(self) -> set[bytes] | None:
        """The settlements whose terms or locks were stored since the previous call (each reported
        once), or None for "all of them": the first call on a store, and after a network's first
        poll (settlements waiting for that network's view may now be decided).

        A write is reported only after it committed, so a pass that takes the set and then reads the
        store sees every row behind it; a write that lands after the take is in the next call's set.
        """
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        return None if touched is None else {_bytes(sid) for sid in touched}

    def _touch(self, settlement_ids: Iterable[str]) -> None:
        with self._touched_lock:
            if self._touched is not None:
                self._touched.update(settlement_ids)

    def _touch_all(self) -> None:
        with self._touched_lock:
            self._touched = None

    # -- observations -------------------------------------------------------------------------------

    def network_state(self, network: str) -> NetworkState | None:
        known = self._network_rows.get(network)
        if known is not None:
            return known
        with self.engine.connect() as conn:
            row = conn.execute(select(networks_table).where(networks_table.c.network == network)).first()
        if row is None:
            return None
        state = NetworkState(row.network, row.cursor, row.final_time_s, row.last_poll_ms)
        self._network_rows[network] = state
        return state

    def network_states(self) -> list[NetworkState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(networks_table).order_by(networks_table.c.network)).all()
        return [NetworkState(r.network, r.cursor, r.final_time_s, r.last_poll_ms) for r in rows]

    def record_poll(self, observed: Observed, now_ms: int) -> int:
        """Store one poll's locks, cursor and final time atomically; returns how many locks were new.

        The final time never moves backwards (an observer glitch must not un-finalize time). A poll
        that found no new lock, kept the cursor and did not advance the final time writes nothing (no
        disk sync, and when this store knows the row, no transaction): `last_poll_ms` is the time of
        the last poll that changed something.
        """
        known = self._network_rows.get(observed.network)
        if (
            known is not None
            and not observed.locks
            and known.cursor == observed.cursor
            and observed.final_time_s <= known.final_time_s
        ):
            return 0
        row_now: NetworkState | None = None
        with self._relaxed.begin() as conn:
            new = self._insert_locks(conn, observed.locks)
            row = conn.execute(
                select(
                    networks_table.c.final_time_s, networks_table.c.cursor, networks_table.c.last_poll_ms
                ).where(networks_table.c.network == observed.network)
            ).first()
            first_poll = row is None
            if row is None:
                row_now = NetworkState(observed.network, observed.cursor, observed.final_time_s, now_ms)
                conn.execute(
                    insert(networks_table).values(
                        network=observed.network,
                        cursor=observed.cursor,
                        final_time_s=observed.final_time_s,
                        last_poll_ms=now_ms,
                    )
                )
            elif new or row.cursor != observed.cursor or observed.final_time_s > int(row.final_time_s):
                final_time_s = max(int(row.final_time_s), observed.final_time_s)
                row_now = NetworkState(observed.network, observed.cursor, final_time_s, now_ms)
                conn.execute(
                    update(networks_table)
                    .where(networks_table.c.network == observed.network)
                    .values(cursor=observed.cursor, final_time_s=final_time_s, last_poll_ms=now_ms)
                )
            else:
                row_now = NetworkState(observed.network, row.cursor, int(row.final_time_s), row.last_poll_ms)
        if row_now is not None:  # only once the transaction committed
            self._network_rows[observed.network] = row_now
        if first_poll:
            self._touch_all()
        elif new:
            self._touch(hex32(lock.settlement_id) for lock in observed.locks)
        return new

    @staticmethod
    def _insert_locks(conn: Connection, locks: Sequence[LockObservation]) -> int:
        """Insert the locks not stored yet (the same fact seen again, e.g. a re-poll after a crash, is
        idempotent); returns how many were new. One query for what is stored, one executemany."""
        rows = [
            {
                "network": lock.network,
                "settlement_id": hex32(lock.settlement_id),
                "leg_index": lock.leg_index,
                "terms_hash": hex32(lock.terms_hash),
                "asset": lock.asset,
                "amount_minor": str(lock.amount_minor),
                "payer": lock.payer,
                "payee": lock.payee,
                "deadline_s": str(lock.deadline_s),
                "locked_at_s": lock.locked_at_s,
            }
            for lock in locks
        ]
        if not rows:
            return 0
        ids = sorted({hex32(lock.settlement_id) for lock in locks})
        known: set[tuple[Any, ...]] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            stored = conn.execute(
                select(*(locks_table.c[name] for name in LOCK_FACT_COLUMNS)).where(
                    locks_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK])
                )
            )
            known.update(tuple(r) for r in stored)
        fresh: list[dict[str, Any]] = []
        for row in rows:
            fact = tuple(row[name] for name in LOCK_FACT_COLUMNS)
            if fact not in known:
                known.add(fact)  # a poll that lists the same lock twice stores it once
                fresh.append(row)
        if fresh:
            conn.execute(insert(locks_table), fresh)
        return len(fresh)

    def locks_for(self, settlement_id: bytes) -> tuple[LockObservation, ...]:
        return self.locks_for_many([settlement_id]).get(settlement_id, ())

    def locks_for_many(self, settlement_ids: Iterable[bytes]) -> dict[bytes, tuple[LockObservation, ...]]:
        """The observed locks of each settlement (one query; settlements without locks are absent)."""
        ids = [hex32(s) for s in settlement_ids]
        found: dict[bytes, list[LockObservation]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                rows = conn.execute(
                    select(locks_table)
                    .where(locks_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK]))
                    .order_by(locks_table.c.network, locks_table.c.leg_index, locks_table.c.id)
                ).all()
                for r in rows:
                    sid = _bytes(r.settlement_id)
                    found.setdefault(sid, []).append(
                        LockObservation(
                            network=r.network,
                            leg_index=r.leg_index,
                            settlement_id=sid,
                            terms_hash=_bytes(r.terms_hash),
                            asset=r.asset,
                            amount_minor=int(r.amount_minor),
                            payer=r.payer,
                            payee=r.payee,
                            deadline_s=int(r.deadline_s),
                            locked_at_s=int(r.locked_at_s),
                        )
                    )
        return {sid: tuple(locks) for sid, locks in found.items()}

    # -- decisions ----------------------------------------------------------------------------------

    @staticmethod
    def _decision(row: Any) -> StoredDecision:
        return StoredDecision(
            settlement_id=_bytes(row.settlement_id),
            decision=Decision(row.decision),
            decided_at_s=int(row.decided_at_s),
            terms_hash=_bytes(row.terms_hash),
            reason=row.reason,
            recorded_ms=int(row.recorded_ms),
        )

    def record_decision(
        self, terms: Terms, decision: Decision, decided_at_s: int, reason: str, now_ms: int
    ) -> tuple[StoredDecision, bool]:
        """Persist a SETTLE/ABORT decision unless one is stored; returns (the stored one, whether new).

        Never overwrites: a second call with the opposite decision returns the first (and the caller
        logs the conflict). Raises ValueError for PENDING, which is not a decision.
        """
        return self.record_decisions([(terms, decision, decided_at_s, reason)], now_ms)[0]

    def record_decisions(
        self, batch: Sequence[tuple[Terms, Decision, int, str]], now_ms: int
    ) -> list[tuple[StoredDecision, bool]]:
        """`record_decision` for many (terms, decision, decided_at_s, reason), in ONE transaction (one
        disk sync for a whole pass of the decision rule); in order. Raises ValueError for PENDING
        before writing anything."""
        if any(decision is Decision.PENDING for _, decision, _, _ in batch):
            raise ValueError("PENDING is not a decision and is never stored")
        results: list[tuple[StoredDecision, bool]] = []
        with self.engine.begin() as conn:
            ids = sorted({hex32(terms.settlement_id) for terms, _, _, _ in batch})
            stored: dict[bytes, StoredDecision] = {}
            for start in range(0, len(ids), _IN_CHUNK):
                rows = conn.execute(
                    select(decisions_table).where(
                        decisions_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK])
                    )
                )
                stored.update((d.settlement_id, d) for d in map(self._decision, rows))
            fresh: list[dict[str, Any]] = []
            for terms, decision, decided_at_s, reason in batch:
                existing = stored.get(terms.settlement_id)
                if existing is not None:  # stored before, or earlier in this batch: never replaced
                    results.append((existing, False))
                    continue
                new = StoredDecision(
                    terms.settlement_id, decision, decided_at_s, terms.terms_hash, reason, now_ms
                )
                stored[terms.settlement_id] = new
                fresh.append(
                    {
                        "settlement_id": hex32(terms.settlement_id),
                        "decision": int(decision),
                        "decided_at_s": decided_at_s,
                        "terms_hash": hex32(terms.terms_hash),
                        "reason": reason,
                        "recorded_ms": now_ms,
                    }
                )
                results.append((new, True))
            if fresh:
                conn.execute(insert(decisions_table), fresh)
        return results

    def decision(self, settlement_id: bytes) -> StoredDecision | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(decisions_table).where(decisions_table.c.settlement_id == hex32(settlement_id))
            ).first()
        return None if row is None else self._decision(row)

    def decisions_for(self, settlement_ids: Iterable[bytes]) -> dict[bytes, StoredDecision]:
        ids = [hex32(s) for s in settlement_ids]
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(decisions_table).where(decisions_table.c.settlement_id.in_(ids))).all()
        return {d.settlement_id: d for d in map(self._decision, rows)}

    def unreported_decisions(self, limit: int) -> list[StoredDecision]:
        """Decided settlements not in any complete report, by settlement id (the batch order)."""
        reported = select(report_items_table.c.settlement_id)
        query = (
            select(decisions_table)
            .where(decisions_table.c.settlement_id.not_in(reported))
            .order_by(decisions_table.c.settlement_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._decision(r) for r in conn.execute(query)]

    def count_decisions(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(decisions_table)).scalar_one())

    # -- signatures ---------------------------------------------------------------------------------

    def record_signature(
        self, execution_id: bytes, items: Sequence[ReportItem], role: str, now_ms: int
    ) -> None:
        """Record that this node signs a report with `items`, after checking each against its decision.

        Raises EquivocationRefused when an item has no stored decision or differs from it (decision
        or terms hash). Nothing is recorded then, and the caller must not sign.
        """
        with self.engine.begin() as conn:
            ids = [hex32(i.settlement_id) for i in items]
            rows = conn.execute(select(decisions_table).where(decisions_table.c.settlement_id.in_(ids))).all()
            stored = {r.settlement_id: r for r in rows}
            for item in items:
                sid = hex32(item.settlement_id)
                row = stored.get(sid)
                if row is None:
                    raise EquivocationRefused(f"settlement {sid}: not decided by this node; refusing to sign")
                if Decision(row.decision) is not item.decision or row.terms_hash != hex32(item.terms_hash):
                    raise EquivocationRefused(
                        f"settlement {sid}: this node decided {Decision(row.decision).name} for terms "
                        f"{row.terms_hash}; refusing to sign {item.decision.name} "
                        f"for {hex32(item.terms_hash)}"
                    )
            # Signing the same report again (a re-proposal, a restart) is the same signature: record once.
            already = {
                r.settlement_id
                for r in conn.execute(
                    select(signatures_table.c.settlement_id).where(
                        signatures_table.c.execution_id == hex32(execution_id)
                    )
                )
            }
            new_rows = [
                {
                    "execution_id": hex32(execution_id),
                    "settlement_id": hex32(i.settlement_id),
                    "decision": int(i.decision),
                    "role": role,
                    "signed_ms": now_ms,
                }
                for i in items
                if hex32(i.settlement_id) not in already
            ]
            if new_rows:
                conn.execute(insert(signatures_table), new_rows)

    def signed_decisions(self, settlement_id: bytes) -> set[Decision]:
        """Every decision this node ever signed for a settlement (at most one for an honest node)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(signatures_table.c.decision)
                .where(signatures_table.c.settlement_id == hex32(settlement_id))
                .distinct()
            ).all()
        return {Decision(r.decision) for r in rows}

    # -- reports ------------------------------------------------------------------------------------

    def add_report(
        self, report: SignedReport, signers: Sequence[str], networks: Iterable[str], now_ms: int
    ) -> bool:
        """Store a complete (already verified) report and a delivery row per network; True if new."""
        eid = hex32(report.workflow_execution_id)
        with self.engine.begin() as conn:
            if conn.execute(
                select(reports_table.c.execution_id).where(reports_table.c.execution_id == eid)
            ).first():
                return False
            conn.execute(
                insert(reports_table).values(
                    execution_id=eid,
                    raw=report.raw,
                    context=report.context,
                    signatures_json=json.dumps([hex32(s) for s in report.signatures]),
                    signers_json=json.dumps(list(signers)),
                    received_ms=now_ms,
                )
            )
            conn.execute(
                insert(report_items_table),
                [
                    {
                        "execution_id": eid,
                        "settlement_id": hex32(i.settlement_id),
                        "terms_hash": hex32(i.terms_hash),
                        "decision": int(i.decision),
                    }
                    for i in report.items
                ],
            )
            for network in sorted(set(networks)):
                conn.execute(
                    insert(deliveries_table).values(
                        execution_id=eid,
                        network=network,
                        state=DeliveryState.NOT_DELIVERED.value,
                        reference=None,
                        detail="",
                        attempts=0,
                        next_check_ms=now_ms,
                        updated_ms=now_ms,
                    )
                )
        return True

    def _stored_report(self, row: Any, conn: Connection) -> StoredReport:
        items = conn.execute(
            select(report_items_table)
            .where(report_items_table.c.execution_id == row.execution_id)
            .order_by(report_items_table.c.settlement_id)
        ).all()
        report = SignedReport(
            raw=bytes(row.raw),
            context=bytes(row.context),
            signatures=tuple(_bytes(s) for s in json.loads(row.signatures_json)),
            workflow_execution_id=_bytes(row.execution_id),
            items=tuple(
                ReportItem(_bytes(i.settlement_id), _bytes(i.terms_hash), Decision(i.decision)) for i in items
            ),
        )
        return StoredReport(
            report=report, signers=tuple(json.loads(row.signers_json)), received_ms=row.received_ms
        )

    def report(self, execution_id: bytes) -> StoredReport | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(reports_table).where(reports_table.c.execution_id == hex32(execution_id))
            ).first()
            return None if row is None else self._stored_report(row, conn)

    def reports_for(self, settlement_id: bytes) -> list[StoredReport]:
        return self.reports_for_many([settlement_id])

    def reports_for_many(
        self, settlement_ids: Iterable[bytes], *, limit: int | None = None
    ) -> list[StoredReport]:
        """The complete reports carrying any of the settlements (at most `limit`), oldest first (one
        query per 500 ids)."""
        ids = sorted({hex32(s) for s in settlement_ids})
        found: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                carrying = select(report_items_table.c.execution_id).where(
                    report_items_table.c.settlement_id.in_(ids[start : start + _IN_CHUNK])
                )
                rows = conn.execute(
                    select(reports_table)
                    .where(reports_table.c.execution_id.in_(carrying))
                    .order_by(reports_table.c.received_ms, reports_table.c.execution_id)
                    .limit(limit)
                )
                found.update((row.execution_id, row) for row in rows)
            oldest = sorted(found.values(), key=lambda r: (r.received_ms, r.execution_id))[:limit]
            return [self._stored_report(row, conn) for row in oldest]

    def reports_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(reports_table)).scalar_one())

    # -- deliveries ---------------------------------------------------------------------------------

    @staticmethod
    def _delivery(row: Any) -> StoredDelivery:
        return StoredDelivery(
            execution_id=_bytes(row.execution_id),
            network=row.network,
            state=DeliveryState(row.state),
            reference=row.reference,
            detail=row.detail,
            attempts=row.attempts,
            next_check_ms=row.next_check_ms,
            updated_ms=row.updated_ms,
        )

    def deliveries_for(self, execution_id: bytes) -> list[StoredDelivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries_table)
                .where(deliveries_table.c.execution_id == hex32(execution_id))
                .order_by(deliveries_table.c.network)
            ).all()
        return [self._delivery(r) for r in rows]

    def due_deliveries(self, now_ms: int) -> list[StoredDelivery]:
        """Deliveries not yet confirmed (nor failed for good) whose next check is due."""
        open_states = (DeliveryState.NOT_DELIVERED.value, DeliveryState.PENDING.value)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries_table)
                .where(deliveries_table.c.state.in_(open_states), deliveries_table.c.next_check_ms <= now_ms)
                .order_by(deliveries_table.c.next_check_ms)
            ).all()
        return [self._delivery(r) for r in rows]

    def update_delivery(
        self, execution_id: bytes, status: DeliveryStatus, *, next_check_ms: int, now_ms: int, attempted: bool
    ) -> None:
        with self._relaxed.begin() as conn:
            conn.execute(
                update(deliveries_table)
                .where(
                    deliveries_table.c.execution_id == hex32(execution_id),
                    deliveries_table.c.network == status.network,
                )
                .values(
                    state=status.state.value,
                    reference=status.reference,
                    detail=status.detail,
                    attempts=deliveries_table.c.attempts + (1 if attempted else 0),
                    next_check_ms=next_check_ms,
                    updated_ms=now_ms,
                )
            )

    def postpone_delivery(
        self,
        execution_id: bytes,
        network: str,
        next_check_ms: int,
        detail: str,
        *,
        failed_attempt: bool = False,
    ) -> None:
        with self._relaxed.begin() as conn:
            conn.execute(
                update(deliveries_table)
                .where(
                    deliveries_table.c.execution_id == hex32(execution_id),
                    deliveries_table.c.network == network,
                )
                .values(
                    next_check_ms=next_check_ms,
                    detail=detail,
                    attempts=deliveries_table.c.attempts + (1 if failed_attempt else 0),
                )
            )

    # -- outbox (terms and reports shared with peers, retried until acknowledged) --------------------

    def enqueue(self, members: Iterable[int], kind: str, body: dict[str, Any], now_ms: int) -> None:
        with self.engine.begin() as conn:
            self._enqueue(conn, members, kind, body, now_ms)

    @staticmethod
    def _enqueue(
        conn: Connection, members: Iterable[int], kind: str, body: dict[str, Any], now_ms: int
    ) -> None:
        text = json.dumps(body, sort_keys=True)
        rows = [
            {
                "member": m,
                "kind": kind,
                "body_json": text,
                "acked": False,
                "attempts": 0,
                "next_attempt_ms": now_ms,
            }
            for m in members
        ]
        if rows:
            conn.execute(insert(outbox_table), rows)

    def due_outbox(
        self, now_ms: int, *, per_kind: Mapping[str, int] | None = None, default_limit: int = 100
    ) -> list[OutboxMessage]:
        """Due unacknowledged messages, oldest first, at most `per_kind[kind]` (else `default_limit`)
        per (member, kind): one peer's backlog can neither crowd out the others nor all go at once.

        One short query per (member, kind) queue, each reading its first due messages in id order
        through the queue index; a single query ranking every due message (a window function) sorted
        the whole backlog on every call, tens of milliseconds with thousands of terms queued."""
        limits = dict(per_kind or {})
        queue = outbox_table.c
        rows: list[Row[Any]] = []
        with self.engine.connect() as conn:
            pairs = conn.execute(select(queue.member, queue.kind).distinct()).all()
            for member, kind in pairs:
                rows.extend(
                    conn.execute(
                        select(outbox_table)
                        .where(
                            queue.member == member,
                            queue.kind == kind,
                            queue.acked.is_(False),
                            queue.next_attempt_ms <= now_ms,
                        )
                        .order_by(queue.id)
                        .limit(limits.get(kind, default_limit))
                    ).all()
                )
        rows.sort(key=lambda r: int(r.id))
        return [OutboxMessage(r.id, r.member, r.kind, json.loads(r.body_json), r.attempts) for r in rows]

    def ack_outbox(self, message_ids: Iterable[int]) -> None:
        ids = list(message_ids)
        if ids:
            with self._relaxed.begin() as conn:
                # Acknowledged shares are done for good; deleting keeps the table as small as the backlog.
                conn.execute(delete(outbox_table).where(outbox_table.c.id.in_(ids)))

    def retry_outbox(self, next_attempt_ms: Mapping[int, int]) -> None:
        """Count one more attempt for each message id and set when it is next due, in one transaction."""
        if next_attempt_ms:
            with self._relaxed.begin() as conn:
                conn.execute(
                    update(outbox_table)
                    .where(outbox_table.c.id == bindparam("message_id"))
                    .values(attempts=outbox_table.c.attempts + 1, next_attempt_ms=bindparam("due_ms")),
                    [{"message_id": i, "due_ms": ms} for i, ms in next_attempt_ms.items()],
                )
