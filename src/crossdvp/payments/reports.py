"""Oracle reports on this ledger: DON configs (set by the admin, versioned like the forwarder's) and
the verification and application of a signed Keystone-format report.

A report authenticates itself: exactly f+1 distinct signers of the DON config its metadata names,
over the derived context. Verification (signature recovery, the expensive part) runs before the
write transaction; application runs in ONE serialized transaction: every item is applied or skipped
with a recorded reason (one bad item never fails the batch), and the report is stored under its
workflow execution id, which makes a second delivery return the first outcome and change nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from crossdvp.payments import ledger
from crossdvp.payments.errors import NotFound, Unprocessable
from crossdvp.payments.models import don_configs, reports
from crossdvp.payments.store import Store, WriteTx
from crossdvp.settlement.errors import (
    DuplicateSigner,
    InvalidDonConfig,
    MalformedReport,
    MalformedSignature,
    ReportVerificationError,
    UnknownSigner,
    WrongDonConfig,
    WrongSignatureCount,
)
from crossdvp.settlement.report import DonConfig, ReportItem, ReportMetadata, decode_report, verify_report
from crossdvp.settlement.terms import Decision

__all__ = [
    "StoredDonConfig",
    "clear_don_config",
    "get_report",
    "list_don_configs",
    "load_don_config",
    "put_don_config",
    "submit_report",
]

_VERIFICATION_CODES: dict[type[ReportVerificationError], str] = {
    WrongSignatureCount: "wrong-signature-count",
    MalformedSignature: "malformed-signature",
    UnknownSigner: "unknown-signer",
    DuplicateSigner: "duplicate-signer",
    WrongDonConfig: "wrong-don-config",
}


@dataclass(frozen=True, slots=True)
class StoredDonConfig:
    config: DonConfig
    active: bool
    set_at_s: int


def put_don_config(
    tx: WriteTx, don_id: int, config_version: int, f: int, signers: list[str]
) -> StoredDonConfig:
    """Set (or overwrite, as the forwarder's setConfig does) a DON config and make it active.

    Rejects (422 invalid-don-config, naming the field): f not in 1..255; fewer than 3f+1 or more than
    31 signers; a signer not an address, the zero address, or repeated; ids not uint32."""
    try:
        config = DonConfig(don_id=don_id, config_version=config_version, f=f, signers=tuple(signers))
    except InvalidDonConfig as exc:
        message = str(exc)
        field = "signers" if "signer" in message else ("f" if message.startswith("f ") else None)
        raise Unprocessable("invalid-don-config", message, field=field) from exc
    values = {"f": f, "signers": json.dumps(list(config.signers)), "active": True, "set_at_ms": tx.now_ms}
    key = (don_configs.c.don_id == don_id) & (don_configs.c.config_version == config_version)
    if tx.conn.execute(select(don_configs.c.don_id).where(key)).first():
        tx.conn.execute(update(don_configs).where(key).values(values))
    else:
        tx.conn.execute(insert(don_configs).values(don_id=don_id, config_version=config_version, **values))
    return StoredDonConfig(config, True, tx.now_s)


def clear_don_config(tx: WriteTx, don_id: int, config_version: int) -> StoredDonConfig:
    """Deactivate a config: reports naming it are refused from now on. Rejects: unknown config (404)."""
    stored = load_don_config(tx.conn, don_id, config_version, active_only=False)
    if stored is None:
        raise NotFound(
            "don-config-not-found", f"no DON config {don_id} version {config_version}", field="config_version"
        )
    key = (don_configs.c.don_id == don_id) & (don_configs.c.config_version == config_version)
    tx.conn.execute(update(don_configs).where(key).values(active=False, set_at_ms=tx.now_ms))
    return StoredDonConfig(stored.config, False, tx.now_s)


def load_don_config(
    conn: Connection, don_id: int, config_version: int, *, active_only: bool = True
) -> StoredDonConfig | None:
    row = conn.execute(
        select(don_configs).where(
            don_configs.c.don_id == don_id, don_configs.c.config_version == config_version
        )
    ).first()
    if row is None or (active_only and not row.active):
        return None
    config = DonConfig(
        don_id=int(row.don_id),
        config_version=int(row.config_version),
        f=row.f,
        signers=tuple(json.loads(row.signers)),
    )
    return StoredDonConfig(config, bool(row.active), row.set_at_ms // 1000)


def list_don_configs(conn: Connection) -> list[StoredDonConfig]:
    rows = conn.execute(
        select(don_configs.c.don_id, don_configs.c.config_version).order_by(
            don_configs.c.don_id, don_configs.c.config_version
        )
    ).all()
    found = [load_don_config(conn, int(r.don_id), int(r.config_version), active_only=False) for r in rows]
    return [s for s in found if s is not None]


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _decode(raw: bytes) -> tuple[ReportMetadata, tuple[ReportItem, ...]]:
    try:
        return decode_report(raw)
    except MalformedReport as exc:
        raise Unprocessable("malformed-report", f"the report does not decode: {exc}", field="report") from exc


def _verify(raw: bytes, context: bytes, signatures: list[bytes], don: DonConfig) -> tuple[str, ...]:
    try:
        return verify_report(raw, context, signatures, don)
    except ReportVerificationError as exc:
        code = _VERIFICATION_CODES.get(type(exc), "report-verification-failed")
        field = "context" if code == "wrong-don-config" and "context" in str(exc) else "signatures"
        raise Unprocessable(code, str(exc), field=field) from exc
    except MalformedReport as exc:
        raise Unprocessable("malformed-report", str(exc), field="report") from exc


def _apply_items(tx: WriteTx, items: Sequence[ReportItem], execution_id: str) -> list[dict[str, Any]]:
    """Apply each decision to every hold of its settlement on this ledger, or skip it with a reason.

    The holds of every item are read in one query and finalized together, in item order (a report
    names each settlement at most once: `decode_report` refuses one that repeats it).
    """
    ids = sorted({_hex(item.settlement_id) for item in items})
    by_settlement: dict[str, list[Any]] = defaultdict(list)
    for row in ledger.hold_rows_for_settlements(tx.conn, ids):
        by_settlement[row.settlement_id].append(row)
    finals: list[tuple[Any, str]] = []
    outcomes = []
    for item in items:
        settlement_id = _hex(item.settlement_id)
        terms_hash = _hex(item.terms_hash)
        outcome: dict[str, Any] = {
            "settlement_id": settlement_id,
            "terms_hash": terms_hash,
            "decision": "settle" if item.decision is Decision.SETTLE else "abort",
            "outcome": "skipped",
            "reason": None,
            "holds": [],
        }
        outcomes.append(outcome)
        rows = by_settlement.get(settlement_id, [])
        if not rows:
            outcome["reason"] = "unknown-settlement"
            continue
        applied = False
        reasons: list[str] = []
        for row in rows:
            entry: dict[str, Any] = {"hold_id": row.hold_id, "leg_index": row.leg_index}
            if row.terms_hash != terms_hash:
                entry.update(outcome="skipped", reason="terms-hash-mismatch")
            elif row.state != "held":
                entry.update(outcome="skipped", reason="already-final")
            else:
                state = "settled" if item.decision is Decision.SETTLE else "released"
                finals.append((row, state))
                entry.update(outcome=state, reason=None)
                applied = True
            if entry["reason"]:
                reasons.append(entry["reason"])
            outcome["holds"].append(entry)
        if applied:
            outcome["outcome"] = "applied"
        else:
            outcome["reason"] = reasons[0]
    ledger.finalize_holds(tx, finals, execution_id)
    return outcomes


def submit_report(
    store: Store,
    raw: bytes,
    context: bytes,
    signatures: list[bytes],
    *,
    remember: Callable[[WriteTx, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Verify and apply a report; returns its stored record (the same for every later delivery).
    `remember(tx, record)` runs in the same transaction, on the first delivery and on every later one
    (the route records its Idempotency-Key there, so a report costs one write transaction).

    Rejects (422, `field` names report/context/signatures): malformed-report (not Keystone layout,
    bad payload, execution id not keccak256(payload)); unknown-don-config (the metadata's DON config
    is not set, or was cleared); wrong-signature-count (not exactly f+1); malformed-signature;
    unknown-signer (also what a tampered report or context yields); duplicate-signer;
    wrong-don-config (context not derived from the config). Items that do not apply are skipped
    with reasons unknown-settlement / already-final / terms-hash-mismatch, never failing the batch.
    """
    metadata, items = _decode(raw)
    with store.read() as conn:
        stored = load_don_config(conn, metadata.don_id, metadata.don_config_version)
    if stored is None:
        raise Unprocessable(
            "unknown-don-config",
            f"no active DON config {metadata.don_id} version {metadata.don_config_version} on this ledger",
            field="report",
            extra={"don_id": metadata.don_id, "config_version": metadata.don_config_version},
        )
    signers = _verify(raw, context, signatures, stored.config)
    execution_id = _hex(metadata.workflow_execution_id)
    with store.write() as tx:
        existing = tx.conn.execute(
            select(reports).where(reports.c.workflow_execution_id == execution_id)
        ).first()
        if existing is not None:
            record = _record(existing._mapping)
            if remember is not None:
                remember(tx, record)
            return record
        current = load_don_config(tx.conn, metadata.don_id, metadata.don_config_version)
        if current is None or current.config != stored.config:
            raise Unprocessable(
                "unknown-don-config",
                f"DON config {metadata.don_id} version {metadata.don_config_version} changed meanwhile; "
                "retry",
                field="report",
            )
        outcome = {
            "don_id": metadata.don_id,
            "config_version": metadata.don_config_version,
            "signers": list(signers),
            "items": _apply_items(tx, items, execution_id),
        }
        row = {
            "workflow_execution_id": execution_id,
            "raw": _hex(raw),
            "context": _hex(context),
            "signatures": json.dumps([_hex(s) for s in signatures]),
            "don_id": metadata.don_id,
            "config_version": metadata.don_config_version,
            "applied_at_ms": tx.now_ms,
            "outcome": json.dumps(outcome),
        }
        tx.conn.execute(insert(reports).values(row))
        # The record from the row just written, not read back (test_settle_moves_held_funds_to_payee
        # compares it with what `GET /v1/reports/{id}` reads).
        record = _record(row)
        if remember is not None:
            remember(tx, record)
        return record


def _record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A report's record from its row's columns."""
    outcome = json.loads(row["outcome"])
    return {
        "workflow_execution_id": row["workflow_execution_id"],
        "report": row["raw"],
        "context": row["context"],
        "signatures": json.loads(row["signatures"]),
        "don_id": int(row["don_id"]),
        "config_version": int(row["config_version"]),
        "signers": outcome["signers"],
        "applied_at_s": row["applied_at_ms"] // 1000,
        "items": outcome["items"],
    }


def get_report(conn: Connection, execution_id: str) -> dict[str, Any]:
    """A stored report. Rejects: unknown execution id (404)."""
    row = conn.execute(select(reports).where(reports.c.workflow_execution_id == execution_id.lower())).first()
    if row is None:
        raise NotFound("report-not-found", f"no report {execution_id}", field="workflow_execution_id")
    return _record(row._mapping)
