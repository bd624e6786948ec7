"""The ledger's tables (SQLAlchemy Core). The Alembic migrations in `migrations/` create exactly these.

Money is BIGINT minor units. Balances are *derived* from postings; `accounts.available_minor` and
`accounts.held_minor` are a cache written in the same transaction as the postings and checked by
`verify-journal`. Every account has two buckets, `available` and `held`: placing a hold posts
-amount to the payer's available bucket and +amount to its held bucket, so each journal entry still
sums to zero per currency and "held" is checkable like any balance.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "accounts",
    "credentials",
    "don_configs",
    "events",
    "holds",
    "idempotency_keys",
    "journal_entries",
    "ledger_head",
    "metadata",
    "participants",
    "postings",
    "reports",
]

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_AutoId = BigInteger().with_variant(Integer(), "sqlite")

# One row (id = 1). Every write transaction locks it first: that serializes journal appends (the
# hash chain needs a single predecessor), event cursors, and the clock watermark on PostgreSQL as
# BEGIN IMMEDIATE does on SQLite.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_entry_seq", BigInteger, nullable=False),
    Column("last_entry_hash", String(66), nullable=False),
    Column("last_event_cursor", BigInteger, nullable=False),
    Column("last_time_ms", BigInteger, nullable=False),
    Column("watermark_ms", BigInteger, nullable=False),
)

participants = Table(
    "participants",
    metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

credentials = Table(
    "credentials",
    metadata,
    Column("credential_id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("participant_id", String(64), ForeignKey("participants.participant_id"), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(80), primary_key=True),
    Column("participant_id", String(64), ForeignKey("participants.participant_id"), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),  # "deposit" | "rail"
    Column("frozen", Boolean, nullable=False, default=False),
    Column("available_minor", BigInteger, nullable=False, default=0),
    Column("held_minor", BigInteger, nullable=False, default=0),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_accounts_participant", "participant_id"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(24), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("reference", String(200), nullable=False),
    Column("prev_hash", String(66), nullable=False),
    Column("entry_hash", String(66), nullable=False),
)

postings = Table(
    "postings",
    metadata,
    Column("posting_id", _AutoId, primary_key=True, autoincrement=True),
    Column("entry_seq", BigInteger, ForeignKey("journal_entries.seq"), nullable=False),
    Column("account_id", String(80), ForeignKey("accounts.account_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("bucket", String(10), nullable=False),  # "available" | "held"
    Column("amount_minor", BigInteger, nullable=False),
    Index("ix_postings_account", "account_id", "posting_id"),
    Index("ix_postings_entry", "entry_seq"),
)

holds = Table(
    "holds",
    metadata,
    Column("hold_id", String(80), primary_key=True),
    Column("settlement_id", String(66), nullable=False),
    Column("leg_index", Integer, nullable=False),
    Column("terms_hash", String(66), nullable=False),
    Column("payer_account", String(80), ForeignKey("accounts.account_id"), nullable=False),
    Column("payee_account", String(80), ForeignKey("accounts.account_id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("deadline_s", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # held | settled | released | reclaimed
    Column("placed_at_ms", BigInteger, nullable=False),
    Column("final_at_ms", BigInteger, nullable=True),
    Column("workflow_execution_id", String(66), nullable=True),
    UniqueConstraint("settlement_id", "leg_index", name="uq_holds_settlement_leg"),
    Index("ix_holds_payer", "payer_account"),
    Index("ix_holds_payee", "payee_account"),
)

events = Table(
    "events",
    metadata,
    Column("cursor", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(20), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("hold_id", String(80), ForeignKey("holds.hold_id"), nullable=False),
    Column("workflow_execution_id", String(66), nullable=True),
)

don_configs = Table(
    "don_configs",
    metadata,
    Column("don_id", BigInteger, nullable=False),
    Column("config_version", BigInteger, nullable=False),
    Column("f", Integer, nullable=False),
    Column("signers", Text, nullable=False),  # JSON list of lowercase addresses
    Column("active", Boolean, nullable=False),
    Column("set_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("don_id", "config_version", name="pk_don_configs"),
)

reports = Table(
    "reports",
    metadata,
    Column("workflow_execution_id", String(66), primary_key=True),
    Column("raw", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("signatures", Text, nullable=False),  # JSON list of 0x hex
    Column("don_id", BigInteger, nullable=False),
    Column("config_version", BigInteger, nullable=False),
    Column("applied_at_ms", BigInteger, nullable=False),
    Column("outcome", Text, nullable=False),  # JSON: the per-item outcome returned to the submitter
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("credential_id", String(40), nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("credential_id", "idem_key", name="pk_idempotency_keys"),
)
