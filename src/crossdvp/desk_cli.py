"""The trading desk's and the operator's commands: `crossdvp settle`, `status`, `deploy`, `demo`, and
the `devnet up|status|down` group. Registered on the root app in crossdvp.cli.

Exit codes: 0 success (a settlement that SETTLEd); 1 a failure while running (a network refused, a
timeout); 2 invalid input, reported in one line before anything was registered or locked; 3 the
settlement completed as ABORT.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from crossdvp.errors import ConfigError, CrossDvpError
from crossdvp.paths import data_dir

if TYPE_CHECKING:
    from rich.console import Console

    from crossdvp.client import Desk

__all__ = ["deploy", "demo", "devnet_app", "parse_duration", "settle", "status"]

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_ABORTED = 3

devnet_app = typer.Typer(
    no_args_is_help=True,
    help="A whole local network: anvil with the contracts, the payments ledger, the DON's oracle nodes.",
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="The devnet's directory (default: $CROSSDVP_HOME/devnet, else ./.crossdvp/devnet)."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (progress on stderr).")
]

_DURATION = re.compile(r"^(\d+)\s*(s|sec|m|min|h)?$")


def parse_duration(text: str, *, field: str = "deadline") -> int:
    """ "60s", "5m", "1h" or plain seconds, as seconds. Rejects anything else and zero (ConfigError)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ConfigError(f"{field} must be a duration such as 60s, 5m or 1h, got {text!r}")
    seconds = int(match.group(1)) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{field} must be a positive duration, got {text!r}")
    return seconds


def _devnet_dir(directory: Path | None) -> Path:
    return (directory or data_dir() / "devnet").resolve()


def _fail(command: str, error: BaseException | str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr naming the command, then exit with `code`."""
    message = " ".join(str(error).split()) if code == EXIT_INVALID else str(error)
    typer.echo(f"crossdvp {command}: {message}", err=True)
    raise typer.Exit(code)


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


# -- devnet ---------------------------------------------------------------------------------------


@devnet_app.command("up")
def devnet_up_command(
    nodes: Annotated[
        int, typer.Option("--nodes", help="Oracle nodes in the DON (n >= 4; f = (n-1)//3).")
    ] = 4,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="The ledger's database, fresh and empty (default: SQLite under --dir)."
        ),
    ] = None,
    directory: DirOption = None,
    block_time: Annotated[
        float,
        typer.Option(
            "--block-time",
            help="Seconds between blocks; fractions allowed down to 0.05, e.g. 0.1 for ten blocks a "
            "second (the nodes then poll the chain every quarter block).",
        ),
    ] = 1,
    finality_depth: Annotated[
        int, typer.Option("--finality-depth", help="Confirmations the nodes wait for.")
    ] = 2,
    block_gas_limit: Annotated[
        int | None,
        typer.Option(
            "--block-gas-limit",
            help="Gas per block (anvil's --gas-limit, 1,000,000 up to 2**63-1; default: anvil's "
            "30,000,000). At about 210,000 gas per DvP, 30 M-gas blocks cap a 1 s chain near 143 "
            "DvP/s; raise it to find the machine's limit instead of the chain's.",
        ),
    ] = None,
) -> None:
    """Start anvil, deploy the contracts, start the payments ledger and the DON's nodes, onboard a
    seller and a buyer; write <dir>/devnet.json. Refuses if a devnet already runs in <dir>."""
    from crossdvp.devnet import DevnetError, DevnetOptions, DevnetRunningError, devnet_up

    console = _console(stderr=False)
    try:
        options = DevnetOptions(
            directory=_devnet_dir(directory),
            nodes=nodes,
            database_url=database_url,
            block_time_s=block_time,
            finality_depth=finality_depth,
            block_gas_limit=block_gas_limit,
        )
    except ConfigError as exc:
        _fail("devnet up", exc, EXIT_INVALID)
    console.print(f"[bold]crossdvp devnet up[/bold] in {options.directory}")
    try:
        state = devnet_up(options, lambda line: console.print(f"  [green]✔[/green] {line}"))
    except (DevnetRunningError, DevnetError) as exc:
        _fail("devnet up", exc, EXIT_FAILED)
    except ConfigError as exc:
        _fail("devnet up", exc, EXIT_INVALID)
    except CrossDvpError as exc:
        _fail("devnet up", exc, EXIT_FAILED)
    console.print(
        f"\nsettle a trade:  crossdvp settle --asset-amount 10 --cash-amount 1000 --currency USD "
        f"--buyer buyer --seller seller{_dir_flag(directory)}\n"
        f"stop it:         crossdvp devnet down{_dir_flag(directory)}\n"
        f"state file:      {state.directory / 'devnet.json'}"
    )


def _dir_flag(directory: Path | None) -> str:
    return f" --dir {directory}" if directory is not None else ""


@devnet_app.command("status")
def devnet_status_command(directory: DirOption = None, as_json: JsonOption = False) -> None:
    """Which devnet processes are alive, the block height, and the parties' balances. Exits 1 if no
    process of the devnet is running."""
    from rich.table import Table

    from crossdvp.client.amounts import currency_decimals, format_amount
    from crossdvp.devnet import devnet_status, load_state

    where = _devnet_dir(directory)
    try:
        report = devnet_status(where)
        state = load_state(where)
    except ConfigError as exc:
        _fail("devnet status", exc, EXIT_INVALID)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console = _console(stderr=False)
        running = "running" if report.running else "stopped"
        console.print(
            f"devnet in {report.directory}: [bold]{running}[/bold], block {report.block_number or '-'}"
        )
        processes = Table("process", "pid", "alive", "log")
        for p in report.processes:
            processes.add_row(p.name, str(p.pid), "yes" if p.alive else "[red]no[/red]", str(p.log_path))
        console.print(processes)
        decimals = state.chain.token_decimals if state.chain else 18
        symbol = state.chain.token_symbol if state.chain else "shares"
        balances = Table("party", "chain address", symbol, "cash available", "cash held")
        for b in report.parties:
            for currency, cash in b.cash.items() or {"-": None}.items():
                digits = currency_decimals(currency) if currency != "-" else 2
                balances.add_row(
                    b.name,
                    b.chain_address,
                    "-" if b.shares_minor is None else format_amount(b.shares_minor, decimals),
                    "-" if cash is None else f"{format_amount(cash[0], digits)} {currency}",
                    "-" if cash is None else f"{format_amount(cash[1], digits)} {currency}",
                )
        console.print(balances)
        for error in report.errors:
            console.print(f"[red]{error}[/red]")
    if not report.running:
        raise typer.Exit(EXIT_FAILED)


@devnet_app.command("down")
def devnet_down_command(directory: DirOption = None) -> None:
    """Stop exactly the processes `devnet up` started (by PID), nodes first, anvil last."""
    from crossdvp.devnet import devnet_down

    console = _console(stderr=False)
    try:
        devnet_down(_devnet_dir(directory), lambda line: console.print(f"  {line}"))
    except ConfigError as exc:
        _fail("devnet down", exc, EXIT_INVALID)
    console.print("devnet stopped")


# -- settle / status ------------------------------------------------------------------------------


def settle(
    asset_amount: Annotated[
        str, typer.Option("--asset-amount", help="Fund shares to deliver, e.g. 10 or 2.5.")
    ],
    cash_amount: Annotated[str, typer.Option("--cash-amount", help="Cash to pay, e.g. 1000.00.")],
    buyer: Annotated[str, typer.Option("--buyer", help="The buyer party (pays cash, receives shares).")],
    seller: Annotated[
        str, typer.Option("--seller", help="The seller party (delivers shares, receives cash).")
    ],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code of the cash leg.")] = "USD",
    deadline: Annotated[str, typer.Option("--deadline", help="Time to lock both legs: 60s, 5m, 1h.")] = "60s",
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Settle a DvP: register the terms with the DON, lock the shares in escrow (seller) and hold the
    cash (buyer), and follow it live to the outcome on both ledgers.

    Everything is validated first (parties, amounts, deadline, KYC, balances): bad input exits 2 with
    one line and nothing registered or locked. Exits 0 if it settled, 3 if it aborted."""
    from crossdvp.client import Desk, DeskConfig, currency_decimals, parse_amount
    from crossdvp.client.errors import InvalidOrder

    try:
        cash_digits = currency_decimals(currency)
        seconds = parse_duration(deadline)
        config = DeskConfig.from_devnet(_devnet_dir(directory))
        asset_minor = parse_amount(asset_amount, config.token_decimals, field="asset amount")
        cash_minor = parse_amount(cash_amount, cash_digits, field="cash amount")
    except (ConfigError, InvalidOrder) as exc:
        _fail("settle", exc, EXIT_INVALID)
    try:
        desk = Desk(config)
    except CrossDvpError as exc:
        _fail("settle", exc, EXIT_FAILED)
    with desk:
        try:
            terms = desk.propose(
                asset_amount=asset_minor,
                cash_amount=cash_minor,
                currency=currency,
                buyer=buyer,
                seller=seller,
                deadline_s=desk.deadline_in(seconds),
            )
        except InvalidOrder as exc:
            _fail("settle", exc, EXIT_INVALID)
        except CrossDvpError as exc:
            _fail("settle", exc, EXIT_FAILED)
        outcome = _run_settlement(desk, terms, buyer=buyer, seller=seller, as_json=as_json)
    raise typer.Exit(0 if outcome == "SETTLE" else EXIT_ABORTED)


def _run_settlement(desk: Desk, terms: Any, *, buyer: str, seller: str, as_json: bool) -> str:
    from rich.live import Live

    from crossdvp.client.render import outcome_renderables, progress_panel

    console = _console(stderr=as_json)
    decimals, symbol = desk.config.token_decimals, desk.config.token_symbol
    sid = "0x" + terms.settlement_id.hex()
    console.print(f"settlement {sid}, deadline {terms.deadline_s} (unix s)")
    try:
        before = desk.balances([buyer, seller])
        accepted = desk.register(terms)
        console.print(f"  ✔ registered with {len(accepted)}/{len(desk.config.nodes)} nodes")
        lock_tx = desk.lock_asset(terms, seller)
        console.print(f"  ✔ seller locked the shares in escrow: tx {lock_tx}")
        hold_id = desk.place_hold(terms, buyer)
        console.print(f"  ✔ buyer placed the cash hold: {hold_id}")
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            outcome = desk.wait(
                terms.settlement_id,
                on_progress=lambda s: live.update(
                    progress_panel(s, token_decimals=decimals, token_symbol=symbol)
                ),
                balances_before=before,
            )
    except CrossDvpError as exc:
        _fail("settle", f"{exc} (settlement {sid}; see `crossdvp status {sid}`)", EXIT_FAILED)
    console.print()
    if as_json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
    else:
        for renderable in outcome_renderables(outcome, token_decimals=decimals, token_symbol=symbol):
            console.print(renderable)
        style = "bold green" if outcome.decision.name == "SETTLE" else "bold yellow"
        console.print(f"[{style}]{outcome.decision.name}[/{style}]: final on every network")
    return outcome.decision.name


def status(
    settlement_id: Annotated[str, typer.Argument(help="The settlement id, 0x + 64 hex characters.")],
    directory: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a settlement as the ledgers and the nodes see it: legs, decision, report, evidence."""
    from crossdvp.client import Desk
    from crossdvp.client.render import evidence_table, progress_panel

    text = settlement_id.strip().lower()
    if not re.fullmatch(r"0x[0-9a-f]{64}", text):
        _fail(
            "status",
            f"settlement id must be 0x followed by 64 hex characters, got {settlement_id!r}",
            EXIT_INVALID,
        )
    try:
        desk = Desk.from_devnet(_devnet_dir(directory))
    except ConfigError as exc:
        _fail("status", exc, EXIT_INVALID)
    with desk:
        try:
            current = desk.status(bytes.fromhex(text[2:]))
        except CrossDvpError as exc:
            _fail("status", exc, EXIT_FAILED)
        if current.terms is None:
            _fail("status", f"no node knows settlement {text} ({current.nodes_answering} nodes answered)")
        if as_json:
            typer.echo(json.dumps(current.to_dict(), indent=2))
            return
        console = _console(stderr=False)
        console.print(
            progress_panel(
                current, token_decimals=desk.config.token_decimals, token_symbol=desk.config.token_symbol
            )
        )
        console.print(evidence_table(current))


# -- deploy ---------------------------------------------------------------------------------------


def deploy(
    rpc_url: Annotated[str, typer.Option("--rpc-url", help="The EVM JSON-RPC endpoint.")],
    config: Annotated[
        Path, typer.Option("--config", help="deploy.toml: deployer key, DON, workflow, output.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Deploy and configure the asset network (KeystoneForwarder with the DON, KYCRegistry, FundToken,
    DvPEscrow) on any EVM endpoint, and write the networks and workflow sections of the node config.

    The deployer key comes from an encrypted keystore (password in the environment variable the
    config names) or from an environment variable — never from the command line."""
    from crossdvp.devnet.deploy import deploy_from_config, load_deploy_config

    console = _console(stderr=as_json)
    try:
        plan = load_deploy_config(config)
    except ConfigError as exc:
        _fail("deploy", exc, EXIT_INVALID)
    try:
        result = deploy_from_config(rpc_url, plan, lambda line: console.print(f"  ✔ {line}"))
    except ConfigError as exc:
        _fail("deploy", exc, EXIT_INVALID)
    except CrossDvpError as exc:
        _fail("deploy", exc, EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(f"node config section written to {result['node_config']}")


# -- demo -----------------------------------------------------------------------------------------


def demo(as_json: JsonOption = False) -> None:
    """Bring up a devnet in a temporary directory and run three DvPs: one that settles, one whose
    buyer never holds (ABORT after the deadline, shares back), one during which an oracle node is
    SIGKILLed (still settles). Prints the outcomes and balances, tears everything down, and exits
    non-zero if any outcome differs from the expected one."""
    from crossdvp.demo import run_demo

    console = _console(stderr=as_json)
    try:
        report = run_demo(console)
    except CrossDvpError as exc:
        if as_json:  # the document a script waits for, even when the devnet could not start
            sys.stdout.write(json.dumps({"scenarios": [], "all_as_expected": False}) + "\n")
        _fail("demo", exc, EXIT_FAILED)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    if not report.all_as_expected:
        raise typer.Exit(EXIT_FAILED)
