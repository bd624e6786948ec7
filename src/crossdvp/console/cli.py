"""`crossdvp console`: serve the web console for a devnet or for the networks a TOML file names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crossdvp.errors import ConfigError

__all__ = ["build", "console"]


def build(config_path: Path | None, devnet_dir: Path | None) -> object:
    """The console's ASGI app for `--config` or for the devnet in `devnet_dir` (default: the data
    directory's devnet). Raises ConfigError when neither can be read."""
    from crossdvp.console.app import create_app
    from crossdvp.console.config import config_from_devnet, config_from_toml
    from crossdvp.console.service import Console
    from crossdvp.console.sources import EvmChainSource, HttpNodeSource, LedgerHttpSource

    if config_path is not None:
        config = config_from_toml(config_path)
    else:
        config = config_from_devnet(devnet_dir if devnet_dir is not None else default_devnet_dir())
    nodes = HttpNodeSource()
    ledger = LedgerHttpSource(config.ledger)
    console_state = Console(config, nodes=nodes, chain=EvmChainSource(config.chain), ledger=ledger)

    async def close() -> None:
        await nodes.aclose()
        await ledger.aclose()

    return create_app(console_state, on_shutdown=close)


def default_devnet_dir() -> Path:
    """Where `crossdvp devnet up` puts its devnet when given no --dir."""
    from crossdvp.paths import data_dir

    return data_dir() / "devnet"


def console(
    devnet: Annotated[
        Path | None, typer.Option("--devnet", help="devnet directory (default: the data directory's devnet)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="console TOML for real networks (instead of a devnet)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8780,
) -> None:
    """Serve the web console: settlements live, one settlement's legs and timeline, the DON, the ledgers.

    It reads only public state and never shows a key or an API credential."""
    import uvicorn

    if devnet is not None and config is not None:
        raise typer.BadParameter("give either --devnet or --config, not both")
    try:
        app = build(config, devnet)
    except ConfigError as exc:
        typer.echo(f"crossdvp console: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"crossdvp console on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]
