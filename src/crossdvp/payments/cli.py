"""`crossdvp payments ...`: serve the ledger, migrate its database, verify its journal, bootstrap an
admin key, and benchmark holds over HTTP."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from crossdvp.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="The bank payment ledger service.")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path or postgresql+psycopg://user@host/db (env CROSSDVP_PAYMENTS_DATABASE_URL; "
        "default: a SQLite file in the data directory)",
    ),
]


@app.command()
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str | None, typer.Option(help="interface to bind (env CROSSDVP_PAYMENTS_HOST)")] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default: env CROSSDVP_PAYMENTS_PORT, else 8700)")
    ] = None,
    ledger_id: Annotated[str | None, typer.Option(help="env CROSSDVP_PAYMENTS_LEDGER_ID")] = None,
    grace_s: Annotated[
        int | None, typer.Option(help="reclaim grace after the deadline (env CROSSDVP_PAYMENTS_GRACE_S)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the ledger's HTTP API (migrates the database first).

    An admin key is installed from CROSSDVP_PAYMENTS_ADMIN_KEY if set (otherwise use `create-admin`)."""
    import uvicorn

    from crossdvp.logs import configure_logging
    from crossdvp.payments.api import create_app
    from crossdvp.payments.auth import hash_key, new_credential_id
    from crossdvp.payments.config import Settings
    from crossdvp.payments.ledger import ensure_admin_credential

    configure_logging(log_level, json_output=True)
    log = logging.getLogger("crossdvp.payments")
    try:
        settings = Settings.from_env(database_url=database_url, ledger_id=ledger_id, grace_s=grace_s)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    host = host or os.environ.get("CROSSDVP_PAYMENTS_HOST", "127.0.0.1")
    try:
        port = port or int(os.environ.get("CROSSDVP_PAYMENTS_PORT", "8700"))
    except ValueError as exc:
        raise typer.BadParameter(f"CROSSDVP_PAYMENTS_PORT must be an integer: {exc}") from exc
    application = create_app(settings)
    admin_key = os.environ.get("CROSSDVP_PAYMENTS_ADMIN_KEY")
    if admin_key:
        with application.state.service.store.write() as tx:
            added = ensure_admin_credential(
                tx, key_hash=hash_key(admin_key), credential_id=new_credential_id()
            )
        log.info("admin key from CROSSDVP_PAYMENTS_ADMIN_KEY %s", "installed" if added else "already present")
    log.info(
        "payments ledger serving",
        extra={"ledger_id": settings.ledger_id, "host": host, "port": port, "grace_s": settings.grace_s},
    )
    uvicorn.run(
        application, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5
    )


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Apply the database migrations (Alembic) and print the revision."""
    from crossdvp.payments.config import Settings
    from crossdvp.payments.store import current_revision, make_engine
    from crossdvp.payments.store import migrate as run_migrations

    engine = make_engine(Settings.from_env(database_url=database_url).database_url)
    try:
        run_migrations(engine)
        typer.echo(f"migrated to revision {current_revision(engine)}")
    finally:
        engine.dispose()


@app.command("verify-journal")
def verify_journal(
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON object")] = False,
) -> None:
    """Recompute the journal hash chain and every balance invariant; exit 1 at the first break."""
    from crossdvp.payments.config import Settings
    from crossdvp.payments.journal import verify_journal as run_verify
    from crossdvp.payments.store import make_engine

    engine = make_engine(Settings.from_env(database_url=database_url).database_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                check = run_verify(conn)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                {"ok": check.ok, "entries_checked": check.entries_checked, "first_break": check.first_break}
            )
        )
    elif check.ok:
        typer.echo(f"journal OK: {check.entries_checked} entries, chain and balances verified")
    else:
        typer.echo(
            f"journal BROKEN after {check.entries_checked} good entries: {check.first_break}", err=True
        )
    if not check.ok:
        raise typer.Exit(1)


@app.command("create-admin")
def create_admin(database_url: DatabaseUrl = None) -> None:
    """Create an admin API key and print it (shown once; only its hash is stored)."""
    from crossdvp.clock import SystemClock
    from crossdvp.payments.auth import generate_key, hash_key, new_credential_id
    from crossdvp.payments.config import Settings
    from crossdvp.payments.ledger import ensure_admin_credential
    from crossdvp.payments.store import Store, make_engine
    from crossdvp.payments.store import migrate as run_migrations

    engine = make_engine(Settings.from_env(database_url=database_url).database_url)
    try:
        run_migrations(engine)
        api_key = generate_key()
        with Store(engine, SystemClock()).write() as tx:
            ensure_admin_credential(tx, key_hash=hash_key(api_key), credential_id=new_credential_id())
    finally:
        engine.dispose()
    typer.echo(api_key)


@app.command()
def bench(
    holds: Annotated[int, typer.Option(help="holds to place and settle per database")] = 400,
    clients: Annotated[int, typer.Option(help="concurrent HTTP clients")] = 4,
    postgres_url: Annotated[
        str, typer.Option(help="PostgreSQL server (a scratch database is created and dropped)")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    skip_postgres: Annotated[bool, typer.Option(help="only SQLite")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    profile_dir: Annotated[
        Path | None,
        typer.Option(
            help="sample each server with py-spy while under load; write collapsed stacks here and "
            "print its hot spots"
        ),
    ] = None,
) -> None:
    """Start the service on SQLite and on PostgreSQL, place and settle N holds over HTTP with a few
    concurrent clients, and print holds/s for each. A command that prints figures, not a test."""
    from crossdvp.payments.bench import run_bench

    results = run_bench(
        holds=holds,
        clients=clients,
        postgres_url=None if skip_postgres else postgres_url,
        profile_dir=profile_dir,
    )
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        typer.echo(r.describe())
    if profile_dir is not None:
        from crossdvp.bench.profile import describe_profiles

        typer.echo("\n".join(describe_profiles(profile_dir)))


if __name__ == "__main__":
    # `python -m crossdvp.payments.cli serve ...` runs only this group: a service process then
    # imports what it serves, not every command group of the root CLI.
    app(prog_name="crossdvp payments")
