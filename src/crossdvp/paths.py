"""Where crossdvp finds its tools and keeps its data.

The project root's `node_modules` holds anvil and solc (installed by `make bootstrap`); the data
directory (SQLite files, logs, devnet state) is `$CROSSDVP_HOME`, else `./.crossdvp`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from crossdvp.errors import ConfigError

__all__ = ["anvil_binary", "data_dir", "project_root"]


def project_root() -> Path:
    """The checkout this package was installed from (editable install), found by its package.json."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "package.json").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def data_dir(env: dict[str, str] | None = None) -> Path:
    """The data directory: $CROSSDVP_HOME if set, else ./.crossdvp (created on demand by callers)."""
    source = os.environ if env is None else env
    configured = source.get("CROSSDVP_HOME")
    return Path(configured) if configured else Path.cwd() / ".crossdvp"


def anvil_binary() -> Path:
    """The native anvil binary shipped inside the npm package (not its node wrapper, so that the
    PID we start is anvil's own). $CROSSDVP_ANVIL overrides."""
    override = os.environ.get("CROSSDVP_ANVIL")
    if override:
        return Path(override)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    candidate = project_root() / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if not candidate.is_file():
        raise ConfigError(f"anvil not found at {candidate}; run `make bootstrap` from the project root")
    return candidate
