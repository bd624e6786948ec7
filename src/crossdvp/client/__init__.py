"""The trading desk's SDK: propose DvP terms, register them with the DON, lock each leg on its own
ledger, and follow the settlement to its outcome. Used by `crossdvp settle`/`status`, the demo and
the tests.

    from crossdvp.client import Desk
    with Desk.from_devnet(Path(".crossdvp/devnet")) as desk:
        terms = desk.propose(asset_amount=10 * 10**18, cash_amount=1_000_000, currency="USD",
                             buyer="buyer", seller="seller", deadline_s=desk.deadline_in(60))
        outcome = desk.settle(terms, buyer="buyer", seller="seller")
        print(outcome.decision.name)   # SETTLE
"""

from __future__ import annotations

from crossdvp.client.amounts import currency_decimals, format_amount, parse_amount
from crossdvp.client.config import DeskConfig, NodeEndpoint, PartyConfig
from crossdvp.client.desk import Desk
from crossdvp.client.errors import DeskError, InvalidOrder, LockError, RegistrationError, SettlementTimeout
from crossdvp.client.status import Balances, LegStatus, SettlementOutcome, SettlementStatus, Stage

__all__ = [
    "Balances",
    "Desk",
    "DeskConfig",
    "DeskError",
    "InvalidOrder",
    "LegStatus",
    "LockError",
    "NodeEndpoint",
    "PartyConfig",
    "RegistrationError",
    "SettlementOutcome",
    "SettlementStatus",
    "SettlementTimeout",
    "Stage",
    "currency_decimals",
    "format_amount",
    "parse_amount",
]
