"""`crossdvp` — the command line. Each role contributes its own sub-command group."""

from __future__ import annotations

import typer

from crossdvp import __version__
from crossdvp.chain.cli import app as contracts_app
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


@app.command()
def version() -> None:
    """Print the crossdvp version."""
    typer.echo(__version__)


@app.command()
def demo() -> None:
    """Run the end-to-end demonstration on a local network (not yet: lands with the devnet issue)."""
    typer.echo("crossdvp demo: not yet — the local devnet and demo land with the devnet/demo issue.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
