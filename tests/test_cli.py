from typer.testing import CliRunner

from crossdvp.cli import app


def test_help_lists_every_command_group() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in ("contracts", "payments", "node"):
        assert group in result.output
