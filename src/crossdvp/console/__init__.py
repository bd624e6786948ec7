"""The web console: watch settlements, their legs and signatures, the DON and the ledgers, live.

It reads public state only (the nodes' APIs, the chain, the ledger's balances and holds) and never
serves a key or credential. `crossdvp console` runs it; `create_app` builds the ASGI app.
"""

from __future__ import annotations

from crossdvp.console.app import create_app
from crossdvp.console.config import ConsoleConfig, config_from_devnet, config_from_toml
from crossdvp.console.service import Console

__all__ = ["Console", "ConsoleConfig", "config_from_devnet", "config_from_toml", "create_app"]
