"""`crossdvp` — the command line. Each role contributes its own sub-command group."""

from __future__ import annotations

import typer

from crossdvp import __version__, desk_cli
from crossdvp.bench.cli import bench as bench_command
from crossdvp.chain.cli import app as contracts_app
from crossdvp.chaos.cli import chaos as chaos_command
from crossdvp.console.cli import console as console_command
from crossdvp.oracle.cli import app as node_app
from crossdvp.payments.cli import app as payments_app

app = typer.Typer(
    name="crossdvp",
    help=(
        "Atomic cross-network Delivery-versus-Payment: fund shares on an EVM chain move to the buyer "
        "if and only if the buyer's cash moves to the seller on a bank payment ledger, decided and "
        "signed by a quorum of oracle nodes."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(contracts_app, name="contracts")
app.add_typer(payments_app, name="payments")
app.add_typer(node_app, name="node")
app.command("console")(console_command)
app.command("chaos")(chaos_command)
app.command("bench")(bench_command)


@app.command()
def version() -> None:
    """Print the crossdvp version."""
    typer.echo(__version__)


# The trading desk's and the operator's commands (crossdvp.desk_cli).
app.add_typer(desk_cli.devnet_app, name="devnet")
app.command("settle")(desk_cli.settle)
app.command("status")(desk_cli.status)
app.command("deploy")(desk_cli.deploy)
app.command("demo")(desk_cli.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
