"""`crossdvp contracts gas --json` end to end: it starts its own anvil, measures, stops it, and prints
figures that make sense (positive integers; batching lowers the per-item cost)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crossdvp.cli import app

pytestmark = pytest.mark.integration

KEYS = (
    "lock",
    "lock_with_permit",
    "settle_item_batch_1",
    "settle_item_batch_100",
    "abort_item_batch_1",
    "abort_item_batch_100",
)


def test_contracts_gas_json_prints_every_figure() -> None:
    result = CliRunner().invoke(app, ["contracts", "gas", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert sorted(figures) == sorted(KEYS)
    for key in KEYS:
        assert isinstance(figures[key], int) and figures[key] > 0, key
    assert figures["settle_item_batch_100"] < figures["settle_item_batch_1"]
    assert figures["abort_item_batch_100"] < figures["abort_item_batch_1"]
    # Sanity bounds: a settlement's first lock writes one fresh slot, the escrow's commitment (22,100
    # gas), not four; a settled item pays a new holder (a fresh balance slot in the token).
    assert 22_100 + 21_000 < figures["lock"] < 22_100 * 4 + 21_000
    assert figures["lock"] < figures["lock_with_permit"]
    assert figures["settle_item_batch_100"] > 22_100
