"""Participants, credentials, accounts and money movement: cash in/out against the external rail,
and immediate payments. Each operation is a function over one serialized write transaction (or a read).

Authorization that depends on *which* account is touched is decided here, with one rule: an account
the caller may not see is reported exactly like an account that does not exist (404), so a
participant can never learn that another participant's account exists. Role checks (403) happen at
the API boundary, before any lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from crossdvp.payments.auth import Principal, Role
from crossdvp.payments.errors import Conflict, Forbidden, NotFound, Unprocessable
from crossdvp.payments.journal import AVAILABLE, Posting, append_entry
from crossdvp.payments.models import (
    accounts,
    credentials,
    journal_entries,
    participants,
    postings,
)
from crossdvp.payments.store import WriteTx

__all__ = [
    "MAX_BALANCE_MINOR",
    "Account",
    "Credential",
    "Participant",
    "Payment",
    "StatementLine",
    "Transfer",
    "cash_in",
    "cash_out",
    "check_counterparty",
    "check_visible",
    "counterparty_account",
    "create_credential",
    "create_participant",
    "ensure_admin_credential",
    "get_account",
    "get_participant",
    "list_accounts",
    "open_account",
    "pay",
    "require_available",
    "require_not_frozen",
    "set_frozen",
    "statement",
    "visible_account",
]

# Every deposit balance is >= 0 and they sum to minus the rail account, so capping the rail at 1e18
# keeps every balance and every sum inside a signed 64-bit BIGINT.
MAX_BALANCE_MINOR = 10**18


@dataclass(frozen=True, slots=True)
class Participant:
    participant_id: str
    name: str
    created_at_s: int


@dataclass(frozen=True, slots=True)
class Credential:
    credential_id: str
    role: Role
    participant_id: str | None
    created_at_s: int


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    participant_id: str | None
    currency: str
    kind: str
    frozen: bool
    available_minor: int
    held_minor: int
    created_at_s: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """A cash-in, cash-out or payment: the journal entry that moved the money."""

    entry_seq: int
    kind: str
    from_account: str
    to_account: str
    currency: str
    amount_minor: int
    reference: str
    time_s: int


Payment = Transfer


@dataclass(frozen=True, slots=True)
class StatementLine:
    posting_id: int
    entry_seq: int
    kind: str
    reference: str
    time_s: int
    bucket: str
    amount_minor: int


def _account(row: Row[Any]) -> Account:
    return Account(
        account_id=row.account_id,
        participant_id=row.participant_id,
        currency=row.currency,
        kind=row.kind,
        frozen=bool(row.frozen),
        available_minor=int(row.available_minor),
        held_minor=int(row.held_minor),
        created_at_s=row.created_at_ms // 1000,
    )


# --- participants and credentials ------------------------------------------------------------


def create_participant(tx: WriteTx, participant_id: str, name: str) -> Participant:
    """Onboard a participant. Rejects: participant id taken (409 already-exists)."""
    if tx.conn.execute(
        select(participants.c.participant_id).where(participants.c.participant_id == participant_id)
    ).first():
        raise Conflict(
            "already-exists", f"participant {participant_id!r} already exists", field="participant_id"
        )
    tx.conn.execute(
        insert(participants).values(participant_id=participant_id, name=name, created_at_ms=tx.now_ms)
    )
    return Participant(participant_id, name, tx.now_s)


def get_participant(conn: Connection, principal: Principal, participant_id: str) -> Participant:
    """Rejects: unknown participant, or another participant's record (both 404)."""
    if principal.role is Role.PARTICIPANT and principal.participant_id != participant_id:
        raise NotFound("not-found", f"no participant {participant_id!r}", field="participant_id")
    row = conn.execute(select(participants).where(participants.c.participant_id == participant_id)).first()
    if row is None:
        raise NotFound("not-found", f"no participant {participant_id!r}", field="participant_id")
    return Participant(row.participant_id, row.name, row.created_at_ms // 1000)


def create_credential(
    tx: WriteTx, *, credential_id: str, key_hash: str, role: Role, participant_id: str | None
) -> Credential:
    """Store a credential (its key only as a hash).

    Rejects (422): a participant credential without a participant_id or naming an unknown
    participant; an admin/oracle credential with a participant_id.
    """
    if role is Role.PARTICIPANT:
        if participant_id is None:
            raise Unprocessable(
                "invalid-field", "a participant credential needs participant_id", field="participant_id"
            )
        known = tx.conn.execute(
            select(participants.c.participant_id).where(participants.c.participant_id == participant_id)
        ).first()
        if known is None:
            raise Unprocessable(
                "unknown-participant", f"no participant {participant_id!r}", field="participant_id"
            )
    elif participant_id is not None:
        raise Unprocessable(
            "invalid-field",
            f"a {role.value} credential must not name a participant_id",
            field="participant_id",
        )
    tx.conn.execute(
        insert(credentials).values(
            credential_id=credential_id,
            key_hash=key_hash,
            role=role.value,
            participant_id=participant_id,
            revoked=False,
            created_at_ms=tx.now_ms,
        )
    )
    return Credential(credential_id, role, participant_id, tx.now_s)


# --- accounts ----------------------------------------------------------------------------------


def visible_account(conn: Connection, principal: Principal, account_id: str, *, field: str) -> Row[Any]:
    """The account row if the caller may see it; 404 otherwise (never reveal others' accounts)."""
    row = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    return check_visible(row, principal, account_id, field=field)


def check_visible(row: Row[Any] | None, principal: Principal, account_id: str, *, field: str) -> Row[Any]:
    """`visible_account` on a row already read (None: no such account)."""
    if row is None or row.kind != "deposit":
        raise NotFound("account-not-found", f"no account {account_id!r}", field=field)
    if principal.role is Role.PARTICIPANT and row.participant_id != principal.participant_id:
        raise NotFound("account-not-found", f"no account {account_id!r}", field=field)
    if principal.role is Role.ORACLE:
        raise Forbidden("forbidden", "the oracle role cannot read accounts")
    return row


def counterparty_account(conn: Connection, account_id: str, *, field: str) -> Row[Any]:
    """Any deposit account, by id: a payer must be able to name a payee it does not own (like an IBAN)."""
    row = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    return check_counterparty(row, account_id, field=field)


def check_counterparty(row: Row[Any] | None, account_id: str, *, field: str) -> Row[Any]:
    """`counterparty_account` on a row already read (None: no such account)."""
    if row is None or row.kind != "deposit":
        raise Unprocessable("unknown-account", f"no account {account_id!r} to pay into", field=field)
    return row


def open_account(tx: WriteTx, *, account_id: str, participant_id: str, currency: str) -> Account:
    """Rejects: account id taken (409 already-exists); unknown participant (422 unknown-participant)."""
    if tx.conn.execute(select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first():
        raise Conflict("already-exists", f"account {account_id!r} already exists", field="account_id")
    if not tx.conn.execute(
        select(participants.c.participant_id).where(participants.c.participant_id == participant_id)
    ).first():
        raise Unprocessable(
            "unknown-participant", f"no participant {participant_id!r}", field="participant_id"
        )
    tx.conn.execute(
        insert(accounts).values(
            account_id=account_id,
            participant_id=participant_id,
            currency=currency,
            kind="deposit",
            frozen=False,
            available_minor=0,
            held_minor=0,
            created_at_ms=tx.now_ms,
        )
    )
    return Account(account_id, participant_id, currency, "deposit", False, 0, 0, tx.now_s)


def get_account(conn: Connection, principal: Principal, account_id: str) -> Account:
    """Rejects: unknown or invisible account (404); oracle role (403)."""
    return _account(visible_account(conn, principal, account_id, field="account_id"))


def list_accounts(
    conn: Connection, principal: Principal, *, participant_id: str | None, after: str | None, limit: int
) -> list[Account]:
    """Accounts ordered by id, after `after` (exclusive). Participants only ever list their own."""
    query = select(accounts).where(accounts.c.kind == "deposit").order_by(accounts.c.account_id).limit(limit)
    if principal.role is Role.PARTICIPANT:
        query = query.where(accounts.c.participant_id == principal.participant_id)
    if participant_id is not None:
        query = query.where(accounts.c.participant_id == participant_id)
    if after is not None:
        query = query.where(accounts.c.account_id > after)
    return [_account(row) for row in conn.execute(query)]


def set_frozen(tx: WriteTx, account_id: str, frozen: bool) -> Account:
    """Freeze or unfreeze (admin). A frozen account cannot pay, be paid, place holds, cash in or out;
    holds already placed still settle or release by report (the payer consented before the freeze,
    and atomicity of the settlement must not depend on an account's later status).
    Rejects: unknown account (404)."""
    row = tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    if row is None or row.kind != "deposit":
        raise NotFound("account-not-found", f"no account {account_id!r}", field="account_id")
    tx.conn.execute(update(accounts).where(accounts.c.account_id == account_id).values(frozen=frozen))
    return _account(tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).one())


def _rail_account(tx: WriteTx, currency: str) -> Row[Any]:
    """The external-rail account of `currency` (created on first use): the other side of cash in/out."""
    account_id = f"rail:{currency}"
    row = tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    if row is None:
        tx.conn.execute(
            insert(accounts).values(
                account_id=account_id,
                participant_id=None,
                currency=currency,
                kind="rail",
                frozen=False,
                available_minor=0,
                held_minor=0,
                created_at_ms=tx.now_ms,
            )
        )
        row = tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).one()
    return row


def require_not_frozen(row: Row[Any], field: str) -> None:
    if row.frozen:
        raise Conflict("account-frozen", f"account {row.account_id!r} is frozen", field=field)


def require_available(row: Row[Any], amount_minor: int, available_minor: int | None = None) -> None:
    """Rejects when the account cannot fund `amount_minor` (its balance as of `available_minor` if
    given: a batch that has already taken some of it)."""
    available = row.available_minor if available_minor is None else available_minor
    if available < amount_minor:
        raise Conflict(
            "insufficient-funds",
            f"account {row.account_id!r} has {available} {row.currency} minor units available, "
            f"{amount_minor} needed",
            field="amount_minor",
        )


def cash_in(tx: WriteTx, *, account_id: str, amount_minor: int, reference: str) -> Transfer:
    """Credit an account from the external rail (admin).

    Rejects: unknown account (404); frozen (409 account-frozen); total cash of the currency would
    exceed 10**18 minor units (422 amount-too-large)."""
    row = tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    if row is None or row.kind != "deposit":
        raise NotFound("account-not-found", f"no account {account_id!r}", field="account_id")
    require_not_frozen(row, "account_id")
    rail = _rail_account(tx, row.currency)
    if -rail.available_minor + amount_minor > MAX_BALANCE_MINOR:
        raise Unprocessable(
            "amount-too-large",
            f"cash in would take the {row.currency} total above {MAX_BALANCE_MINOR} minor units",
            field="amount_minor",
        )
    seq = append_entry(
        tx,
        kind="cash_in",
        reference=reference,
        lines=[
            Posting(rail.account_id, row.currency, AVAILABLE, -amount_minor),
            Posting(account_id, row.currency, AVAILABLE, amount_minor),
        ],
    )
    return Transfer(
        seq, "cash_in", rail.account_id, account_id, row.currency, amount_minor, reference, tx.now_s
    )


def cash_out(tx: WriteTx, *, account_id: str, amount_minor: int, reference: str) -> Transfer:
    """Debit an account to the external rail (admin).

    Rejects: unknown account (404); frozen (409 account-frozen); insufficient available (409)."""
    row = tx.conn.execute(select(accounts).where(accounts.c.account_id == account_id)).first()
    if row is None or row.kind != "deposit":
        raise NotFound("account-not-found", f"no account {account_id!r}", field="account_id")
    require_not_frozen(row, "account_id")
    require_available(row, amount_minor)
    rail = _rail_account(tx, row.currency)
    seq = append_entry(
        tx,
        kind="cash_out",
        reference=reference,
        lines=[
            Posting(account_id, row.currency, AVAILABLE, -amount_minor),
            Posting(rail.account_id, row.currency, AVAILABLE, amount_minor),
        ],
    )
    return Transfer(
        seq, "cash_out", account_id, rail.account_id, row.currency, amount_minor, reference, tx.now_s
    )


def pay(
    tx: WriteTx,
    principal: Principal,
    *,
    from_account: str,
    to_account: str,
    currency: str,
    amount_minor: int,
    reference: str,
) -> Transfer:
    """An immediate payment between two deposit accounts of the same currency.

    Rejects: payer account unknown or not the caller's (404 account-not-found); payee unknown (422
    unknown-account); payer == payee (422 same-account); currency differs from either account's
    (422 currency-mismatch); either account frozen (409 account-frozen); insufficient available (409)."""
    if from_account == to_account:
        raise Unprocessable("same-account", "from_account and to_account must differ", field="to_account")
    payer = visible_account(tx.conn, principal, from_account, field="from_account")
    payee = counterparty_account(tx.conn, to_account, field="to_account")
    for row, name in ((payer, "from_account"), (payee, "to_account")):
        if row.currency != currency:
            raise Unprocessable(
                "currency-mismatch",
                f"{name} {row.account_id!r} holds {row.currency}, not {currency}",
                field="currency",
            )
    require_not_frozen(payer, "from_account")
    require_not_frozen(payee, "to_account")
    require_available(payer, amount_minor)
    seq = append_entry(
        tx,
        kind="payment",
        reference=reference,
        lines=[
            Posting(from_account, currency, AVAILABLE, -amount_minor),
            Posting(to_account, currency, AVAILABLE, amount_minor),
        ],
    )
    return Transfer(seq, "payment", from_account, to_account, currency, amount_minor, reference, tx.now_s)


def statement(
    conn: Connection, principal: Principal, account_id: str, *, after: int, limit: int
) -> list[StatementLine]:
    """Postings of one account in order, after posting id `after`. Rejects like `get_account`."""
    visible_account(conn, principal, account_id, field="account_id")
    query = (
        select(postings, journal_entries.c.kind, journal_entries.c.reference, journal_entries.c.time_ms)
        .join(journal_entries, journal_entries.c.seq == postings.c.entry_seq)
        .where(postings.c.account_id == account_id, postings.c.posting_id > after)
        .order_by(postings.c.posting_id)
        .limit(limit)
    )
    return [
        StatementLine(
            posting_id=row.posting_id,
            entry_seq=row.entry_seq,
            kind=row.kind,
            reference=row.reference,
            time_s=row.time_ms // 1000,
            bucket=row.bucket,
            amount_minor=int(row.amount_minor),
        )
        for row in conn.execute(query)
    ]


def ensure_admin_credential(tx: WriteTx, *, key_hash: str, credential_id: str) -> bool:
    """Install an admin credential for `key_hash` unless one exists; True if it was added (bootstrap)."""
    if tx.conn.execute(select(credentials.c.credential_id).where(credentials.c.key_hash == key_hash)).first():
        return False
    create_credential(
        tx, credential_id=credential_id, key_hash=key_hash, role=Role.ADMIN, participant_id=None
    )
    return True
