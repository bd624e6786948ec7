"""JSON forms of report items and complete reports, as peers and the HTTP API exchange them.

Bytes travel as 0x-prefixed lowercase hex. Parsing rejects anything malformed with
PeerMessageRejected(reason="malformed") so a peer cannot crash a handler with odd JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crossdvp.oracle.errors import PeerMessageRejected
from crossdvp.oracle.ports import SignedReport
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import ReportItem, decode_report
from crossdvp.settlement.terms import Decision

__all__ = ["hex_to_bytes", "items_from_wire", "items_to_wire", "report_from_wire", "report_to_wire"]


def hex_to_bytes(value: object, what: str, length: int | None = None) -> bytes:
    """0x hex to bytes. Rejects a non-string, missing 0x, odd or non-hex digits, a wrong length."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise PeerMessageRejected(f"{what} must be 0x-prefixed hex", reason="malformed")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise PeerMessageRejected(f"{what} is not hex", reason="malformed") from exc
    if length is not None and len(raw) != length:
        raise PeerMessageRejected(f"{what} must be {length} bytes, got {len(raw)}", reason="malformed")
    return raw


def items_to_wire(items: Sequence[ReportItem]) -> list[dict[str, Any]]:
    return [
        {
            "settlement_id": "0x" + i.settlement_id.hex(),
            "terms_hash": "0x" + i.terms_hash.hex(),
            "decision": int(i.decision),
        }
        for i in items
    ]


def items_from_wire(value: object) -> tuple[ReportItem, ...]:
    """Rejects a non-list, an empty list, a bad field, a decision other than SETTLE/ABORT, duplicates."""
    if not isinstance(value, list) or not value:
        raise PeerMessageRejected("items must be a non-empty list", reason="malformed")
    items: list[ReportItem] = []
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise PeerMessageRejected(f"items[{n}] must be an object", reason="malformed")
        decision = entry.get("decision")
        if decision not in (int(Decision.SETTLE), int(Decision.ABORT)) or isinstance(decision, bool):
            raise PeerMessageRejected(f"items[{n}].decision must be 1 or 2", reason="malformed")
        try:
            items.append(
                ReportItem(
                    settlement_id=hex_to_bytes(entry.get("settlement_id"), f"items[{n}].settlement_id", 32),
                    terms_hash=hex_to_bytes(entry.get("terms_hash"), f"items[{n}].terms_hash", 32),
                    decision=Decision(decision),
                )
            )
        except SettlementError as exc:
            raise PeerMessageRejected(f"items[{n}]: {exc}", reason="malformed") from exc
    if len({i.settlement_id for i in items}) != len(items):
        raise PeerMessageRejected("items name a settlement twice", reason="malformed")
    return tuple(items)


def report_to_wire(report: SignedReport) -> dict[str, Any]:
    return {
        "raw": "0x" + report.raw.hex(),
        "context": "0x" + report.context.hex(),
        "signatures": ["0x" + s.hex() for s in report.signatures],
    }


def report_from_wire(value: object) -> SignedReport:
    """Parse (not verify) a complete report. Rejects malformed hex or a report that does not decode."""
    if not isinstance(value, dict):
        raise PeerMessageRejected("a report must be an object", reason="malformed")
    raw = hex_to_bytes(value.get("raw"), "report.raw")
    context = hex_to_bytes(value.get("context"), "report.context")
    sigs = value.get("signatures")
    if not isinstance(sigs, list) or len(sigs) > 64:
        raise PeerMessageRejected("report.signatures must be a list", reason="malformed")
    signatures = tuple(hex_to_bytes(s, f"report.signatures[{n}]") for n, s in enumerate(sigs))
    try:
        metadata, items = decode_report(raw)
    except SettlementError as exc:
        raise PeerMessageRejected(f"report does not decode: {exc}", reason="malformed") from exc
    return SignedReport(
        raw=raw,
        context=context,
        signatures=signatures,
        workflow_execution_id=metadata.workflow_execution_id,
        items=items,
    )
