"""The double-entry journal: append a hash-chained entry, and verify the whole chain.

An entry is (seq, kind, time_ms, reference, prev_hash, postings). Its hash is sha256 over a
canonical JSON serialization of all of those, so changing any posting, amount, account, time or
order breaks the chain at that entry. Postings of an entry sum to zero per currency; each posting
names a bucket (`available` or `held`) of an account, and the account's cached balances move in
the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from crossdvp.payments.models import accounts, holds, journal_entries, ledger_head, postings
from crossdvp.payments.store import GENESIS_HASH, WriteTx, insert_rows

__all__ = [
    "Entry",
    "JournalCheck",
    "Posting",
    "append_entries",
    "append_entry",
    "entry_hash",
    "verify_journal",
]

AVAILABLE = "available"
HELD = "held"


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: `amount_minor` (signed) on `bucket` of `account_id`."""

    account_id: str
    currency: str
    bucket: str
    amount_minor: int


# The canonical serialization, built once: `json.dumps` with options builds a new encoder per call,
# which cost as much as the encoding itself (an entry per hold, under the ledger's lock).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(
    *, seq: int, kind: str, time_ms: int, reference: str, prev_hash: str, lines: Sequence[Posting]
) -> str:
    """sha256 of the canonical serialization (sorted keys, no whitespace, postings in order)."""
    body = {
        "seq": seq,
        "kind": kind,
        "time_ms": time_ms,
        "reference": reference,
        "prev_hash": prev_hash,
        "postings": [[p.account_id, p.currency, p.bucket, p.amount_minor] for p in lines],
    }
    return "0x" + hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry to append: its kind, what it refers to (a hold, a transfer) and its postings."""

    kind: str
    reference: str
    lines: Sequence[Posting]


def append_entry(tx: WriteTx, *, kind: str, reference: str, lines: Sequence[Posting]) -> int:
    """Append one entry to the chain and move the cached balances; returns the entry's seq."""
    return append_entries(tx, [Entry(kind, reference, lines)])[0]


def append_entries(tx: WriteTx, entries: Sequence[Entry]) -> list[int]:
    """Append entries to the chain in order and move the cached balances; returns their seqs.

    A fixed number of statements whatever the count (one multi-row INSERT per table, one UPDATE per
    account touched), so a batch of holds costs little more than one. Raises ValueError (a
    programming error, never a user error) if an entry's postings do not sum to zero per currency or
    name an unknown bucket; nothing is written then.
    """
    for entry in entries:
        totals: dict[str, int] = defaultdict(int)
        for line in entry.lines:
            if line.bucket not in (AVAILABLE, HELD):
                raise ValueError(f"unknown bucket {line.bucket!r}")
            totals[line.currency] += line.amount_minor
        if any(totals.values()):
            raise ValueError(f"journal entry {entry.kind} does not balance: {dict(totals)}")
    if not entries:
        return []
    rows: list[dict[str, object]] = []
    lines: list[dict[str, object]] = []
    deltas: dict[str, dict[str, int]] = defaultdict(lambda: {AVAILABLE: 0, HELD: 0})
    seq, prev_hash = tx.last_entry_seq, tx.last_entry_hash
    for entry in entries:
        seq += 1
        digest = entry_hash(
            seq=seq,
            kind=entry.kind,
            time_ms=tx.now_ms,
            reference=entry.reference,
            prev_hash=prev_hash,
            lines=entry.lines,
        )
        rows.append(
            {
                "seq": seq,
                "kind": entry.kind,
                "time_ms": tx.now_ms,
                "reference": entry.reference,
                "prev_hash": prev_hash,
                "entry_hash": digest,
            }
        )
        for p in entry.lines:
            lines.append(
                {
                    "entry_seq": seq,
                    "account_id": p.account_id,
                    "currency": p.currency,
                    "bucket": p.bucket,
                    "amount_minor": p.amount_minor,
                }
            )
            deltas[p.account_id][p.bucket] += p.amount_minor
        prev_hash = digest
    insert_rows(tx.conn, journal_entries, rows)
    insert_rows(tx.conn, postings, lines)
    # One UPDATE per account touched, with the net change over all the entries.
    for account_id, delta in deltas.items():
        changes = {
            column.name: column + delta[bucket]
            for bucket, column in ((AVAILABLE, accounts.c.available_minor), (HELD, accounts.c.held_minor))
            if delta[bucket]
        }
        if changes:
            tx.conn.execute(update(accounts).where(accounts.c.account_id == account_id).values(changes))
    first = tx.last_entry_seq + 1
    tx.last_entry_seq = seq
    tx.last_entry_hash = prev_hash
    tx.dirty = True
    return list(range(first, seq + 1))


@dataclass(frozen=True, slots=True)
class JournalCheck:
    """The outcome of `verify_journal`: `first_break` is None when every invariant holds."""

    entries_checked: int
    first_break: str | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify_journal(conn: Connection) -> JournalCheck:
    """Recompute the hash chain and every invariant; stop at the first break.

    Checks, in order, per entry: seq contiguous from 1; prev_hash equals the previous entry's hash;
    the recomputed hash equals the stored one; postings sum to zero per currency; each posting's
    currency is its account's. Then: the head row points at the last entry; each account's cached
    balances equal the sum of its postings; no deposit account is negative; each account's held
    balance equals the sum of its holds still `held`.
    """
    account_rows = {row.account_id: row for row in conn.execute(select(accounts))}
    derived: dict[tuple[str, str], int] = defaultdict(int)
    prev_hash = GENESIS_HASH
    expected_seq = 1
    current: list[Posting] = []
    current_entry = None
    checked = 0

    def close_entry() -> str | None:
        assert current_entry is not None
        entry = current_entry
        if entry.seq != expected_seq:
            return f"entry seq {entry.seq}: expected seq {expected_seq} (an entry is missing or reordered)"
        if entry.prev_hash != prev_hash:
            return (
                f"entry seq {entry.seq}: prev_hash {entry.prev_hash} != the previous entry hash {prev_hash}"
            )
        recomputed = entry_hash(
            seq=entry.seq,
            kind=entry.kind,
            time_ms=entry.time_ms,
            reference=entry.reference,
            prev_hash=entry.prev_hash,
            lines=current,
        )
        if recomputed != entry.entry_hash:
            return (
                f"entry seq {entry.seq}: stored hash {entry.entry_hash} != recomputed {recomputed} (tampered)"
            )
        totals: dict[str, int] = defaultdict(int)
        for p in current:
            totals[p.currency] += p.amount_minor
            account = account_rows.get(p.account_id)
            if account is None:
                return f"entry seq {entry.seq}: posting to unknown account {p.account_id}"
            if account.currency != p.currency:
                return f"entry seq {entry.seq}: {p.currency} posting to {p.account_id} ({account.currency})"
            derived[(p.account_id, p.bucket)] += p.amount_minor
        unbalanced = {c: t for c, t in totals.items() if t}
        if unbalanced:
            return f"entry seq {entry.seq}: postings do not sum to zero: {unbalanced}"
        return None

    query = (
        select(
            journal_entries,
            postings.c.account_id,
            postings.c.currency,
            postings.c.bucket,
            postings.c.amount_minor,
        )
        .select_from(journal_entries.outerjoin(postings, postings.c.entry_seq == journal_entries.c.seq))
        .order_by(journal_entries.c.seq, postings.c.posting_id)
    )
    for row in conn.execute(query).yield_per(2000):
        if current_entry is None or row.seq != current_entry.seq:
            if current_entry is not None:
                problem = close_entry()
                if problem:
                    return JournalCheck(checked, problem)
                prev_hash = current_entry.entry_hash
                expected_seq += 1
                checked += 1
            current_entry = row
            current = []
        if row.account_id is not None:
            current.append(Posting(row.account_id, row.currency, row.bucket, row.amount_minor))
    if current_entry is not None:
        problem = close_entry()
        if problem:
            return JournalCheck(checked, problem)
        prev_hash = current_entry.entry_hash
        checked += 1

    head = conn.execute(select(ledger_head).where(ledger_head.c.id == 1)).one_or_none()
    if head is None:
        return JournalCheck(checked, "the ledger head row is missing (database not migrated?)")
    if head.last_entry_seq != checked or head.last_entry_hash != prev_hash:
        return JournalCheck(
            checked,
            f"ledger head points at seq {head.last_entry_seq} hash {head.last_entry_hash}, but the chain "
            f"ends at seq {checked} hash {prev_hash} (entries removed or appended outside the ledger)",
        )
    held_by_account = dict(
        conn.execute(
            select(holds.c.payer_account, func.sum(holds.c.amount_minor))
            .where(holds.c.state == "held")
            .group_by(holds.c.payer_account)
        ).all()
    )
    for account_id, account in sorted(account_rows.items()):
        available = derived[(account_id, AVAILABLE)]
        held = derived[(account_id, HELD)]
        if account.available_minor != available or account.held_minor != held:
            return JournalCheck(
                checked,
                f"account {account_id}: cached available/held {account.available_minor}/{account.held_minor} "
                f"!= journal {available}/{held}",
            )
        if account.kind == "deposit" and (available < 0 or held < 0):
            return JournalCheck(checked, f"account {account_id}: negative balance {available}/{held}")
        open_holds = int(held_by_account.get(account_id) or 0)
        if held != open_holds:
            return JournalCheck(
                checked,
                f"account {account_id}: held balance {held} != open holds {open_holds}",
            )
    return JournalCheck(checked, None)
