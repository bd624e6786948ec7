"""`crossdvp contracts ...` commands."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Compile, deploy and measure the Solidity contracts.")

_ROWS = (
    ("lock", "lock (approved beforehand)"),
    ("lock_with_permit", "lockWithPermit (no approve)"),
    ("settle_item_batch_1", "settle, per item, batch of 1"),
    ("settle_item_batch_100", "settle, per item, batch of 100"),
    ("abort_item_batch_1", "abort, per item, batch of 1"),
    ("abort_item_batch_100", "abort, per item, batch of 100"),
)


@app.command()
def gas(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    batch: Annotated[
        int, typer.Option("--batch", min=2, help="Size of the large batch (the *_batch_100 figures).")
    ] = 100,
) -> None:
    """Measure the escrow's gas (lock, lockWithPermit, settle and abort per item at batch 1 and 100) on
    a fresh anvil started for the purpose and stopped afterwards."""
    # Imported here so that `crossdvp --help` does not load web3.
    from crossdvp.chain.gas import measure_gas_on_anvil

    with tempfile.TemporaryDirectory(prefix="crossdvp-gas-") as log_dir:
        figures = measure_gas_on_anvil(Path(log_dir), large_batch=batch).to_dict()
    if as_json:
        typer.echo(json.dumps(figures))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="DvPEscrow gas (gasUsed on anvil)",
        caption="one seller; each settled item pays a distinct buyer who held no shares",
    )
    table.add_column("operation")
    table.add_column("gas", justify="right")
    for key, label in _ROWS:
        shown = label if batch == 100 else label.replace("batch of 100", f"batch of {batch}")
        table.add_row(shown, f"{figures[key]:,}")
    Console().print(table)
