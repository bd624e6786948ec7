"""`crossdvp node ...` commands: run one oracle node, create its encrypted signing keystore."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crossdvp.errors import ConfigError

if TYPE_CHECKING:  # the command imports lazily so that `crossdvp --help` stays fast
    from crossdvp.oracle.config import NodeConfig, Ports
    from crossdvp.oracle.keys import NodeKey

app = typer.Typer(no_args_is_help=True, help="An oracle node of the DON: observe, decide, sign, deliver.")

__all__ = ["app"]


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's TOML config file.")],
) -> None:
    """Run one node until SIGTERM/SIGINT: its HTTP API, observers, rounds and deliveries.

    Every config value can be overridden by CROSSDVP_NODE_<SECTION>_<KEY> (see crossdvp.oracle.config).
    """
    from crossdvp.logs import configure_logging
    from crossdvp.oracle.config import build_ports, load_config

    env = dict(os.environ)
    try:
        node_config = load_config(config, env)
        configure_logging(node_config.node.log_level)
        key = node_config.load_key(env)
        ports = build_ports(node_config, env)
    except ConfigError as exc:
        typer.echo(f"crossdvp node run: {exc}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(_serve(node_config, key, ports, env))


async def _serve(node_config: NodeConfig, key: NodeKey, ports: Ports, env: dict[str, str]) -> None:
    import logging

    import uvicorn

    from crossdvp.oracle.api import create_app
    from crossdvp.oracle.node import Node, NodeSettings
    from crossdvp.oracle.peers import HttpPeerTransport
    from crossdvp.oracle.store import NodeStore

    store = NodeStore(node_config.store_url(env))
    transport = HttpPeerTransport([m.url for m in node_config.don.members])
    node = Node(
        NodeSettings.from_config(node_config),
        key=key,
        store=store,
        observers=ports.observers,
        deliverers=ports.deliverers,
        transport=transport,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node),
            host=node_config.node.host,
            port=node_config.node.port,
            log_config=None,  # keep crossdvp's JSON logging
            access_log=False,
            lifespan="off",
        )
    )
    log = logging.getLogger("crossdvp.oracle")
    log.info(
        "node %s (index %d, signer %s) listening on %s:%d, networks %s",
        node.settings.name,
        node.index,
        key.address,
        node_config.node.host,
        node_config.node.port,
        ", ".join(node.networks) or "none",
    )
    stop = asyncio.Event()
    loops = asyncio.create_task(node.run(stop))

    def on_signal(_signum: int, _frame: object) -> None:
        server.should_exit = True

    # uvicorn handles SIGTERM/SIGINT during serve() and re-raises them afterwards to the handlers it
    # found: ours, so that the cleanup below runs instead of the default handler ending the process.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        await server.serve()
    finally:
        stop.set()
        await loops
        await transport.aclose()
        await node.aclose()
        store.close()
        log.info("node %s stopped", node.settings.name)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the encrypted JSON keystore.")],
    password_env: Annotated[
        str, typer.Option("--password-env", help="Environment variable holding the keystore password.")
    ] = "CROSSDVP_NODE_KEY_PASSWORD",  # noqa: S107 (the name of a variable, not a password)
) -> None:
    """Create a new DON signing key as an encrypted keystore and print its address (the signer)."""
    from crossdvp.oracle.keys import generate_keystore

    password = os.environ.get(password_env)
    if not password:
        typer.echo(f"crossdvp node keygen: set {password_env} to the keystore password", err=True)
        raise typer.Exit(2)
    try:
        key = generate_keystore(out, password)
    except ConfigError as exc:
        typer.echo(f"crossdvp node keygen: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(key.address)
