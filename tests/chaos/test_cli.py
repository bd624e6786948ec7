"""`crossdvp chaos` refuses bad options with a clear message before starting anything."""

from __future__ import annotations

from typer.testing import CliRunner

from crossdvp.cli import app


def test_an_unknown_fault_kind_is_refused_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["chaos", "--trades", "2", "--faults", "node_kill,meteor"])
    assert result.exit_code == 2
    assert "meteor" in result.output and "duplicate_delivery" in result.output


def test_a_non_positive_trade_count_is_refused() -> None:
    result = CliRunner().invoke(app, ["chaos", "--trades", "0"])
    assert result.exit_code == 2
    assert "--trades must be at least 1" in result.output
