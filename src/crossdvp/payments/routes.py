"""The /v1 routes for participants, credentials, accounts and money movement. Each handler checks
the role (dependency), validates (pydantic), and calls one ledger operation in one transaction;
blocking database work runs in FastAPI's threadpool (sync handlers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from crossdvp.payments import ledger
from crossdvp.payments._deps import (
    AUTH_PROBLEMS,
    Admin,
    AdminOrParticipant,
    IdempotencyKey,
    Limit,
    ServiceDep,
    problems,
    reject_unknown_query,
    request_identity,
)
from crossdvp.payments.auth import Role, generate_key, hash_key, new_credential_id
from crossdvp.payments.schemas import (
    ID_PATTERN,
    AccountIn,
    AccountOut,
    AccountPage,
    CashIn,
    CredentialIn,
    CredentialOut,
    FreezeIn,
    InfoOut,
    ParticipantIn,
    ParticipantOut,
    PaymentIn,
    StatementLineOut,
    StatementPage,
    TransferOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", dependencies=[Depends(reject_unknown_query)])

AccountIdPath = Annotated[str, Path(pattern=ID_PATTERN)]


def _account_out(a: ledger.Account) -> AccountOut:
    return AccountOut(
        account_id=a.account_id,
        participant_id=a.participant_id,
        currency=a.currency,
        frozen=a.frozen,
        available_minor=a.available_minor,
        held_minor=a.held_minor,
        created_at_s=a.created_at_s,
    )


def _transfer_out(t: ledger.Transfer) -> TransferOut:
    return TransferOut(
        entry_seq=t.entry_seq,
        kind=t.kind,  # cash_in | cash_out | payment by construction
        from_account=t.from_account,
        to_account=t.to_account,
        currency=t.currency,
        amount_minor=t.amount_minor,
        reference=t.reference,
        time_s=t.time_s,
    )


@router.get("/info", response_model=InfoOut, tags=["ledger"])
def info(service: ServiceDep) -> InfoOut:
    """The ledger's identity and clock (no authentication): `network` is `payments:<ledger_id>`."""
    settings = service.settings
    return InfoOut(
        ledger_id=settings.ledger_id,
        network=settings.network,
        time_s=service.store.clock.now_ms() // 1000,
        grace_s=settings.grace_s,
    )


# --- participants, credentials, accounts -------------------------------------------------------


@router.post(
    "/participants",
    status_code=201,
    response_model=ParticipantOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 409),
)
def create_participant(
    body: ParticipantIn, request: Request, service: ServiceDep, principal: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Onboard an institution (admin). 409 already-exists if the id is taken."""

    def op(tx: Any) -> ParticipantOut:
        p = ledger.create_participant(tx, body.participant_id, body.name)
        return ParticipantOut(participant_id=p.participant_id, name=p.name, created_at_s=p.created_at_s)

    return service.mutate(principal, key, request_identity(request, body.model_dump()), 201, op)


@router.get(
    "/participants/{participant_id}",
    response_model=ParticipantOut,
    tags=["participants"],
    responses=problems(*AUTH_PROBLEMS, 404),
)
def get_participant(
    participant_id: Annotated[str, Path(pattern=ID_PATTERN)],
    service: ServiceDep,
    principal: AdminOrParticipant,
) -> ParticipantOut:
    """A participant (admin, or the participant itself; others get 404)."""
    with service.store.read() as conn:
        p = ledger.get_participant(conn, principal, participant_id)
    return ParticipantOut(participant_id=p.participant_id, name=p.name, created_at_s=p.created_at_s)


@router.post(
    "/credentials",
    status_code=201,
    response_model=CredentialOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 409),
)
def create_credential(
    body: CredentialIn, request: Request, service: ServiceDep, principal: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Issue an API key (admin). The key is in this response only; the ledger keeps its sha256.
    Rejects (422): participant role without a known participant_id; other roles with one."""
    api_key = generate_key()

    def op(tx: Any) -> CredentialOut:
        c = ledger.create_credential(
            tx,
            credential_id=new_credential_id(),
            key_hash=hash_key(api_key),
            role=Role(body.role),
            participant_id=body.participant_id,
        )
        return CredentialOut(
            credential_id=c.credential_id,
            role=c.role.value,
            participant_id=c.participant_id,
            created_at_s=c.created_at_s,
            api_key=api_key,
        )

    return service.mutate(principal, key, request_identity(request, body.model_dump()), 201, op)


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 409),
)
def open_account(
    body: AccountIn, request: Request, service: ServiceDep, principal: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Open a deposit account for a participant in one currency (admin)."""

    def op(tx: Any) -> AccountOut:
        return _account_out(
            ledger.open_account(
                tx, account_id=body.account_id, participant_id=body.participant_id, currency=body.currency
            )
        )

    return service.mutate(principal, key, request_identity(request, body.model_dump()), 201, op)


@router.get("/accounts", response_model=AccountPage, tags=["accounts"], responses=problems(*AUTH_PROBLEMS))
def list_accounts(
    service: ServiceDep,
    principal: AdminOrParticipant,
    participant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 100,
) -> AccountPage:
    """Accounts by id (a participant sees only its own). Page with `after` = the previous `next_after`."""
    with service.store.read() as conn:
        items = ledger.list_accounts(conn, principal, participant_id=participant_id, after=after, limit=limit)
    return AccountPage(
        items=[_account_out(a) for a in items],
        next_after=items[-1].account_id if len(items) == limit else None,
    )


@router.get(
    "/accounts/{account_id}",
    response_model=AccountOut,
    tags=["accounts"],
    responses=problems(*AUTH_PROBLEMS, 404),
)
def get_account(account_id: AccountIdPath, service: ServiceDep, principal: AdminOrParticipant) -> AccountOut:
    """Balances of one account: `available_minor` and `held_minor`."""
    with service.store.read() as conn:
        return _account_out(ledger.get_account(conn, principal, account_id))


@router.get(
    "/accounts/{account_id}/statement",
    response_model=StatementPage,
    tags=["accounts"],
    responses=problems(*AUTH_PROBLEMS, 404),
)
def get_statement(
    account_id: AccountIdPath,
    service: ServiceDep,
    principal: AdminOrParticipant,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Limit = 100,
) -> StatementPage:
    """Postings of the account in order (both buckets), paginated by posting id."""
    with service.store.read() as conn:
        lines = ledger.statement(conn, principal, account_id, after=after, limit=limit)
    return StatementPage(
        items=[
            StatementLineOut(
                posting_id=line.posting_id,
                entry_seq=line.entry_seq,
                kind=line.kind,
                reference=line.reference,
                time_s=line.time_s,
                bucket=line.bucket,  # available | held by construction
                amount_minor=line.amount_minor,
            )
            for line in lines
        ],
        next_after=lines[-1].posting_id if len(lines) == limit else None,
    )


@router.post(
    "/accounts/{account_id}/freeze",
    response_model=AccountOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def freeze_account(
    account_id: AccountIdPath,
    body: FreezeIn,
    request: Request,
    service: ServiceDep,
    principal: Admin,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Freeze (`{"frozen": true}`) or unfreeze an account (admin)."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        200,
        lambda tx: _account_out(ledger.set_frozen(tx, account_id, body.frozen)),
    )


# --- money movement ----------------------------------------------------------------------------


@router.post(
    "/cash-in",
    status_code=201,
    response_model=TransferOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def cash_in(
    body: CashIn, request: Request, service: ServiceDep, principal: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Credit an account from the external rail of its currency (admin)."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        201,
        lambda tx: _transfer_out(
            ledger.cash_in(
                tx, account_id=body.account_id, amount_minor=body.amount_minor, reference=body.reference
            )
        ),
    )


@router.post(
    "/cash-out",
    status_code=201,
    response_model=TransferOut,
    tags=["admin"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def cash_out(
    body: CashIn, request: Request, service: ServiceDep, principal: Admin, key: IdempotencyKey = None
) -> JSONResponse:
    """Debit an account to the external rail of its currency (admin)."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        201,
        lambda tx: _transfer_out(
            ledger.cash_out(
                tx, account_id=body.account_id, amount_minor=body.amount_minor, reference=body.reference
            )
        ),
    )


@router.post(
    "/payments",
    status_code=201,
    response_model=TransferOut,
    tags=["payments"],
    responses=problems(*AUTH_PROBLEMS, 404, 409),
)
def pay(
    body: PaymentIn,
    request: Request,
    service: ServiceDep,
    principal: AdminOrParticipant,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """An immediate payment from one of the caller's accounts to any account of the same currency."""
    return service.mutate(
        principal,
        key,
        request_identity(request, body.model_dump()),
        201,
        lambda tx: _transfer_out(
            ledger.pay(
                tx,
                principal,
                from_account=body.from_account,
                to_account=body.to_account,
                currency=body.currency,
                amount_minor=body.amount_minor,
                reference=body.reference,
            )
        ),
    )
