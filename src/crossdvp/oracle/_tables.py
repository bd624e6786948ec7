"""The node store's tables (SQLAlchemy Core). Created with metadata.create_all: the node's schema
is its own and versioned with the node, unlike the payment ledger's migrated database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "LOCK_FACT_COLUMNS",
    "decisions_table",
    "deliveries_table",
    "locks_table",
    "metadata",
    "networks_table",
    "outbox_table",
    "report_items_table",
    "reports_table",
    "signatures_table",
    "terms_table",
]

metadata = MetaData()

terms_table = Table(
    "terms",
    metadata,
    Column("settlement_id", String(66), primary_key=True),
    Column("terms_json", Text, nullable=False),
    Column("terms_hash", String(66), nullable=False),
    Column("deadline_s", BigInteger, nullable=False),
    Column("registered_ms", BigInteger, nullable=False),
)

# The columns that identify one observed lock: the same fact seen again is not a new lock.
LOCK_FACT_COLUMNS = (
    "network",
    "settlement_id",
    "leg_index",
    "terms_hash",
    "asset",
    "amount_minor",
    "payer",
    "payee",
    "deadline_s",
    "locked_at_s",
)

locks_table = Table(
    "locks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("network", String(140), nullable=False),
    Column("settlement_id", String(66), nullable=False, index=True),
    Column("leg_index", Integer, nullable=False),
    Column("terms_hash", String(66), nullable=False),
    Column("asset", String(200), nullable=False),
    Column("amount_minor", String(80), nullable=False),  # decimal text: amounts exceed SQLite's int64
    Column("payer", String(200), nullable=False),
    Column("payee", String(200), nullable=False),
    Column("deadline_s", String(80), nullable=False),
    Column("locked_at_s", BigInteger, nullable=False),
    UniqueConstraint(*LOCK_FACT_COLUMNS, name="uq_lock_fact"),
)

networks_table = Table(
    "network_state",
    metadata,
    Column("network", String(140), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("final_time_s", BigInteger, nullable=False),
    Column("last_poll_ms", BigInteger, nullable=False),
)

decisions_table = Table(
    "decisions",
    metadata,
    Column("settlement_id", String(66), primary_key=True),
    Column("decision", Integer, nullable=False),
    Column("decided_at_s", BigInteger, nullable=False),
    Column("terms_hash", String(66), nullable=False),
    Column("reason", Text, nullable=False),
    Column("recorded_ms", BigInteger, nullable=False),
)

signatures_table = Table(
    "signatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("execution_id", String(66), nullable=False, index=True),
    Column("settlement_id", String(66), nullable=False, index=True),
    Column("decision", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("signed_ms", BigInteger, nullable=False),
)

reports_table = Table(
    "reports",
    metadata,
    Column("execution_id", String(66), primary_key=True),
    Column("raw", LargeBinary, nullable=False),
    Column("context", LargeBinary, nullable=False),
    Column("signatures_json", Text, nullable=False),
    Column("signers_json", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
)

report_items_table = Table(
    "report_items",
    metadata,
    Column("execution_id", String(66), primary_key=True),
    Column("settlement_id", String(66), primary_key=True, index=True),
    Column("terms_hash", String(66), nullable=False),
    Column("decision", Integer, nullable=False),
)

deliveries_table = Table(
    "deliveries",
    metadata,
    Column("execution_id", String(66), primary_key=True),
    Column("network", String(140), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("reference", Text, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_check_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

outbox_table = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("body_json", Text, nullable=False),
    Column("acked", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_ms", BigInteger, nullable=False),
    # A (member, kind) queue in order, with what `due_outbox` filters on: a queue's first due messages
    # are read from the index alone.
    Index("ix_outbox_queue", "member", "kind", "id", "acked", "next_attempt_ms"),
)
