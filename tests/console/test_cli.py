from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from crossdvp.cli import app


def test_console_without_a_devnet_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["console", "--devnet", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no devnet in" in result.output and "crossdvp devnet up" in result.output


def test_console_refuses_both_sources(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["console", "--devnet", str(tmp_path), "--config", str(tmp_path / "c.toml")]
    )
    assert result.exit_code == 2
    assert "either --devnet or --config" in result.output
