"""Holds: the lock on this ledger. `place_hold` (the payer's consent), `finalize_hold` (settled or
released by a report, in `reports.py`; reclaimed by the payer), and the feed events they stamp.

A hold is unique per (settlement_id, leg_index), like an escrow lock, so its id is derived from them.
Visibility follows `accounts.py`: a participant sees a hold it pays or is paid by, else 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Row, or_, select

from crossdvp.payments.accounts import (
    check_counterparty,
    check_visible,
    require_available,
    require_not_frozen,
)
from crossdvp.payments.auth import Principal, Role
from crossdvp.payments.errors import Conflict, Forbidden, LedgerRejection, NotFound, Unprocessable
from crossdvp.payments.journal import AVAILABLE, HELD, Entry, Posting, append_entries
from crossdvp.payments.models import accounts, events, holds
from crossdvp.payments.store import WriteTx, insert_rows, one_of, update_rows

__all__ = [
    "FINAL_STATES",
    "HELD_STATE",
    "Hold",
    "HoldEvent",
    "HoldRequest",
    "finalize_hold",
    "finalize_holds",
    "get_hold",
    "hold_from_row",
    "hold_id_for",
    "hold_rows_for_settlements",
    "list_holds",
    "place_hold",
    "place_holds",
    "reclaim",
    "record_events",
]

HELD_STATE = "held"
FINAL_STATES = ("settled", "released", "reclaimed")


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """What a payer asks for when it places a hold (the body of `POST /v1/holds`)."""

    settlement_id: str
    leg_index: int
    terms_hash: str
    payer_account: str
    payee_account: str
    currency: str
    amount_minor: int
    deadline_s: int


@dataclass(frozen=True, slots=True)
class Hold(HoldRequest):
    """A placed hold: the request, its id and where it stands."""

    hold_id: str
    state: str
    placed_at_s: int
    final_at_s: int | None
    workflow_execution_id: str | None


@dataclass(frozen=True, slots=True)
class HoldEvent:
    cursor: int
    kind: str
    time_s: int
    time_ms: int
    hold: Hold
    workflow_execution_id: str | None


_REQUEST_FIELDS = tuple(f.name for f in fields(HoldRequest))


def _request_fields(request: HoldRequest) -> dict[str, Any]:
    """The request's fields by name: `dataclasses.asdict` without its deep copy (every field is a str or
    an int), which cost more than the rest of placing a batch of holds."""
    return {name: getattr(request, name) for name in _REQUEST_FIELDS}


def _hold(row: Row[Any]) -> Hold:
    return Hold(
        hold_id=row.hold_id,
        settlement_id=row.settlement_id,
        leg_index=row.leg_index,
        terms_hash=row.terms_hash,
        payer_account=row.payer_account,
        payee_account=row.payee_account,
        currency=row.currency,
        amount_minor=int(row.amount_minor),
        deadline_s=int(row.deadline_s),
        state=row.state,
        placed_at_s=row.placed_at_ms // 1000,
        final_at_s=None if row.final_at_ms is None else row.final_at_ms // 1000,
        workflow_execution_id=row.workflow_execution_id,
    )


def hold_id_for(settlement_id: str, leg_index: int) -> str:
    """Holds are unique per (settlement, leg), as escrow locks are, so the id is derived from them."""
    return f"hold-{settlement_id.removeprefix('0x')}-{leg_index}"


def record_events(tx: WriteTx, new_events: Sequence[tuple[str, str, str | None]]) -> list[int]:
    """Append (kind, hold_id, workflow_execution_id) events in order, in one statement; their cursors."""
    first = tx.last_event_cursor + 1
    if new_events:
        insert_rows(
            tx.conn,
            events,
            [
                {
                    "cursor": first + i,
                    "kind": kind,
                    "time_ms": tx.now_ms,
                    "hold_id": hold_id,
                    "workflow_execution_id": execution_id,
                }
                for i, (kind, hold_id, execution_id) in enumerate(new_events)
            ],
        )
        tx.last_event_cursor = first + len(new_events) - 1
        tx.dirty = True
    return list(range(first, tx.last_event_cursor + 1))


def place_hold(tx: WriteTx, principal: Principal, request: HoldRequest) -> Hold:
    """Lock a settlement leg: move `amount_minor` from the payer's available to its held balance.

    Rejects: payer account unknown or not the caller's (404 account-not-found); payee unknown (422
    unknown-account); currency differs from either account's (422 currency-mismatch); ledger time past
    the deadline (422 deadline-passed; allowed while now_s <= deadline_s, like the escrow); a hold for
    this (settlement_id, leg_index) exists (409 hold-exists); payer or payee frozen (409
    account-frozen); insufficient available (409 insufficient-funds)."""
    (outcome,) = place_holds(tx, principal, [request])
    if isinstance(outcome, LedgerRejection):
        raise outcome
    return outcome


def place_holds(
    tx: WriteTx, principal: Principal, requests: Sequence[HoldRequest]
) -> list[Hold | LedgerRejection]:
    """Place each hold, in order, or refuse it with the rejection `place_hold` would raise for it.

    Every check of every hold runs before anything is written (against the balances as the earlier
    holds of the batch leave them), so a refused hold writes nothing and never blocks the others; the
    accepted ones are then written with a fixed number of statements, whatever their count.
    """
    named = {r.payer_account for r in requests} | {r.payee_account for r in requests}
    rows = {
        row.account_id: row
        for row in tx.conn.execute(
            select(accounts).where(one_of(tx.conn, accounts.c.account_id, sorted(named)))
        )
    }
    wanted = [hold_id_for(r.settlement_id, r.leg_index) for r in requests]
    taken = set(tx.conn.scalars(select(holds.c.hold_id).where(one_of(tx.conn, holds.c.hold_id, wanted))))
    available = {account_id: int(row.available_minor) for account_id, row in rows.items()}
    outcomes: list[Hold | LedgerRejection] = []
    placed: list[tuple[HoldRequest, Hold]] = []
    for request, hold_id in zip(requests, wanted, strict=True):
        try:
            _check_hold(tx, principal, request, hold_id, rows, taken, available)
        except LedgerRejection as exc:
            outcomes.append(exc)
            continue
        taken.add(hold_id)
        available[request.payer_account] -= request.amount_minor
        hold = Hold(
            hold_id=hold_id,
            **_request_fields(request),
            state=HELD_STATE,
            placed_at_s=tx.now_s,
            final_at_s=None,
            workflow_execution_id=None,
        )
        outcomes.append(hold)
        placed.append((request, hold))
    if placed:
        insert_rows(
            tx.conn,
            holds,
            [
                {
                    **_request_fields(request),
                    "hold_id": h.hold_id,
                    "state": HELD_STATE,
                    "placed_at_ms": tx.now_ms,
                    "final_at_ms": None,
                    "workflow_execution_id": None,
                }
                for request, h in placed
            ],
        )
        append_entries(
            tx,
            [
                Entry(
                    "hold",
                    h.hold_id,
                    [
                        Posting(h.payer_account, h.currency, AVAILABLE, -h.amount_minor),
                        Posting(h.payer_account, h.currency, HELD, h.amount_minor),
                    ],
                )
                for _, h in placed
            ],
        )
        record_events(tx, [("hold_placed", h.hold_id, None) for _, h in placed])
    return outcomes


def _check_hold(
    tx: WriteTx,
    principal: Principal,
    request: HoldRequest,
    hold_id: str,
    rows: dict[str, Row[Any]],
    taken: set[str],
    available: dict[str, int],
) -> None:
    """Raise the rejection `place_hold` documents for `request`, in its order; None if it may be placed."""
    payer = check_visible(
        rows.get(request.payer_account), principal, request.payer_account, field="payer_account"
    )
    payee = check_counterparty(rows.get(request.payee_account), request.payee_account, field="payee_account")
    for row, name in ((payer, "payer_account"), (payee, "payee_account")):
        if row.currency != request.currency:
            raise Unprocessable(
                "currency-mismatch",
                f"{name} {row.account_id!r} holds {row.currency}, not {request.currency}",
                field="currency",
            )
    if tx.now_s > request.deadline_s:
        raise Unprocessable(
            "deadline-passed",
            f"ledger time {tx.now_s} is past the deadline {request.deadline_s}; holds are taken until the "
            "deadline",
            field="deadline_s",
            extra={"now_s": tx.now_s},
        )
    if hold_id in taken:
        raise Conflict(
            "hold-exists",
            f"leg {request.leg_index} of settlement {request.settlement_id} is already held",
            field="leg_index",
        )
    require_not_frozen(payer, "payer_account")
    require_not_frozen(payee, "payee_account")
    require_available(payer, request.amount_minor, available[payer.account_id])


def finalize_hold(tx: WriteTx, hold: Row[Any], state: str, workflow_execution_id: str | None) -> None:
    """Move a `held` hold to a final state with its journal entry and event (settled pays the payee;
    released and reclaimed return the funds to the payer's available balance)."""
    finalize_holds(tx, [(hold, state)], workflow_execution_id)


def finalize_holds(
    tx: WriteTx, finals: Sequence[tuple[Row[Any], str]], workflow_execution_id: str | None
) -> None:
    """`finalize_hold` for many (hold, final state) pairs, in order, with a fixed number of statements."""
    if not finals:
        return
    entries = []
    for hold, state in finals:
        to_account = hold.payee_account if state == "settled" else hold.payer_account
        entries.append(
            Entry(
                _ENTRY_KIND[state],
                hold.hold_id,
                [
                    Posting(hold.payer_account, hold.currency, HELD, -int(hold.amount_minor)),
                    Posting(to_account, hold.currency, AVAILABLE, int(hold.amount_minor)),
                ],
            )
        )
    append_entries(tx, entries)
    update_rows(
        tx.conn,
        holds,
        "hold_id",
        [{"hold_id": hold.hold_id, "state": state} for hold, state in finals],
        final_at_ms=tx.now_ms,
        workflow_execution_id=workflow_execution_id,
    )
    record_events(tx, [(_EVENT_KIND[state], hold.hold_id, workflow_execution_id) for hold, state in finals])


_ENTRY_KIND = {"settled": "settle", "released": "release", "reclaimed": "reclaim"}
_EVENT_KIND = {"settled": "hold_settled", "released": "hold_released", "reclaimed": "hold_reclaimed"}


def _visible_hold(conn: Connection, principal: Principal, hold_id: str) -> Row[Any]:
    row = conn.execute(select(holds).where(holds.c.hold_id == hold_id)).first()
    if row is None:
        raise NotFound("hold-not-found", f"no hold {hold_id!r}", field="hold_id")
    if principal.role is Role.PARTICIPANT:
        owners = conn.execute(
            select(accounts.c.account_id).where(
                accounts.c.account_id.in_([row.payer_account, row.payee_account]),
                accounts.c.participant_id == principal.participant_id,
            )
        ).first()
        if owners is None:
            raise NotFound("hold-not-found", f"no hold {hold_id!r}", field="hold_id")
    return row


def get_hold(conn: Connection, principal: Principal, hold_id: str) -> Hold:
    """Rejects: unknown hold, or one where the participant is neither payer nor payee (404)."""
    return _hold(_visible_hold(conn, principal, hold_id))


def list_holds(
    conn: Connection,
    principal: Principal,
    *,
    settlement_id: str | None,
    state: str | None,
    account_id: str | None,
    after: str | None,
    limit: int,
) -> list[Hold]:
    """Holds ordered by id after `after`; a participant sees holds it pays or is paid by."""
    query = select(holds).order_by(holds.c.hold_id).limit(limit)
    if principal.role is Role.PARTICIPANT:
        own = select(accounts.c.account_id).where(accounts.c.participant_id == principal.participant_id)
        query = query.where(or_(holds.c.payer_account.in_(own), holds.c.payee_account.in_(own)))
    if settlement_id is not None:
        query = query.where(holds.c.settlement_id == settlement_id)
    if state is not None:
        query = query.where(holds.c.state == state)
    if account_id is not None:
        query = query.where(or_(holds.c.payer_account == account_id, holds.c.payee_account == account_id))
    if after is not None:
        query = query.where(holds.c.hold_id > after)
    return [_hold(row) for row in conn.execute(query)]


def reclaim(tx: WriteTx, principal: Principal, hold_id: str, *, grace_s: int) -> Hold:
    """The payer takes back a hold no report finalised, once ledger time > deadline_s + grace_s.

    Rejects: unknown or invisible hold (404); caller is not the payer's participant (403 not-payer);
    hold already final (409 not-reclaimable); too early (409 reclaim-too-early, with available_at_s)."""
    row = _visible_hold(tx.conn, principal, hold_id)
    if principal.role is Role.PARTICIPANT:
        payer = tx.conn.execute(select(accounts).where(accounts.c.account_id == row.payer_account)).one()
        if payer.participant_id != principal.participant_id:
            raise Forbidden("not-payer", "only the payer may reclaim a hold", field="hold_id")
    if row.state != HELD_STATE:
        raise Conflict("not-reclaimable", f"hold {hold_id!r} is already {row.state}", field="hold_id")
    available_at_s = int(row.deadline_s) + grace_s + 1
    if tx.now_s < available_at_s:
        raise Conflict(
            "reclaim-too-early",
            f"hold {hold_id!r} can be reclaimed from ledger time {available_at_s} (after deadline + grace); "
            f"now {tx.now_s}",
            field="hold_id",
            extra={"available_at_s": available_at_s, "now_s": tx.now_s},
        )
    finalize_hold(tx, row, "reclaimed", None)
    return _hold(tx.conn.execute(select(holds).where(holds.c.hold_id == hold_id)).one())


def hold_rows_for_settlements(conn: Connection, settlement_ids: Sequence[str]) -> Sequence[Row[Any]]:
    """The holds of these settlements, by settlement and leg index."""
    return conn.execute(
        select(holds)
        .where(one_of(conn, holds.c.settlement_id, settlement_ids))
        .order_by(holds.c.settlement_id, holds.c.leg_index)
    ).all()


def hold_from_row(row: Row[Any]) -> Hold:
    return _hold(row)
