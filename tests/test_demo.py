"""`crossdvp demo --json`: the whole system end to end — a devnet with anvil, the payments service and
four oracle nodes; a DvP that settles, one that aborts after its deadline, one that settles while a
node is SIGKILLed. This is the proof that the pieces work together."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdvp.cli import app
from crossdvp.demo import DemoReport, ScenarioResult


@pytest.mark.integration
def test_demo_json_runs_three_scenarios_all_as_expected() -> None:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.stdout, (
        f"no JSON on stdout; exception {result.exception!r}; stderr:\n{result.stderr[-3000:]}"
    )
    # stdout is exactly one JSON document (progress went to stderr).
    report = json.loads(result.stdout)
    assert set(report) == {"scenarios", "all_as_expected"}
    assert [(s["name"], s["expected"]) for s in report["scenarios"]] == [
        ("settles", "SETTLE"),
        ("buyer-never-holds", "ABORT"),
        ("node-killed", "SETTLE"),
    ]
    for scenario in report["scenarios"]:
        assert set(scenario) == {"name", "expected", "outcome", "settlement_id"}
        assert scenario["outcome"] == scenario["expected"], result.stderr[-3000:]
        assert scenario["settlement_id"].startswith("0x") and len(scenario["settlement_id"]) == 66
    assert report["all_as_expected"] is True
    assert result.exit_code == 0
    assert "SIGKILL" in result.stderr


def test_a_differing_outcome_makes_the_demo_fail() -> None:
    ok = ScenarioResult("settles", "SETTLE", "SETTLE", "0x" + "00" * 32)
    wrong = ScenarioResult("node-killed", "SETTLE", "ERROR: SettlementTimeout", None)
    assert DemoReport((ok,)).all_as_expected
    assert not DemoReport((ok, wrong)).all_as_expected
    assert not DemoReport(()).all_as_expected
    assert DemoReport((ok, wrong)).to_json() == {
        "scenarios": [
            {"name": "settles", "expected": "SETTLE", "outcome": "SETTLE", "settlement_id": "0x" + "00" * 32},
            {
                "name": "node-killed",
                "expected": "SETTLE",
                "outcome": "ERROR: SettlementTimeout",
                "settlement_id": None,
            },
        ],
        "all_as_expected": False,
    }


def test_a_demo_whose_devnet_cannot_start_still_prints_its_json_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo keeps a failed run's logs there
    result = CliRunner().invoke(app, ["demo", "--json"], env={"CROSSDVP_ANVIL": str(tmp_path / "no-anvil")})
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"scenarios": [], "all_as_expected": False}
    assert "devnet up failed" in result.stderr
