"""Initial ledger schema: head, participants, credentials, accounts, journal, holds, events,
DON configs, reports, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_entry_hash", sa.String(66), nullable=False),
        sa.Column("last_event_cursor", sa.BigInteger(), nullable=False),
        sa.Column("last_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("watermark_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "participants",
        sa.Column("participant_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "credentials",
        sa.Column("credential_id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "participant_id", sa.String(64), sa.ForeignKey("participants.participant_id"), nullable=True
        ),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(80), primary_key=True),
        sa.Column(
            "participant_id", sa.String(64), sa.ForeignKey("participants.participant_id"), nullable=True
        ),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("available_minor", sa.BigInteger(), nullable=False),
        sa.Column("held_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_accounts_participant", "accounts", ["participant_id"])
    op.create_table(
        "journal_entries",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("prev_hash", sa.String(66), nullable=False),
        sa.Column("entry_hash", sa.String(66), nullable=False),
    )
    op.create_table(
        "postings",
        sa.Column("posting_id", _AutoId, primary_key=True, autoincrement=True),
        sa.Column("entry_seq", sa.BigInteger(), sa.ForeignKey("journal_entries.seq"), nullable=False),
        sa.Column("account_id", sa.String(80), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("bucket", sa.String(10), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_postings_account", "postings", ["account_id", "posting_id"])
    op.create_index("ix_postings_entry", "postings", ["entry_seq"])
    op.create_table(
        "holds",
        sa.Column("hold_id", sa.String(80), primary_key=True),
        sa.Column("settlement_id", sa.String(66), nullable=False),
        sa.Column("leg_index", sa.Integer(), nullable=False),
        sa.Column("terms_hash", sa.String(66), nullable=False),
        sa.Column("payer_account", sa.String(80), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("payee_account", sa.String(80), sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("deadline_s", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("placed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("final_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("workflow_execution_id", sa.String(66), nullable=True),
        sa.UniqueConstraint("settlement_id", "leg_index", name="uq_holds_settlement_leg"),
    )
    op.create_index("ix_holds_payer", "holds", ["payer_account"])
    op.create_index("ix_holds_payee", "holds", ["payee_account"])
    op.create_table(
        "events",
        sa.Column("cursor", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", sa.String(80), sa.ForeignKey("holds.hold_id"), nullable=False),
        sa.Column("workflow_execution_id", sa.String(66), nullable=True),
    )
    op.create_table(
        "don_configs",
        sa.Column("don_id", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.BigInteger(), nullable=False),
        sa.Column("f", sa.Integer(), nullable=False),
        sa.Column("signers", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("set_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("don_id", "config_version", name="pk_don_configs"),
    )
    op.create_table(
        "reports",
        sa.Column("workflow_execution_id", sa.String(66), primary_key=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("signatures", sa.Text(), nullable=False),
        sa.Column("don_id", sa.BigInteger(), nullable=False),
        sa.Column("config_version", sa.BigInteger(), nullable=False),
        sa.Column("applied_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("credential_id", sa.String(40), nullable=False),
        sa.Column("idem_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("credential_id", "idem_key", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "reports",
        "don_configs",
        "events",
        "holds",
        "postings",
        "journal_entries",
        "accounts",
        "credentials",
        "participants",
        "ledger_head",
    ):
        op.drop_table(table)
