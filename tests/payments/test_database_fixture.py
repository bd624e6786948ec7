"""The PostgreSQL fixture's policy: skip when the server is missing, unless CI=true (then fail)."""

from __future__ import annotations

import pytest

from tests.fixtures.databases import _unavailable


def test_missing_postgres_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _unavailable("connection refused")


def test_missing_postgres_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is required when CI=true"):
        _unavailable("connection refused")
