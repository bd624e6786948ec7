"""API credentials: random keys shown once, stored only as sha256 hashes, each with one role.

Roles:
- `admin`: onboards participants, opens/freezes accounts, cash in/out, sets DON configs, reads all.
- `participant`: bound to one participant; sees and moves only that participant's accounts.
- `oracle`: reads holds and the event feed (the oracle nodes).
Any authenticated role may submit a report: a report authenticates itself by its f+1 signatures.

The keys have 256 bits of entropy, so a plain sha256 (no salt, no stretching) is enough: there is
nothing to brute-force, and a hash lookup keeps authentication at one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, select

from crossdvp.payments.models import credentials

__all__ = ["KEY_PREFIX", "Principal", "Role", "authenticate", "generate_key", "hash_key"]

KEY_PREFIX = "cdp_"


class Role(StrEnum):
    ADMIN = "admin"
    PARTICIPANT = "participant"
    ORACLE = "oracle"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the credential id scopes idempotency keys; `participant_id` is set for participants."""

    credential_id: str
    role: Role
    participant_id: str | None


def generate_key() -> str:
    """A new API key: `cdp_` + 43 url-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_credential_id() -> str:
    return "cred_" + secrets.token_hex(8)


def authenticate(conn: Connection, api_key: str) -> Principal | None:
    """The principal owning `api_key`, or None if the key is unknown or revoked."""
    row = conn.execute(
        select(credentials).where(
            credentials.c.key_hash == hash_key(api_key), credentials.c.revoked.is_(False)
        )
    ).first()
    if row is None:
        return None
    return Principal(credential_id=row.credential_id, role=Role(row.role), participant_id=row.participant_id)
