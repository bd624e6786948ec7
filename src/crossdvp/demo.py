"""`crossdvp demo` (= `make demo`): the whole system, end to end, in about a minute.

A devnet comes up in a temporary directory, then three DvPs run through the SDK exactly as a desk
would run them:
1. `settles`      — both legs locked: fund shares to the buyer, USD to the seller, final on both;
2. `buyer-never-holds` — the seller locks, the buyer never places the hold: after the deadline the
   DON decides ABORT and the escrow returns the seller's shares;
3. `node-killed`  — both legs locked, then one oracle node is SIGKILLed before the decision: the
   other three (f+1 = 2 signatures needed) still settle it.
Each outcome is checked against the ledgers' balances, the devnet is always torn down, and the
result says whether every outcome was the expected one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from crossdvp.client import Balances, Desk, SettlementOutcome
from crossdvp.client.amounts import format_amount
from crossdvp.client.render import progress_panel, short
from crossdvp.devnet import DevnetOptions, DevnetState, devnet_down, devnet_up
from crossdvp.errors import CrossDvpError
from crossdvp.settlement.terms import Terms

__all__ = ["DemoReport", "ScenarioResult", "run_demo"]

SHARES = 10 * 10**18  # 10 fund shares
CASH = 100_000  # USD 1,000.00
CURRENCY = "USD"


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    name: str
    expected: str
    outcome: str  # SETTLE | ABORT | an error description
    settlement_id: str | None
    detail: str = ""
    balances_before: Mapping[str, Balances] = field(default_factory=dict)
    balances_after: Mapping[str, Balances] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected


@dataclass(frozen=True, slots=True)
class DemoReport:
    scenarios: tuple[ScenarioResult, ...]

    @property
    def all_as_expected(self) -> bool:
        return bool(self.scenarios) and all(s.as_expected for s in self.scenarios)

    def to_json(self) -> dict[str, Any]:
        """Exactly the documented shape: scenarios (name, expected, outcome, settlement_id) and
        all_as_expected."""
        return {
            "scenarios": [
                {
                    "name": s.name,
                    "expected": s.expected,
                    "outcome": s.outcome,
                    "settlement_id": s.settlement_id,
                }
                for s in self.scenarios
            ],
            "all_as_expected": self.all_as_expected,
        }


def _check_balances(outcome: SettlementOutcome, terms: Terms) -> str:
    """Why the balances contradict the decision, or "" if they agree with it."""
    before, after = outcome.balances_before, outcome.balances_after
    shares, cash = terms.legs[0].amount_minor, terms.legs[1].amount_minor
    seller_shares = after["seller"].shares_minor - before["seller"].shares_minor
    buyer_shares = after["buyer"].shares_minor - before["buyer"].shares_minor
    seller_cash = after["seller"].cash[CURRENCY][0] - before["seller"].cash[CURRENCY][0]
    buyer_cash = after["buyer"].cash[CURRENCY][0] - before["buyer"].cash[CURRENCY][0]
    expected = (-shares, shares, cash, -cash) if outcome.decision.name == "SETTLE" else (0, 0, 0, 0)
    actual = (seller_shares, buyer_shares, seller_cash, buyer_cash)
    if actual != expected:
        return (
            f"balance changes (seller shares, buyer shares, seller cash, buyer cash) {actual} != {expected}"
        )
    return ""


class _Runner:
    def __init__(self, desk: Desk, state: DevnetState, console: Console) -> None:
        self.desk = desk
        self.state = state
        self.console = console

    def run(
        self,
        name: str,
        expected: str,
        *,
        deadline_in_s: int,
        hold: bool,
        after_locks: Callable[[], None] | None = None,
    ) -> ScenarioResult:
        desk = self.desk
        self.console.rule(f"[bold]{name}[/bold] (expected: {expected})")
        sid: str | None = None
        try:
            terms = desk.propose(
                asset_amount=SHARES,
                cash_amount=CASH,
                currency=CURRENCY,
                buyer="buyer",
                seller="seller",
                deadline_s=desk.deadline_in(deadline_in_s),
            )
            sid = "0x" + terms.settlement_id.hex()
            before = desk.balances(["buyer", "seller"])
            accepted = desk.register(terms)
            self.console.print(f"  registered {short(sid)} with {len(accepted)} nodes")
            lock_tx = desk.lock_asset(terms, "seller")
            self.console.print(f"  seller locked {format_amount(SHARES, 18)} shares: tx {short(lock_tx)}")
            if hold:
                hold_id = desk.place_hold(terms, "buyer")
                self.console.print(f"  buyer held USD {format_amount(CASH, 2)}: {short(hold_id, 16)}")
            else:
                self.console.print(f"  buyer places no hold; waiting for the deadline ({deadline_in_s}s)")
            if after_locks is not None:
                after_locks()
            decimals, symbol = desk.config.token_decimals, desk.config.token_symbol
            with Live(console=self.console, refresh_per_second=8, transient=True) as live:
                outcome = desk.wait(
                    terms.settlement_id,
                    on_progress=lambda s: live.update(
                        progress_panel(s, token_decimals=decimals, token_symbol=symbol)
                    ),
                    balances_before=before,
                )
        except CrossDvpError as exc:
            self.console.print(f"  [red]error:[/red] {exc}")
            return ScenarioResult(name, expected, f"ERROR: {type(exc).__name__}", sid, detail=str(exc))
        problem = _check_balances(outcome, terms)
        decision = outcome.decision.name
        result = ScenarioResult(
            name,
            expected,
            decision if not problem else f"{decision} (balances wrong)",
            sid,
            detail=problem
            or f"report {short(outcome.status.report_execution_id)} signed by {len(outcome.status.signers)}",
            balances_before=outcome.balances_before,
            balances_after=outcome.balances_after,
        )
        mark = "[green]as expected[/green]" if result.as_expected else "[red]NOT as expected[/red]"
        self.console.print(f"  {decision}, final on both networks: {mark} {problem}")
        return result

    def kill_one_node(self) -> None:
        """SIGKILL the first node that is alive, as a crash would (no cleanup, no goodbye)."""
        record = next((p for p in self.state.processes if p.name.startswith("node-") and p.alive()), None)
        if record is None:
            raise CrossDvpError("no live oracle node to kill")
        os.kill(record.pid, signal.SIGKILL)
        self.console.print(
            f"  [bold red]SIGKILL[/bold red] {record.name} (pid {record.pid}) before the decision"
        )


def _summary(report: DemoReport, decimals: int, symbol: str) -> list[Table]:
    """The outcomes, then each party's balances before the demo and after each scenario."""
    outcomes = Table(title="crossdvp demo: outcomes")
    for column in ("scenario", "expected", "outcome", "settlement", "ok"):
        outcomes.add_column(column, no_wrap=column != "outcome")
    for s in report.scenarios:
        ok = "[green]yes[/green]" if s.as_expected else "[red]NO[/red]"
        outcomes.add_row(s.name, s.expected, s.outcome, short(s.settlement_id, 8), ok)
    balances = Table(title="balances before and after each scenario")
    balances.add_column("party", no_wrap=True)
    balances.add_column("asset", no_wrap=True)
    first = next((s for s in report.scenarios if s.balances_before), None)
    columns: list[Mapping[str, Balances]] = []
    if first is not None:
        balances.add_column("before", justify="right")
        columns.append(first.balances_before)
    for s in report.scenarios:
        balances.add_column(f"after {s.name}", justify="right")
        columns.append(s.balances_after)
    for party in ("seller", "buyer"):
        rows: list[tuple[str, Callable[[Balances], int], int]] = [
            (symbol, lambda b: b.shares_minor, decimals),
            (CURRENCY, lambda b: b.cash[CURRENCY][0], 2),
        ]
        for asset, value, digits in rows:
            cells = [format_amount(value(c[party]), digits) if party in c else "-" for c in columns]
            balances.add_row(party, asset, *cells)
    return [outcomes, balances]


def run_demo(
    console: Console,
    *,
    directory: Path | None = None,
    abort_deadline_s: int = 10,
    settle_deadline_s: int = 60,
) -> DemoReport:
    """Run the three scenarios on a fresh devnet (in `directory`, else a temporary one that is
    removed afterwards unless something failed). The devnet is always stopped.

    Raises DevnetError if the devnet cannot be started (nothing is left running)."""
    owned = directory is None
    where = Path(tempfile.mkdtemp(prefix="crossdvp-demo-")) if directory is None else directory
    started = time.monotonic()
    report = DemoReport(scenarios=())
    try:
        console.rule("[bold]devnet[/bold]")
        state = devnet_up(DevnetOptions(where), lambda line: console.print(f"  [green]✔[/green] {line}"))
        with Desk.from_devnet(where) as desk:
            runner = _Runner(desk, state, console)
            results = [
                runner.run("settles", "SETTLE", deadline_in_s=settle_deadline_s, hold=True),
                runner.run("buyer-never-holds", "ABORT", deadline_in_s=abort_deadline_s, hold=False),
                runner.run(
                    "node-killed",
                    "SETTLE",
                    deadline_in_s=settle_deadline_s,
                    hold=True,
                    after_locks=runner.kill_one_node,
                ),
            ]
        report = DemoReport(scenarios=tuple(results))
        assert state.chain is not None  # devnet_up returns a complete state
        console.rule("[bold]outcomes[/bold]")
        for table in _summary(report, state.chain.token_decimals, state.chain.token_symbol):
            console.print(table)
        verdict = (
            "all as expected" if report.all_as_expected else "SOME OUTCOMES DIFFER FROM THE EXPECTED ONES"
        )
        console.print(f"{verdict} ({time.monotonic() - started:.0f}s)")
        return report
    finally:
        with contextlib.suppress(CrossDvpError):
            devnet_down(where)
        if owned:
            if report.all_as_expected:
                shutil.rmtree(where, ignore_errors=True)
            else:
                console.print(f"logs kept in {where / 'logs'}")
