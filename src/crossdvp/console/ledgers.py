"""The ledgers page's view: fund-token holders and supply, payment accounts with available/held."""

from __future__ import annotations

from crossdvp.console._lookups import Lookups
from crossdvp.console.config import ConsoleConfig
from crossdvp.console.facts import ChainFacts, LedgerFacts
from crossdvp.console.format import currency_decimals
from crossdvp.console.views import AccountView, HolderView, LedgersView, Money, TokenView

__all__ = ["build_ledgers"]


def _percent(part: int, whole: int) -> str:
    if whole <= 0:
        return "—"
    hundredths = part * 10_000 // whole  # integer arithmetic: 2 decimals, truncated
    return f"{hundredths // 100}.{hundredths % 100:02d} %"


def build_ledgers(config: ConsoleConfig, chain: ChainFacts, ledger: LedgerFacts) -> LedgersView:
    ctx = Lookups(config, chain, ledger)
    token_view = None
    if chain.token is not None:
        t = chain.token
        token_view = TokenView(
            network=chain.network,
            address=t.address,
            name=t.name,
            symbol=t.symbol,
            supply=Money(t.total_supply, t.decimals, t.symbol),
            holders=tuple(
                HolderView(
                    ctx.party(address),
                    Money(balance, t.decimals, t.symbol),
                    _percent(balance, t.total_supply),
                )
                for address, balance in chain.holders
            ),
            holders_sum_matches_supply=sum(b for _, b in chain.holders) == t.total_supply,
        )
    accounts = tuple(
        AccountView(
            account=ctx.party(a.account_id),
            participant_id=a.participant_id,
            currency=a.currency,
            available=Money(a.available_minor, currency_decimals(a.currency), a.currency),
            held=Money(a.held_minor, currency_decimals(a.currency), a.currency),
            frozen=a.frozen,
        )
        for a in ledger.accounts
    )
    return LedgersView(
        token=token_view,
        chain_error=chain.error,
        ledger_network=ledger.network,
        ledger_time_s=ledger.time_s,
        accounts=accounts,
        ledger_error=ledger.error,
    )
