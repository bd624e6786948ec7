"""The harness's handle on a running devnet: the contracts, the ledger as admin, the DON's keys, and
the parties the workload trades between.

The devnet onboards one seller and one buyer; a chaos run needs more (several settlements in flight
per party, a party whose account gets frozen, a payee whose KYC is revoked), so `add_party` onboards
more the same way: a fresh chain key funded with gas, KYC-allowed, minted fund shares; a ledger
participant with an account, cash and an API key. Every mint and cash-in is counted in
`expected_*`, the totals the conservation invariant checks against.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from crossdvp.chain.anvil import dev_keys
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.deploy import AssetNetwork, BoundAssetNetwork
from crossdvp.chaos.evidence import Expectations
from crossdvp.devnet.keyfiles import load_key, read_secret
from crossdvp.devnet.state import DevnetState
from crossdvp.payments.client import PaymentsClient
from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    report_context,
    sign_report,
)

__all__ = ["Party", "RwLock", "SignedReport", "World"]

_ETH = 10**18


class RwLock:
    """Many readers or one writer: the workload's chain writes share it, a reorg takes it alone (a
    transaction sent while blocks are being reverted could be lost and leave a nonce gap)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield None
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield None
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    chain_key: bytes
    chain_address: str
    account_id: str
    api_key: str


@dataclass(frozen=True, slots=True)
class SignedReport:
    raw: bytes
    context: bytes
    signatures: tuple[bytes, ...]


class World:
    """Connections to one devnet. Close with `close()`."""

    def __init__(self, state: DevnetState, *, currency: str = "USD") -> None:
        chain, payments, don = state.require_complete()
        if state.workflow is None:
            raise ValueError("devnet state has no workflow identity")
        self.state = state
        self.currency = currency
        self.asset: AssetNetwork = chain.asset
        self.evm = EvmClient(chain.rpc_url, timeout_s=15.0)
        self.contracts: BoundAssetNetwork = chain.asset.bind(self.evm)
        self.admin: Sender = self.evm.account(dev_keys()[0])
        self.don: DonConfig = don
        self.workflow: WorkflowIdentity = state.workflow
        self.payments_url = payments.url
        self.payments_network = payments.network
        self.database_url = payments.database_url
        self.admin_api_key = read_secret(payments.admin_key_file)
        self.ledger = PaymentsClient(payments.url, self.admin_api_key, timeout_s=10.0)
        password = read_secret(state.password_file)
        self.don_keys: tuple[bytes, ...] = tuple(load_key(node.keystore, password) for node in state.nodes)
        self.parties: dict[str, Party] = {}
        self.chain_writes = RwLock()
        self._totals_lock = threading.Lock()
        self._clients: dict[str, PaymentsClient] = {}
        self.holders: set[str] = {p.chain_address for p in state.parties.values()}
        self.expected_supply = self.contracts.token.total_supply()
        self.expected_cash = self._ledger_total()

    def close(self) -> None:
        self.ledger.close()
        for client in self._clients.values():
            client.close()

    def _ledger_total(self) -> int:
        total, after = 0, None
        while True:
            page = self.ledger.accounts(after=after, limit=100)
            for account in page["items"]:
                if account["currency"] == self.currency:
                    total += int(account["available_minor"]) + int(account["held_minor"])
            after = page.get("next_after")
            if not after:
                return total

    def expectations(self) -> Expectations:
        return Expectations(
            token_supply=self.expected_supply,
            token_holders=tuple(sorted(self.holders)),
            ledger_totals={self.currency: self.expected_cash},
        )

    def client_of(self, party: Party) -> PaymentsClient:
        client = self._clients.get(party.name)
        if client is None:
            client = PaymentsClient(self.payments_url, party.api_key, timeout_s=10.0)
            self._clients[party.name] = client
        return client

    def add_party(self, name: str, key: bytes, *, shares_minor: int, cash_minor: int) -> Party:
        """Onboard a party with chain key `key` on both networks (see the module docstring). Safe to
        call from several threads at once (the admin's nonces are counted under a lock)."""
        address = str(Account.from_key(key).address).lower()
        self.evm.transfer_eth(self.admin, address, 10 * _ETH)
        self.contracts.registry.set_allowed(self.admin, address)
        if shares_minor:
            self.contracts.token.mint(self.admin, address, shares_minor)
            with self._totals_lock:
                self.expected_supply += shares_minor
        account_id = f"{name}-{self.currency.lower()}"
        self.ledger.create_participant(name, f"chaos party {name}")
        self.ledger.open_account(account_id, name, self.currency)
        api_key = str(self.ledger.create_credential("participant", name)["api_key"])
        if cash_minor:
            self.ledger.cash_in(account_id, cash_minor, "chaos opening balance")
            with self._totals_lock:
                self.expected_cash += cash_minor
        party = Party(name=name, chain_key=key, chain_address=address, account_id=account_id, api_key=api_key)
        with self._totals_lock:
            self.parties[name] = party
            self.holders.add(address)
        return party

    def sign(
        self, items: list[ReportItem], *, timestamp_s: int, signer_indices: tuple[int, ...]
    ) -> SignedReport:
        """A report over `items` signed by the DON keys at `signer_indices` — the devnet's own keys,
        used only to build deliberately faulty executions in tests (a DON that equivocates)."""
        raw = build_report(items, timestamp_s=timestamp_s, don=self.don, workflow=self.workflow)
        context = report_context(self.don)
        return SignedReport(
            raw=raw,
            context=context,
            signatures=tuple(sign_report(raw, context, self.don_keys[i]) for i in signer_indices),
        )

    def log_dir(self) -> Path:
        return self.state.directory / "logs"
