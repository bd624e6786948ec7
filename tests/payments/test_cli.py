"""The `crossdvp payments` admin commands and the environment configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdvp.cli import app as cli_app
from crossdvp.errors import ConfigError
from crossdvp.payments.auth import Role, authenticate
from crossdvp.payments.config import Settings
from crossdvp.payments.store import make_engine


def test_create_admin_prints_a_working_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    result = CliRunner().invoke(cli_app, ["payments", "create-admin", "--database-url", url])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert key.startswith("cdp_")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            principal = authenticate(conn, key)
    finally:
        engine.dispose()
    assert principal is not None and principal.role is Role.ADMIN


def test_settings_from_env(tmp_path: Path) -> None:
    env = {
        "CROSSDVP_HOME": str(tmp_path),
        "CROSSDVP_PAYMENTS_LEDGER_ID": "bank-a",
        "CROSSDVP_PAYMENTS_GRACE_S": "120",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == f"sqlite:///{tmp_path / 'payments.sqlite3'}"
    assert (settings.ledger_id, settings.grace_s, settings.network) == ("bank-a", 120, "payments:bank-a")
    assert Settings.from_env(env, ledger_id="x", database_url="sqlite:///y").ledger_id == "x"
    with pytest.raises(ConfigError, match="GRACE_S"):
        Settings.from_env({**env, "CROSSDVP_PAYMENTS_GRACE_S": "soon"})
    with pytest.raises(ConfigError, match="ledger_id"):
        Settings(database_url="sqlite:///z", ledger_id="bad id")
