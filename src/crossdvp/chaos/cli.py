"""`crossdvp chaos`: run the fault-injection harness and print its report (exit 1 on any violation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossdvp.errors import CrossDvpError

__all__ = ["chaos"]


def chaos(
    trades: Annotated[
        int, typer.Option("--trades", help="how many settlements the workload proposes")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="seed of every random choice of the run")] = 1,
    faults: Annotated[
        str | None,
        typer.Option(
            "--faults",
            help="comma-separated fault kinds (default: all): node_kill, node_kill_two, byzantine, rpc, "
            "payments_kill, reorg, duplicate_delivery; 'none' for a run without faults",
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="the payments ledger's database (default SQLite)")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="keep the devnet's files and logs here (default: a temporary dir)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print only the report's JSON object")] = False,
) -> None:
    """Run a devnet and a seeded workload of settlements while injecting faults, then check
    atomicity, conservation, single execution and liveness on the ledgers' own state."""
    from crossdvp.chaos.faults import ALL_FAULTS, FaultKind
    from crossdvp.chaos.runner import ChaosOptions, run_chaos

    if faults is None:
        kinds = ALL_FAULTS
    elif faults.strip() == "none":
        kinds = frozenset()
    else:
        try:
            kinds = frozenset(FaultKind(name.strip()) for name in faults.split(",") if name.strip())
        except ValueError as exc:
            known = ", ".join(k.value for k in FaultKind)
            typer.echo(f"--faults: {exc}; known kinds: {known}", err=True)
            raise typer.Exit(2) from None
    try:
        options = ChaosOptions(
            trades=trades, seed=seed, faults=kinds, database_url=database_url, directory=directory
        )
        report = run_chaos(options, progress=lambda line: typer.echo(line, err=True))
    except CrossDvpError as exc:
        typer.echo(f"crossdvp chaos: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)
