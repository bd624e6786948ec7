"""Read a `LedgerSnapshot` from the real networks: the ledgers' own records, never a node's belief.

Chain: every escrow event since deployment (Locked gives each lock's facts and its block time;
Settled/Aborted/Owed/Reclaimed are its executions, and replayed they give each lock's state now), token
balances, and every forwarder `ReportProcessed` that reached the escrow successfully, whose
signatures are re-verified from the transaction's own calldata.
Payment ledger: its event feed from the start (each hold's placement and executions), the reports it
stored for the holds it executed (signatures re-verified), its accounts' totals, and its journal
(hash chain, zero-sum postings, cached balances, held = open holds) verified on the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crossdvp.chain.client import EvmClient
from crossdvp.chain.contracts import (
    AbortedEvent,
    DvPEscrow,
    EscrowEvent,
    FundToken,
    KeystoneForwarder,
    LockedEvent,
    LockState,
    OwedEvent,
    ReclaimedEvent,
    SettledEvent,
    lock_history,
)
from crossdvp.chain.deploy import AssetNetwork
from crossdvp.chaos.invariants import (
    BalanceCheck,
    ExecutedReport,
    LedgerSnapshot,
    LegOutcome,
    LockRecord,
    SettlementRecord,
)
from crossdvp.payments.client import FeedEvent, PaymentsClient
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import DonConfig, decode_report, verify_report
from crossdvp.settlement.terms import Decision, Terms

__all__ = ["Expectations", "read_snapshot", "verify_ledger_journal"]

_CHAIN_OUTCOME = {
    LockState.LOCKED: LegOutcome.LOCKED,
    LockState.SETTLED: LegOutcome.PAID,
    LockState.SETTLE_OWED: LegOutcome.PAID,  # the payee owns it; claimable once transferable
    LockState.ABORTED: LegOutcome.REFUNDED,
    LockState.ABORT_OWED: LegOutcome.REFUNDED,
    LockState.RECLAIMED: LegOutcome.REFUNDED,
}
_HOLD_OUTCOME = {
    "hold_settled": LegOutcome.PAID,
    "hold_released": LegOutcome.REFUNDED,
    "hold_reclaimed": LegOutcome.REFUNDED,
}
_ESCROW_HOLDS = (LockState.LOCKED, LockState.SETTLE_OWED, LockState.ABORT_OWED)


@dataclass(frozen=True, slots=True)
class Expectations:
    """What the harness itself put in: the totals conservation is checked against."""

    token_supply: int  # minted - burned by the harness and the devnet
    token_holders: tuple[str, ...]  # every address that may hold the token (parties, escrow)
    ledger_totals: Mapping[str, int]  # currency -> cash in - cash out


def verify_ledger_journal(database_url: str) -> tuple[bool, str]:
    """Run the ledger's own journal verification on its database (read-only): (ok, detail)."""
    from crossdvp.payments.journal import verify_journal
    from crossdvp.payments.store import make_engine

    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                check = verify_journal(conn)
    finally:
        engine.dispose()
    if check.ok:
        return True, f"{check.entries_checked} entries verified"
    return False, f"broken after {check.entries_checked} entries: {check.first_break}"


class _Blocks:
    """Block timestamps, each read once."""

    def __init__(self, evm: EvmClient) -> None:
        self._evm = evm
        self._times: dict[int, int] = {}

    def time(self, number: int) -> int:
        if number not in self._times:
            self._times[number] = self._evm.get_block(number).timestamp
        return self._times[number]


def _chain_locks(evm: EvmClient, asset: AssetNetwork) -> tuple[list[LockRecord], int]:
    """Every lock the escrow recorded, with its outcome now; and the balance its open locks hold."""
    escrow = DvPEscrow(evm, asset.escrow)
    blocks = _Blocks(evm)
    events = escrow.all_events(asset.deployed_at_block, "latest")
    executions: dict[tuple[bytes, int], list[int]] = {}
    for event in events:
        if isinstance(event, SettledEvent | AbortedEvent | OwedEvent | ReclaimedEvent):
            executions.setdefault((event.settlement_id, event.leg_index), []).append(event.block_number)
    # Each lock's state now, from its settlement's events: the i-th Locked event of a settlement is
    # the i-th entry of its history.
    by_settlement: dict[bytes, list[EscrowEvent]] = {}
    for event in events:
        by_settlement.setdefault(event.settlement_id, []).append(event)
    histories = {sid: iter(lock_history(evs)) for sid, evs in by_settlement.items()}
    records: list[LockRecord] = []
    held = 0
    for event in events:
        if not isinstance(event, LockedEvent):
            continue
        key = (event.settlement_id, event.leg_index)
        state = next(histories[event.settlement_id]).state
        if state in _ESCROW_HOLDS:
            held += event.amount
        done = executions.get(key, [])
        records.append(
            LockRecord(
                network=asset.network,
                leg_index=event.leg_index,
                settlement_id=event.settlement_id,
                terms_hash=event.terms_hash,
                asset=event.token,
                amount_minor=event.amount,
                payer=event.locker,
                payee=event.payee,
                deadline_s=event.deadline,
                locked_at_s=blocks.time(event.block_number),
                outcome=_CHAIN_OUTCOME.get(state, LegOutcome.LOCKED),
                final_at_s=blocks.time(min(done)) if done else None,
                executions=len(done),
            )
        )
    return records, held


def _decisions(raw_report: bytes) -> dict[bytes, Decision]:
    _, items = decode_report(raw_report)
    return {item.settlement_id: item.decision for item in items}


def _signatures_valid(raw: bytes, context: bytes, signatures: Sequence[bytes], don: DonConfig) -> bool:
    try:
        verify_report(raw, context, signatures, don)
    except SettlementError:
        return False
    return True


def _chain_reports(evm: EvmClient, asset: AssetNetwork, don: DonConfig) -> list[ExecutedReport]:
    """Reports the forwarder delivered to the escrow successfully, re-verified from calldata (of
    `escrow.deliver`, or of `forwarder.report` for a report someone sent it straight)."""
    forwarder = KeystoneForwarder(evm, asset.forwarder)
    contracts = {asset.forwarder: forwarder.contract, asset.escrow: DvPEscrow(evm, asset.escrow).contract}
    reports: list[ExecutedReport] = []
    event = forwarder.abi.event("ReportProcessed")
    logs = evm.get_logs(asset.forwarder, [event.topic0], asset.deployed_at_block, "latest")
    for log, args in ((log, event.decode(log.topics, log.data)) for log in logs):
        if not args["result"] or str(args["receiver"]).lower() != asset.escrow:
            continue
        tx = evm.request("eth_getTransactionByHash", ["0x" + log.tx_hash.hex()])
        _, params = contracts[str(tx["to"]).lower()].decode_function_input(tx["input"])
        raw, context, signatures = (
            bytes(params["rawReport"]),
            bytes(params["reportContext"]),
            params["signatures"],
        )
        try:
            decisions = _decisions(raw)
        except SettlementError:
            decisions = {}
        reports.append(
            ExecutedReport(
                network=asset.network,
                execution_id=bytes(args["workflowExecutionId"]),
                signatures_valid=_signatures_valid(raw, context, [bytes(s) for s in signatures], don),
                decisions=decisions,
            )
        )
    return reports


def _feed(payments: PaymentsClient) -> list[FeedEvent]:
    events: list[FeedEvent] = []
    cursor = 0
    while True:
        page = payments.events(after=cursor, limit=500)
        events.extend(page.events)
        cursor = page.next_cursor
        if not page.has_more:
            return events


def _ledger_locks(events: Iterable[FeedEvent], network: str) -> tuple[list[LockRecord], set[bytes]]:
    """Every hold from the feed with its outcome, and the reports that executed some hold."""
    placed: dict[str, FeedEvent] = {}
    done: dict[str, list[FeedEvent]] = {}
    for event in events:
        if event.kind == "hold_placed":
            placed[event.hold_id] = event
        else:
            done.setdefault(event.hold_id, []).append(event)
    records: list[LockRecord] = []
    report_ids: set[bytes] = set()
    for hold_id, hold in placed.items():
        executed = done.get(hold_id, [])
        for event in executed:
            if event.workflow_execution_id is not None:
                report_ids.add(event.workflow_execution_id)
        records.append(
            LockRecord(
                network=network,
                leg_index=hold.leg_index,
                settlement_id=hold.settlement_id,
                terms_hash=hold.terms_hash,
                asset=hold.currency,
                amount_minor=hold.amount_minor,
                payer=hold.payer_account,
                payee=hold.payee_account,
                deadline_s=hold.deadline_s,
                locked_at_s=hold.placed_at_s,
                outcome=_HOLD_OUTCOME[executed[0].kind] if executed else LegOutcome.LOCKED,
                final_at_s=executed[0].time_s if executed else None,
                executions=len(executed),
            )
        )
    return records, report_ids


def _ledger_reports(
    payments: PaymentsClient, ids: Iterable[bytes], network: str, don: DonConfig
) -> list[ExecutedReport]:
    reports: list[ExecutedReport] = []
    for execution_id in sorted(ids):
        stored = payments.get_report(execution_id)
        applied = {i.settlement_id for i in stored.items if i.outcome == "applied"}
        try:
            decisions = {sid: d for sid, d in _decisions(stored.report).items() if sid in applied}
        except SettlementError:
            decisions = {}
        reports.append(
            ExecutedReport(
                network=network,
                execution_id=execution_id,
                signatures_valid=_signatures_valid(stored.report, stored.context, stored.signatures, don),
                decisions=decisions,
            )
        )
    return reports


def _ledger_totals(payments: PaymentsClient) -> dict[str, int]:
    totals: dict[str, int] = {}
    after: str | None = None
    while True:
        page: dict[str, Any] = payments.accounts(after=after, limit=100)
        for account in page["items"]:
            currency = str(account["currency"])
            totals[currency] = (
                totals.get(currency, 0) + int(account["available_minor"]) + int(account["held_minor"])
            )
        after = page.get("next_after")
        if not after:
            return totals


def read_snapshot(
    *,
    evm: EvmClient,
    asset: AssetNetwork,
    payments: PaymentsClient,
    payments_network: str,
    database_url: str,
    don: DonConfig,
    terms: Iterable[Terms],
    expected: Expectations,
) -> LedgerSnapshot:
    """The ledgers' state now, for `check_invariants`. `payments` must carry an admin key (the feed,
    every account). Raises ChainError / PaymentsApiError if a network cannot be read."""
    chain_locks, escrow_held = _chain_locks(evm, asset)
    feed = _feed(payments)
    ledger_locks, report_ids = _ledger_locks(feed, payments_network)
    by_settlement: dict[bytes, list[LockRecord]] = {}
    for record in (*chain_locks, *ledger_locks):
        by_settlement.setdefault(record.settlement_id, []).append(record)
    settlements = tuple(SettlementRecord(t, tuple(by_settlement.get(t.settlement_id, ()))) for t in terms)
    token = FundToken(evm, asset.token)
    supply = token.total_supply()
    holders = sum(token.balance_of(a) for a in {*expected.token_holders, asset.escrow})
    balances = [
        BalanceCheck("fund token total supply", expected.token_supply, supply),
        BalanceCheck("fund token held by known holders", supply, holders),
        BalanceCheck("escrow balance = open locks", escrow_held, token.balance_of(asset.escrow)),
    ]
    observed_totals = _ledger_totals(payments)
    for currency in sorted({*expected.ledger_totals, *observed_totals}):
        balances.append(
            BalanceCheck(
                f"{currency} ledger total (cash in - cash out)",
                expected.ledger_totals.get(currency, 0),
                observed_totals.get(currency, 0),
            )
        )
    journal_ok, journal_detail = verify_ledger_journal(database_url)
    reports = [
        *_chain_reports(evm, asset, don),
        *_ledger_reports(payments, report_ids, payments_network, don),
    ]
    final_time = {asset.network: evm.latest_block().timestamp}
    with contextlib.suppress(KeyError, ValueError):
        final_time[payments_network] = int(payments.info()["time_s"])
    return LedgerSnapshot(
        settlements=settlements,
        reports=tuple(reports),
        balances=tuple(balances),
        journal_ok=journal_ok,
        journal_detail=journal_detail,
        final_time_s=final_time,
    )
