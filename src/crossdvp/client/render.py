"""Rich renderings of a settlement for people: the live progress panel, the evidence of an outcome,
and balances before/after. Used by `crossdvp settle`, `crossdvp status` and the demo."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from crossdvp.client.amounts import currency_decimals, format_amount
from crossdvp.client.status import Balances, SettlementOutcome, SettlementStatus, Stage

__all__ = ["balances_table", "evidence_table", "progress_panel", "short"]

_STAGES = (Stage.REGISTERED, Stage.LOCKED, Stage.DECIDED, Stage.DELIVERED, Stage.FINAL)


def short(value: str | None, keep: int = 10) -> str:
    """0x1234…abcd for long hex values; '-' for None."""
    if not value:
        return "-"
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-6:]}"


def _amount(leg_asset: str, amount: int, token_decimals: int, token_symbol: str, chain: bool) -> str:
    if chain:
        return f"{format_amount(amount, token_decimals)} {token_symbol}"
    return f"{format_amount(amount, currency_decimals(leg_asset))} {leg_asset}"


def progress_panel(status: SettlementStatus, *, token_decimals: int, token_symbol: str) -> RenderableType:
    """Stage line (registered → locked → decided → delivered → final) and one row per leg."""
    current = _STAGES.index(status.stage) if status.stage in _STAGES else -1
    stages = Text()
    for i, stage in enumerate(_STAGES):
        style = "bold green" if i <= current else "dim"
        stages.append(("✔ " if i <= current else "· ") + stage.value, style=style)
        if i < len(_STAGES) - 1:
            stages.append("  →  ", style="dim")
    table = Table(box=None, pad_edge=False)
    for column in ("leg", "network", "amount", "state", "lock", "delivered"):
        table.add_column(column)
    for leg in status.legs:
        table.add_row(
            str(leg.index),
            leg.network,
            _amount(leg.asset, leg.amount_minor, token_decimals, token_symbol, leg.kind == "chain"),
            leg.state,
            short(leg.lock_ref, 14),
            "yes" if leg.delivered else "no",
        )
    decision = status.decision.name if status.decision is not None else "pending"
    header = Text(
        f"settlement {short(status.settlement_hex)}  decision: {decision}  "
        f"nodes: {status.nodes_knowing} know it, {status.nodes_answering} answering"
    )
    return Group(header, stages, table)


def evidence_table(status: SettlementStatus) -> Table:
    """The evidence of an outcome, each row checkable on its own ledger."""
    table = Table(title="evidence", show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")  # hashes in full: evidence is meant to be copied
    table.add_row("settlement id", status.settlement_hex)
    table.add_row("decision", status.decision.name if status.decision is not None else "pending")
    if status.terms is not None:
        table.add_row("terms hash", "0x" + status.terms.terms_hash.hex())
        table.add_row("deadline", str(status.terms.deadline_s))
    for leg in status.legs:
        what = "lock tx" if leg.kind == "chain" else "hold id"
        table.add_row(f"leg {leg.index} {what}", leg.lock_ref or "-")
        table.add_row(f"leg {leg.index} state", f"{leg.state} on {leg.network}")
    table.add_row("report execution id", status.report_execution_id or "-")
    table.add_row("signers", ", ".join(status.signers) or "-")
    table.add_row("forwarder tx", status.forwarder_tx or "-")
    table.add_row("ledger report", status.ledger_report or "-")
    return table


def balances_table(
    before: Mapping[str, Balances], after: Mapping[str, Balances], *, token_decimals: int, token_symbol: str
) -> Table:
    table = Table(title="balances")
    for column in ("party", "asset", "before", "after", "change"):
        table.add_column(column, justify="right" if column in ("before", "after", "change") else "left")
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b is not None or a is not None:
            shares_b = b.shares_minor if b else 0
            shares_a = a.shares_minor if a else 0
            table.add_row(
                name,
                token_symbol,
                format_amount(shares_b, token_decimals) if b else "-",
                format_amount(shares_a, token_decimals) if a else "-",
                _signed(shares_a - shares_b, token_decimals) if a and b else "-",
            )
        currencies = sorted(set(b.cash if b else {}) | set(a.cash if a else {}))
        for currency in currencies:
            digits = currency_decimals(currency)
            cash_b = b.cash.get(currency) if b else None
            cash_a = a.cash.get(currency) if a else None
            table.add_row(
                name,
                f"{currency} available",
                format_amount(cash_b[0], digits) if cash_b else "-",
                format_amount(cash_a[0], digits) if cash_a else "-",
                _signed(cash_a[0] - cash_b[0], digits) if cash_a and cash_b else "-",
            )
    return table


def outcome_renderables(outcome: SettlementOutcome, *, token_decimals: int, token_symbol: str) -> list[Table]:
    return [
        evidence_table(outcome.status),
        balances_table(
            outcome.balances_before,
            outcome.balances_after,
            token_decimals=token_decimals,
            token_symbol=token_symbol,
        ),
    ]


def _signed(delta: int, decimals: int) -> str:
    return ("+" if delta > 0 else "") + format_amount(delta, decimals)
