"""Lookups every view builder shares: party names, asset decimals, the facts indexed by settlement."""

from __future__ import annotations

from crossdvp.console.config import ConsoleConfig
from crossdvp.console.facts import ChainFacts, ChainLegEvent, HoldFact, LedgerFacts
from crossdvp.console.format import currency_decimals, short_hex
from crossdvp.console.views import Money, PartyRef

__all__ = ["Lookups"]


class Lookups:
    """The lookups every builder needs: party names, asset decimals, the chain's and ledger's facts."""

    def __init__(self, config: ConsoleConfig, chain: ChainFacts, ledger: LedgerFacts) -> None:
        self.config = config
        self.chain = chain
        self.ledger = ledger
        self.signer_names = {n.signer: n.name for n in config.nodes}
        self.events: dict[tuple[str, int | None], list[ChainLegEvent]] = {}
        for event in chain.events:
            self.events.setdefault((event.settlement_id, event.leg_index), []).append(event)
        self.holds: dict[tuple[str, int], HoldFact] = {
            (h.settlement_id, h.leg_index): h for h in ledger.holds
        }

    def party(self, identifier: str) -> PartyRef:
        known = self.config.party_for(identifier)
        if known is not None:
            return PartyRef(identifier, known.name)
        if identifier.lower() == self.config.chain.asset.escrow:
            return PartyRef(identifier, "DvP escrow")
        return PartyRef(identifier)

    def kind(self, network: str) -> str:
        if network == self.config.chain.network:
            return "chain"
        if network == self.config.ledger.network:
            return "ledger"
        return "other"

    def money(self, network: str, asset: str, amount_minor: int) -> Money:
        token = self.chain.token
        if self.kind(network) == "chain":
            if token is not None and asset.lower() == token.address:
                return Money(amount_minor, token.decimals, token.symbol)
            return Money(amount_minor, 0, short_hex(asset))
        if self.kind(network) == "ledger":
            return Money(amount_minor, currency_decimals(asset), asset)
        return Money(amount_minor, 0, asset)
