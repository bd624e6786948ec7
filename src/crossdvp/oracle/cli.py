"""`crossdvp node ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="An oracle node of the DON: observe, decide, sign, deliver.")
