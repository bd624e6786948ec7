"""`Desk`: what a trading desk does to settle a DvP, step by step, against the real networks.

    desk = Desk.from_devnet(Path(".crossdvp/devnet"))
    terms = desk.propose(asset_amount=10 * 10**18, cash_amount=1_000_000, currency="USD",
                         buyer="buyer", seller="seller", deadline_s=desk.deadline_in(60))
    desk.register(terms)            # every node; f+1 acceptances needed
    desk.lock_asset(terms, "seller")   # DvPEscrow.lockWithPermit: no separate approve
    desk.place_hold(terms, "buyer")    # the cash hold on the payment ledger
    outcome = desk.wait(terms.settlement_id, on_progress=print)

`propose` validates everything it can before anything is registered or locked: known parties,
positive amounts, a deadline in the future by the ledgers' own clocks, KYC, balances. `wait` reads
the ledgers' own state (escrow getLock, ledger holds and reports) and the nodes' view (decision,
report, signers, deliveries); it never trusts a single node for the outcome on a ledger.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from crossdvp.chain.client import EvmClient
from crossdvp.chain.contracts import LockEntry, LockState
from crossdvp.chain.errors import ChainError
from crossdvp.client._views import decision_from_views, node_deliveries, problem_detail, terms_from_views
from crossdvp.client.amounts import currency_decimals
from crossdvp.client.config import DeskConfig, PartyConfig
from crossdvp.client.errors import InvalidOrder, LockError, RegistrationError, SettlementTimeout
from crossdvp.client.status import Balances, LegStatus, SettlementOutcome, SettlementStatus
from crossdvp.payments.client import PaymentsApiError, PaymentsClient
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.terms import MAX_AMOUNT_MINOR, Leg, Terms

__all__ = ["Desk"]

# Lock states after which the chain leg is final (the report, a claim or a reclaim took effect).
_CHAIN_FINAL = {
    LockState.SETTLED,
    LockState.ABORTED,
    LockState.SETTLE_OWED,
    LockState.ABORT_OWED,
    LockState.RECLAIMED,
}
_HOLD_FINAL = {"settled", "released", "reclaimed"}


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


class Desk:
    """The SDK. `rng` supplies settlement ids and `clock` the local time (both injectable for tests);
    every other time is read from the ledgers."""

    def __init__(
        self,
        config: DeskConfig,
        *,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        clock: Callable[[], float] = time.time,
        min_lead_s: int = 5,
        http_timeout_s: float = 3.0,
    ) -> None:
        self.config = config
        self._rng = rng
        self._clock = clock
        self.min_lead_s = min_lead_s
        self.evm = EvmClient(config.rpc_url, timeout_s=10.0)
        self.contracts = config.asset.bind(self.evm)
        self._http = httpx.Client(timeout=http_timeout_s)
        self._ledgers: dict[str, PaymentsClient] = {}
        self._terms: dict[bytes, Terms] = {}
        self._answering = 0  # how many nodes answered the last status read

    @classmethod
    def from_devnet(cls, directory: Path, **kwargs: Any) -> Desk:
        """A desk on the devnet in `directory`. Raises ConfigError if there is none (or incomplete)."""
        return cls(DeskConfig.from_devnet(directory), **kwargs)

    def close(self) -> None:
        self._http.close()
        for client in self._ledgers.values():
            client.close()

    def __enter__(self) -> Desk:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- clocks ---------------------------------------------------------------------------------

    @property
    def chain_network(self) -> str:
        return self.config.asset.network

    def now_s(self) -> int:
        """The latest of the local clock, the chain's latest block time and the ledger's clock: a
        deadline must be ahead of every ledger that will judge it."""
        times = [int(self._clock()), self.evm.latest_block().timestamp]
        # An unreachable ledger is reported by the balance checks, with a clearer message.
        with contextlib.suppress(PaymentsApiError):
            times.append(int(self._any_ledger().info()["time_s"]))
        return max(times)

    def deadline_in(self, seconds: int) -> int:
        return self.now_s() + seconds

    # -- ledgers --------------------------------------------------------------------------------

    def _ledger(self, party: PartyConfig) -> PaymentsClient:
        client = self._ledgers.get(party.name)
        if client is None:
            client = PaymentsClient(self.config.payments_url, self.config.payments_key(party), timeout_s=5.0)
            self._ledgers[party.name] = client
        return client

    def _any_ledger(self) -> PaymentsClient:
        return self._ledger(next(iter(self.config.parties.values())))

    def balances(self, names: Iterable[str] | None = None) -> dict[str, Balances]:
        """Each party's fund shares and cash (available, held) per currency, read now."""
        result: dict[str, Balances] = {}
        for name in names if names is not None else self.config.parties:
            party = self.config.party(name, role="party")
            shares = self.contracts.token.balance_of(party.chain_address)
            cash: dict[str, tuple[int, int]] = {}
            for currency, account_id in party.accounts.items():
                account = self._ledger(party).account(account_id)
                cash[currency] = (int(account["available_minor"]), int(account["held_minor"]))
            result[name] = Balances(party=name, shares_minor=shares, cash=cash)
        return result

    # -- step 1: terms --------------------------------------------------------------------------

    def propose(
        self,
        *,
        asset_amount: int,
        cash_amount: int,
        currency: str,
        buyer: str,
        seller: str,
        deadline_s: int,
    ) -> Terms:
        """DvP terms with a fresh random settlement id: `asset_amount` fund shares (minor units) from
        the seller's chain address to the buyer's, `cash_amount` (minor units of `currency`) from the
        buyer's ledger account to the seller's. Nothing is sent anywhere.

        Rejects (InvalidOrder, naming the field): an unknown buyer or seller, the same party on both
        sides, a currency either party has no account in, an amount that is not a positive integer
        (or exceeds 2**96-1), a deadline less than `min_lead_s` ahead of the ledgers' clocks, a party
        whose chain address is not KYC-allowed, a paused token, a frozen account, a seller without
        enough shares or a buyer without enough available cash.
        """
        seller_party = self.config.party(seller, role="seller")
        buyer_party = self.config.party(buyer, role="buyer")
        if seller_party.name == buyer_party.name:
            raise InvalidOrder(f"buyer and seller are the same party ({buyer!r})")
        currency_decimals(currency)
        for role, party in (("buyer", buyer_party), ("seller", seller_party)):
            if currency not in party.accounts:
                held = ", ".join(sorted(party.accounts)) or "none"
                raise InvalidOrder(f"{role}: party {party.name} has no {currency} account (has: {held})")
        for name, amount in (("asset amount", asset_amount), ("cash amount", cash_amount)):
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise InvalidOrder(f"{name} must be an integer number of minor units, got {amount!r}")
            if amount <= 0:
                raise InvalidOrder(f"{name} must be positive, got {amount}")
            if amount > MAX_AMOUNT_MINOR:
                raise InvalidOrder(f"{name} {amount} exceeds the maximum {MAX_AMOUNT_MINOR} minor units")
        if not isinstance(deadline_s, int) or isinstance(deadline_s, bool):
            raise InvalidOrder(f"deadline must be unix seconds (an integer), got {deadline_s!r}")
        now = self.now_s()
        if deadline_s < now + self.min_lead_s:
            raise InvalidOrder(
                f"deadline {deadline_s} is not at least {self.min_lead_s}s in the future "
                f"(the ledgers' time is {now}); choose a later deadline"
            )
        self._check_chain(seller_party, buyer_party, asset_amount)
        self._check_cash(buyer_party, seller_party, currency, cash_amount)
        settlement_id = self._rng(32)
        try:
            terms = Terms(
                settlement_id=settlement_id,
                deadline_s=deadline_s,
                legs=(
                    Leg(
                        network=self.chain_network,
                        asset=self.config.asset.token,
                        amount_minor=asset_amount,
                        payer=seller_party.chain_address,
                        payee=buyer_party.chain_address,
                    ),
                    Leg(
                        network=self.config.payments_network,
                        asset=currency,
                        amount_minor=cash_amount,
                        payer=buyer_party.accounts[currency],
                        payee=seller_party.accounts[currency],
                    ),
                ),
            )
        except SettlementError as exc:
            raise InvalidOrder(str(exc)) from None
        self._terms[terms.settlement_id] = terms
        return terms

    def _check_chain(self, seller: PartyConfig, buyer: PartyConfig, amount: int) -> None:
        token, registry = self.contracts.token, self.contracts.registry
        for role, party in (("seller", seller), ("buyer", buyer)):
            if not registry.is_allowed(party.chain_address):
                raise InvalidOrder(
                    f"{role}: party {party.name}'s chain address {party.chain_address} is not KYC-allowed "
                    "by the fund's registry (or is blocked)"
                )
        if token.paused():
            raise InvalidOrder("the fund token is paused: no shares can move until it is unpaused")
        held = token.balance_of(seller.chain_address)
        if held < amount:
            raise InvalidOrder(
                f"seller: insufficient fund shares: party {seller.name} holds {held} minor units, "
                f"the trade needs {amount}"
            )

    def _check_cash(self, buyer: PartyConfig, seller: PartyConfig, currency: str, amount: int) -> None:
        for role, party in (("buyer", buyer), ("seller", seller)):
            try:
                account = self._ledger(party).account(party.accounts[currency])
            except PaymentsApiError as exc:
                raise InvalidOrder(f"{role}: cannot read {party.name}'s {currency} account: {exc}") from None
            if account.get("frozen"):
                raise InvalidOrder(f"{role}: {party.name}'s account {account['account_id']} is frozen")
            if role == "buyer" and int(account["available_minor"]) < amount:
                raise InvalidOrder(
                    f"buyer: insufficient cash: party {party.name} has {account['available_minor']} "
                    f"{currency} minor units available, the trade needs {amount}"
                )

    # -- step 2: registration -------------------------------------------------------------------

    def register(self, terms: Terms) -> tuple[str, ...]:
        """Send the terms to every node; returns the names of the nodes that accepted them.

        Raises RegistrationError if fewer than f+1 accepted (a settlement known to fewer cannot be
        decided), naming each node's reason."""
        self._terms[terms.settlement_id] = terms
        accepted: list[str] = []
        failures: list[str] = []
        for node in self.config.nodes:
            try:
                response = self._http.post(f"{node.url}/v1/settlements", json=terms.to_dict())
            except httpx.HTTPError as exc:
                failures.append(f"{node.name}: unreachable ({type(exc).__name__})")
                continue
            if response.status_code in (200, 201):
                accepted.append(node.name)
            else:
                detail = problem_detail(response)
                failures.append(f"{node.name}: HTTP {response.status_code} {detail}")
        if len(accepted) < self.config.f + 1:
            raise RegistrationError(
                f"only {len(accepted)} of {len(self.config.nodes)} nodes accepted the terms, "
                f"{self.config.f + 1} are needed: " + "; ".join(failures)
            )
        return tuple(accepted)

    # -- step 3: locks --------------------------------------------------------------------------

    def lock_asset(self, terms: Terms, seller: str) -> str:
        """Lock the seller's chain leg(s) in the escrow with one lockWithPermit each (the EIP-2612
        permit replaces a separate approve); returns the last lock's transaction hash.

        Rejects: InvalidOrder if the party pays no chain leg of these terms; LockError with the
        escrow's decoded reason if the chain refuses (deadline passed, lock exists, payee refused)."""
        party = self.config.party(seller, role="seller")
        legs = [
            (i, leg)
            for i, leg in enumerate(terms.legs)
            if leg.network == self.chain_network and leg.payer == party.chain_address
        ]
        if not legs:
            raise InvalidOrder(
                f"seller: party {party.name} pays no leg on {self.chain_network} in these terms"
            )
        key = self.config.chain_key(party)
        sender = self.evm.account(key)
        tx_hash = ""
        for index, leg in legs:
            try:
                permit = self.contracts.token.sign_permit(
                    key, self.config.asset.escrow, leg.amount_minor, terms.deadline_s
                )
                receipt = self.contracts.escrow.lock_with_permit(
                    sender,
                    terms.settlement_id,
                    index,
                    leg.asset,
                    leg.amount_minor,
                    leg.payee,
                    terms.deadline_s,
                    terms.terms_hash,
                    permit,
                )
            except ChainError as exc:
                raise LockError(f"the escrow refused the lock of leg {index}: {exc}") from None
            tx_hash = _hex(receipt.tx_hash)
        return tx_hash

    def place_hold(self, terms: Terms, buyer: str) -> str:
        """Place the buyer's hold(s) on the payment ledger for its cash leg(s); returns the hold id.
        The idempotency key is derived from (settlement id, leg), so a retried call never holds twice.

        Rejects: InvalidOrder if the party pays no ledger leg of these terms; LockError with the
        ledger's problem detail if it refuses (deadline passed, insufficient funds, frozen)."""
        party = self.config.party(buyer, role="buyer")
        accounts = set(party.accounts.values())
        legs = [
            (i, leg)
            for i, leg in enumerate(terms.legs)
            if leg.network == self.config.payments_network and leg.payer in accounts
        ]
        if not legs:
            raise InvalidOrder(f"buyer: party {party.name} pays no leg on {self.config.payments_network}")
        hold_id = ""
        for index, leg in legs:
            try:
                hold = self._ledger(party).place_hold(
                    settlement_id=terms.settlement_id,
                    leg_index=index,
                    terms_hash=terms.terms_hash,
                    payer_account=leg.payer,
                    payee_account=leg.payee,
                    currency=leg.asset,
                    amount_minor=leg.amount_minor,
                    deadline_s=terms.deadline_s,
                    idempotency_key=f"hold-{terms.settlement_id.hex()}-{index}",
                )
            except PaymentsApiError as exc:
                raise LockError(f"the ledger refused the hold of leg {index}: {exc}") from None
            hold_id = str(hold["hold_id"])
        return hold_id

    # -- step 4: outcome ------------------------------------------------------------------------

    def status(self, settlement_id: bytes) -> SettlementStatus:
        """The settlement as the ledgers and the nodes show it now (see crossdvp.client.status).

        Terms come from this desk if it proposed them, else from the nodes; a settlement no node
        knows has stage UNKNOWN."""
        views = self._node_views(settlement_id)
        terms = self._terms.get(settlement_id) or terms_from_views(settlement_id, views)
        decision, decided_at = decision_from_views(views)
        report = next((v["report"] for v in views if v.get("report")), None)
        execution_id = str(report["execution_id"]) if report else None
        signers = tuple(str(s) for s in report["signers"]) if report else ()
        deliveries = node_deliveries(views)
        forwarder_tx = deliveries.get(self.chain_network, (None, None))[1]
        legs: list[LegStatus] = []
        delivered: dict[str, bool] = {}
        ledger_report = None
        if terms is not None:
            # Every chain leg's lock comes from the settlement's escrow events: read them once.
            history = (
                self.contracts.escrow.lock_history(terms.settlement_id, self.config.asset.deployed_at_block)
                if any(leg.network == self.chain_network for leg in terms.legs)
                else []
            )
            for index, leg in enumerate(terms.legs):
                legs.append(self._leg_status(terms, index, leg, history))
            # Read after the legs: the ledger stores a report in the transaction that settles its holds,
            # so a hold seen settled above always has its report here (read first, it could be missed).
            ledger_report = self._ledger_report(terms, execution_id)
            for network in sorted(terms.networks()):
                on_network = [s for s in legs if s.network == network]
                if decision is None:
                    delivered[network] = False
                    continue
                matched_done = all(s.delivered for s in on_network if s.locked)
                if all(s.locked for s in on_network):
                    delivered[network] = matched_done
                else:
                    # A leg with no lock (or one that does not match the terms) is not moved by the
                    # report; the network's own record of the report is the proof it was delivered.
                    if network == self.config.payments_network:
                        recorded = ledger_report is not None
                    else:
                        recorded = deliveries.get(network, (None, None))[0] == "delivered"
                    delivered[network] = matched_done and recorded
        if forwarder_tx is None and execution_id is not None and delivered.get(self.chain_network):
            # The chain settled the legs, and the sending node has not recorded its transaction yet
            # (it does once it has the receipt): the forwarder's own log names it.
            forwarder_tx = self._forwarder_tx(execution_id)
        return SettlementStatus(
            settlement_id=settlement_id,
            terms=terms,
            legs=tuple(legs),
            nodes_knowing=len(views),
            nodes_answering=self._answering,
            decision=decision,
            decided_at_s=decided_at,
            report_execution_id=execution_id,
            signers=signers,
            forwarder_tx=forwarder_tx,
            ledger_report=ledger_report,
            delivered=delivered,
        )

    def wait(
        self,
        settlement_id: bytes,
        *,
        on_progress: Callable[[SettlementStatus], None] | None = None,
        timeout_s: float | None = None,
        poll_s: float = 0.3,
        balances_before: Mapping[str, Balances] | None = None,
    ) -> SettlementOutcome:
        """Poll `status` until the settlement is final on every network; `on_progress` is called with
        each status that differs from the previous one. The default timeout is the time left to the
        deadline plus two minutes (an ABORT comes only after the deadline).

        Raises SettlementTimeout (retryable: the settlement may still complete) if it is not final
        in time."""
        terms = self._terms.get(settlement_id)
        if timeout_s is None:
            left = 0 if terms is None else max(0, terms.deadline_s - int(self._clock()))
            timeout_s = left + 120.0
        give_up = time.monotonic() + timeout_s
        previous: dict[str, Any] | None = None
        while True:
            status = self.status(settlement_id)
            snapshot = status.to_dict()
            if snapshot != previous:
                previous = snapshot
                if on_progress is not None:
                    on_progress(status)
            if status.final:
                names = self._parties_of(status.terms)
                return SettlementOutcome(
                    status=status,
                    balances_before=dict(balances_before or {}),
                    balances_after=self.balances(names),
                )
            if time.monotonic() >= give_up:
                raise SettlementTimeout(
                    f"settlement {_hex(settlement_id)} is not final after {timeout_s:.0f}s "
                    f"(stage {status.stage.value}); it may still complete: "
                    f"`crossdvp status {_hex(settlement_id)}`"
                )
            time.sleep(poll_s)

    def settle(
        self,
        terms: Terms,
        *,
        buyer: str,
        seller: str,
        hold: bool = True,
        on_progress: Callable[[SettlementStatus], None] | None = None,
        timeout_s: float | None = None,
    ) -> SettlementOutcome:
        """register, lock_asset, place_hold (unless `hold` is false), wait — with balances before and
        after. Raises what those steps raise."""
        before = self.balances([buyer, seller])
        self.register(terms)
        self.lock_asset(terms, seller)
        if hold:
            self.place_hold(terms, buyer)
        return self.wait(
            terms.settlement_id, on_progress=on_progress, timeout_s=timeout_s, balances_before=before
        )

    # -- reading ----------------------------------------------------------------------------------

    def _node_views(self, settlement_id: bytes) -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = []
        answering = 0
        for node in self.config.nodes:
            try:
                response = self._http.get(f"{node.url}/v1/settlements/{_hex(settlement_id)}", timeout=1.0)
            except httpx.HTTPError:
                continue  # a node that is down; the others speak for the DON
            answering += 1
            if response.status_code == 200:
                views.append(response.json())
        self._answering = answering
        return views

    def _leg_status(self, terms: Terms, index: int, leg: Leg, history: Sequence[LockEntry]) -> LegStatus:
        base = {
            "index": index,
            "network": leg.network,
            "amount_minor": leg.amount_minor,
            "asset": leg.asset,
            "payer": leg.payer,
            "payee": leg.payee,
        }
        if leg.network == self.chain_network:
            # The leg's lock as the escrow pays it: its first record under these terms.
            entry = next(
                (
                    e
                    for e in history
                    if e.record.leg_index == index and e.record.terms_hash == terms.terms_hash
                ),
                None,
            )
            matches = entry is not None
            lock_state = LockState.NONE if entry is None else entry.state
            tx = None if entry is None else _hex(entry.lock_tx)
            return LegStatus(
                kind="chain",
                state=lock_state.name.lower(),
                lock_ref=tx,
                locked=matches,
                delivered=matches and lock_state in _CHAIN_FINAL,
                **base,  # type: ignore[arg-type]
            )
        if leg.network == self.config.payments_network:
            party = self.config.party_by_account(leg.payer) or self.config.party_by_account(leg.payee)
            hold = None
            if party is not None:
                page = self._ledger(party).holds(settlement_id=terms.settlement_id)
                hold = next((h for h in page["items"] if int(h["leg_index"]) == index), None)
            matches = hold is not None and str(hold["terms_hash"]).lower() == _hex(terms.terms_hash)
            state = "none" if hold is None else str(hold["state"])
            return LegStatus(
                kind="ledger",
                state=state if party is not None else "unknown",
                lock_ref=None if hold is None else str(hold["hold_id"]),
                locked=matches,
                delivered=matches and state in _HOLD_FINAL,
                **base,  # type: ignore[arg-type]
            )
        return LegStatus(kind="other", state="unknown", lock_ref=None, locked=False, delivered=False, **base)  # type: ignore[arg-type]

    def _forwarder_tx(self, execution_id: str) -> str | None:
        """The transaction in which the forwarder delivered report `execution_id` to the escrow."""
        report = bytes.fromhex(execution_id.removeprefix("0x"))
        since = self.config.asset.deployed_at_block
        events = self.contracts.forwarder.report_processed_events(
            self.config.asset.escrow, report, since, latest=True
        )
        delivered = [e for e in events if e.result]
        return _hex(delivered[0].tx_hash) if delivered else None

    def _ledger_report(self, terms: Terms, execution_id: str | None) -> str | None:
        """The ledger's own record of the report (GET /v1/reports/{id}), summarised; None if it has
        not applied it (or no report exists yet)."""
        if execution_id is None or not self.config.parties:
            return None
        try:
            record = self._any_ledger().get_report(execution_id)
        except PaymentsApiError as exc:
            if exc.status == 404:
                return None
            raise
        parts = []
        for item in record.items:
            if item.settlement_id != terms.settlement_id:
                continue
            holds = ", ".join(f"{h['hold_id']} {h['outcome']}" for h in item.holds)
            reason = f" ({item.reason})" if item.reason else ""
            parts.append(f"{item.decision} {item.outcome}{reason}" + (f": {holds}" if holds else ""))
        return "; ".join(parts) or "applied (no item for this settlement)"

    def _parties_of(self, terms: Terms | None) -> list[str]:
        if terms is None:
            return []
        names: list[str] = []
        for leg in terms.legs:
            for who in (leg.payer, leg.payee):
                party = (
                    self.config.party_by_address(who)
                    if leg.network == self.chain_network
                    else self.config.party_by_account(who)
                )
                if party is not None and party.name not in names:
                    names.append(party.name)
        return names
