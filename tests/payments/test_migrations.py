"""The Alembic migrations create exactly the tables the code uses, on both backends, and
`crossdvp payments migrate` is idempotent."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from crossdvp.cli import app as cli_app
from crossdvp.payments.models import metadata
from crossdvp.payments.store import current_revision, make_engine


def test_migrate_command_and_no_drift(database_url: str) -> None:
    for _ in range(2):  # a second run is a no-op
        result = CliRunner().invoke(cli_app, ["payments", "migrate", "--database-url", database_url])
        assert result.exit_code == 0, result.output
        assert "migrated to revision 0001" in result.output
    engine = make_engine(database_url, pool_size=1)
    try:
        assert current_revision(engine) == "0001"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], diff
    finally:
        engine.dispose()
