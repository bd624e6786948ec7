"""Service configuration: command-line options fall back to CROSSDVP_PAYMENTS_* environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crossdvp.errors import ConfigError
from crossdvp.paths import data_dir

__all__ = ["DEFAULT_GRACE_S", "DEFAULT_LEDGER_ID", "Settings", "default_database_url"]

DEFAULT_LEDGER_ID = "crossdvp-payments"
DEFAULT_GRACE_S = 3600
_LEDGER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_database_url(env: Mapping[str, str] | None = None) -> str:
    """`sqlite:///<data dir>/payments.sqlite3` (the data directory is created on demand)."""
    directory: Path = data_dir(dict(env) if env is not None else None)
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'payments.sqlite3'}"


@dataclass(frozen=True, slots=True)
class Settings:
    """What a running ledger needs to know.

    Rejections (ConfigError): a ledger id that is not 1-64 of [A-Za-z0-9._-]; a negative grace.
    """

    database_url: str
    ledger_id: str = DEFAULT_LEDGER_ID
    grace_s: int = DEFAULT_GRACE_S

    def __post_init__(self) -> None:
        if not _LEDGER_ID.match(self.ledger_id):
            raise ConfigError(f"ledger_id {self.ledger_id!r} must be 1-64 characters of [A-Za-z0-9._-]")
        if self.grace_s < 0:
            raise ConfigError(f"grace_s must be >= 0, got {self.grace_s}")

    @property
    def network(self) -> str:
        return f"payments:{self.ledger_id}"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        ledger_id: str | None = None,
        grace_s: int | None = None,
    ) -> Settings:
        """Explicit arguments win; then CROSSDVP_PAYMENTS_{DATABASE_URL,LEDGER_ID,GRACE_S}; then defaults."""
        source = os.environ if env is None else env
        url = database_url or source.get("CROSSDVP_PAYMENTS_DATABASE_URL") or default_database_url(env)
        lid = ledger_id or source.get("CROSSDVP_PAYMENTS_LEDGER_ID") or DEFAULT_LEDGER_ID
        if grace_s is None:
            raw = source.get("CROSSDVP_PAYMENTS_GRACE_S")
            try:
                grace_s = int(raw) if raw else DEFAULT_GRACE_S
            except ValueError as exc:
                raise ConfigError(f"CROSSDVP_PAYMENTS_GRACE_S must be an integer, got {raw!r}") from exc
        return cls(database_url=url, ledger_id=lid, grace_s=grace_s)
