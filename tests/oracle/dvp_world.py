"""One real network for the node's integration tests: anvil, the payments service and 4 `crossdvp node
run` processes, brought up by `crossdvp.devnet` (so every process is started the one way the devnet
and the docs use) and then taken over by `crossdvp.chaos.faults.Cluster`, which restarts each node
behind its own RPC fault proxy so a test can kill, pause, restart, or cut a node off the chain.

`DvpWorld` is the tests' handle on it: build and register terms, lock each leg as its party, and —
what the assertions rest on — read each ledger's OWN state (escrow locks and events, token balances,
ledger holds and balances, forwarder transmission records), each node's /metrics, its store (SQLite,
read-only) and its log file. Waiting is bounded polling that fails with a message naming what was
awaited; nothing asserts on elapsed time.

Every process is stopped by PID in `close()`, also when a test failed while nodes were paused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import signal
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from crossdvp.chain.client import Sender
from crossdvp.chain.contracts import LockState, LockView, TransmissionInfo, TransmissionState
from crossdvp.chain.errors import RpcError
from crossdvp.chaos.faults import Cluster
from crossdvp.chaos.rpc_proxy import ProxyMode, RpcFaultProxy
from crossdvp.chaos.world import World
from crossdvp.devnet import DevnetOptions, devnet_down, devnet_up
from crossdvp.devnet.keyfiles import load_key, read_secret
from crossdvp.oracle.consensus import leader_of, slot_of
from crossdvp.payments.client import PaymentsClient, ReportRecord
from crossdvp.payments.errors import PaymentsApiError
from crossdvp.process import stop_pid
from crossdvp.settlement.report import decode_report, verify_report
from crossdvp.settlement.terms import Leg, Terms

__all__ = ["CASH", "SHARES", "DvpWorld", "chain_read", "dvp_world", "wait_for"]

SHARES = 10**18  # one fund share (18 decimals)
CASH = 100_00  # USD 100.00
N = 4
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], Any], *, attempts: int = 600, interval_s: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy and return that; after `attempts` polls fail
    naming `what` and the last value seen. Bounded by attempts: the machine is shared and slow at
    times, so this is generous and never an assertion on elapsed time."""
    last: Any = None
    for _ in range(attempts):
        try:
            last = check()
        except (httpx.HTTPError, sqlite3.Error, RpcError) as exc:  # a node restarting, a store being created
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not reached after {attempts} polls (last seen: {last!r})")


def chain_read(read: Callable[[], T]) -> T:
    """A read of the chain, retried a few times on an RPC error: anvil with --prune-history now and
    then refuses an eth_call at "latest" while it mines the next block ("block height is N+1 but
    requested was N"), which says nothing about the state being read."""
    for _ in range(9):
        try:
            return read()
        except RpcError:
            time.sleep(0.2)
    return read()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$")


def _parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        samples.append((match.group(1), labels, float(match.group(4))))
    return samples


class DvpWorld:
    """A running network and the parties of its trades (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paused: set[int] = set()
        # Generous: on a shared 2-core machine a busy node can take seconds to answer.
        self.http = httpx.Client(timeout=30.0, transport=httpx.HTTPTransport(retries=2))
        self.state = devnet_up(DevnetOptions(directory))
        try:
            self.world = World(self.state)
            self.cluster = Cluster(self.world, byzantine_index=None)
            self._take_over()
            self._onboard()
        except BaseException:
            self.close()
            raise

    def _onboard(self) -> None:
        password = read_secret(self.state.password_file)
        seller, buyer = self.state.parties["seller"], self.state.parties["buyer"]
        self.seller: Sender = self.world.evm.account(load_key(seller.chain_keystore, password))
        self.buyer: Sender = self.world.evm.account(load_key(buyer.chain_keystore, password))
        self.seller_account = seller.accounts["USD"]
        self.buyer_account = buyer.accounts["USD"]
        self.buyer_ledger = PaymentsClient(
            self.world.payments_url, read_secret(buyer.payments_key_file), timeout_s=10.0
        )
        # A third ledger account: the wrong payee of a mismatching hold.
        self.world.ledger.create_participant("mallory", "a payee no terms name")
        self.mallory_account = "mallory-usd"
        self.world.ledger.open_account(self.mallory_account, "mallory", "USD")
        self.world.contracts.token.approve(self.seller, self.world.asset.escrow, 1_000 * SHARES)
        self.chain_network = f"eip155:{self.world.asset.chain_id}"
        self.ledger_network = self.world.payments_network
        # The slot rule needs the nodes' round length: read it from the config they run with.
        self.round_ms = int(tomllib.loads(self.state.nodes[0].config.read_text())["node"]["round_ms"])
        self.report_id = self.world.workflow.report_id

    def _take_over(self) -> None:
        """Cluster.take_over, with the four node starts in parallel (each imports and binds for a few
        seconds on a loaded machine)."""
        rpc = self.state.chain.rpc_url if self.state.chain else ""
        records = []
        for node in self.state.nodes:
            self.cluster.proxies.append(RpcFaultProxy(rpc).start())
            record = self.state.process(node.name)
            if record is not None and record.alive():
                records.append(record)
        with ThreadPoolExecutor(max_workers=N) as pool:
            list(pool.map(lambda record: stop_pid(record.pid), records))
        self.start_many(range(N))

    def start_many(self, indices: Iterable[int]) -> None:
        """Start several nodes at once (each takes seconds to import and bind on a loaded machine)."""
        with ThreadPoolExecutor(max_workers=N) as pool:
            list(pool.map(self.cluster.start_node, indices))

    def close(self) -> None:
        """Stop everything, by PID: paused nodes are resumed first so SIGTERM reaches them."""
        for index in list(self.paused):
            self.resume(index)
        for closing in (self.http, getattr(self, "buyer_ledger", None), getattr(self, "world", None)):
            with contextlib.suppress(Exception):
                closing.close()  # type: ignore[union-attr]
        cluster: Cluster | None = getattr(self, "cluster", None)
        if cluster is not None:
            with ThreadPoolExecutor(max_workers=N) as pool:  # each node gets a grace period to exit
                list(pool.map(lambda process: process.stop(), list(cluster.nodes.values())))
            cluster.stop_all()
        devnet_down(self.directory)  # anvil and the payments service, and any node it still records

    # -- terms and locks ------------------------------------------------------------------------

    def terms(self, label: str, *, deadline_in_s: int) -> Terms:
        """A DvP: SHARES seller -> buyer on the chain against CASH buyer -> seller on the ledger."""
        return Terms(
            settlement_id=hashlib.sha256(f"{self.directory}:{label}".encode()).digest(),
            deadline_s=self.world.evm.latest_block().timestamp + deadline_in_s,
            legs=(
                Leg(
                    self.chain_network,
                    self.world.asset.token,
                    SHARES,
                    self.seller.address,
                    self.buyer.address,
                ),
                Leg(self.ledger_network, "USD", CASH, self.buyer_account, self.seller_account),
            ),
        )

    def register(self, terms: Terms, nodes: Iterable[int] | None = None) -> None:
        """Send the terms to every given node (default: every node), as the SDK does."""
        for index in range(N) if nodes is None else nodes:
            response = self.http.post(f"{self.url(index)}/v1/settlements", json=terms.to_dict())
            assert response.status_code in (200, 201), f"node {index} refused terms: {response.text}"

    def lock_shares(self, terms: Terms, *, amount: int = SHARES) -> None:
        leg = terms.legs[0]
        self.world.contracts.escrow.lock(
            self.seller,
            terms.settlement_id,
            0,
            leg.asset,
            amount,
            leg.payee,
            terms.deadline_s,
            terms.terms_hash,
        )

    def hold_cash(self, terms: Terms, *, payee_account: str | None = None) -> None:
        leg = terms.legs[1]
        self.buyer_ledger.place_hold(
            settlement_id=terms.settlement_id,
            leg_index=1,
            terms_hash=terms.terms_hash,
            payer_account=leg.payer,
            payee_account=leg.payee if payee_account is None else payee_account,
            currency=leg.asset,
            amount_minor=leg.amount_minor,
            deadline_s=terms.deadline_s,
        )

    # -- the ledgers' own state -----------------------------------------------------------------

    def chain_lock(self, terms: Terms) -> LockView:
        return chain_read(lambda: self.world.contracts.escrow.get_lock(terms.settlement_id, 0))

    def hold(self, terms: Terms) -> dict[str, Any] | None:
        items = self.world.ledger.holds(settlement_id=terms.settlement_id)["items"]
        assert len(items) <= 1, f"more than one hold for one leg: {items}"
        return items[0] if items else None

    def balances(self) -> dict[str, int]:
        token, ledger = self.world.contracts.token, self.world.ledger
        return {
            "seller_shares": chain_read(lambda: token.balance_of(self.seller.address)),
            "buyer_shares": chain_read(lambda: token.balance_of(self.buyer.address)),
            "escrow_shares": chain_read(lambda: token.balance_of(self.world.asset.escrow)),
            "buyer_cash": int(ledger.account(self.buyer_account)["available_minor"]),
            "buyer_held": int(ledger.account(self.buyer_account)["held_minor"]),
            "seller_cash": int(ledger.account(self.seller_account)["available_minor"]),
            "mallory_cash": int(ledger.account(self.mallory_account)["available_minor"]),
        }

    def final_on_both_ledgers(self, terms: Terms) -> tuple[LockView, dict[str, Any]] | None:
        """(escrow lock, hold) once neither is still locked/held (a missing lock or hold counts as
        final: it has nothing to execute), else None."""
        lock, hold = self.chain_lock(terms), self.hold(terms)
        if lock.state is LockState.LOCKED or (hold is not None and hold["state"] == "held"):
            return None
        return lock, (hold or {})

    def wait_final(self, terms: Terms, what: str) -> tuple[LockView, dict[str, Any]]:
        result: tuple[LockView, dict[str, Any]] = wait_for(
            f"{what}: both ledgers executed settlement 0x{terms.settlement_id.hex()}",
            lambda: self.final_on_both_ledgers(terms),
        )
        return result

    def assert_settled(self, terms: Terms) -> None:
        """Both ledgers executed SETTLE, by their own records, with a report the chain accepted."""
        lock, hold = self.wait_final(terms, "settle")
        assert lock.state is LockState.SETTLED, f"escrow lock is {lock.state.name}, expected SETTLED"
        assert hold.get("state") == "settled", f"ledger hold is {hold}, expected settled"
        sid = terms.settlement_id
        escrow = self.world.contracts.escrow
        settled = chain_read(lambda: escrow.settled_events(0, "latest", settlement_id=sid))
        assert [(e.leg_index, e.payee, e.amount) for e in settled] == [(0, self.buyer.address, SHARES)]
        assert chain_read(lambda: escrow.aborted_events(0, "latest", settlement_id=sid)) == []
        self._assert_reports_agree(terms, "SETTLE")

    def assert_aborted(self, terms: Terms, *, shares_locked: int | None, cash_held: bool) -> None:
        """Both ledgers executed ABORT: the escrowed shares went back to the seller, the hold was
        released (buyer keeps the cash), nothing reached a payee."""
        lock, hold = self.wait_final(terms, "abort")
        sid = terms.settlement_id
        escrow = self.world.contracts.escrow
        if shares_locked is None:
            assert lock.state is LockState.NONE
        else:
            assert lock.state is LockState.ABORTED, f"escrow lock is {lock.state.name}, expected ABORTED"
            aborted = chain_read(lambda: escrow.aborted_events(0, "latest", settlement_id=sid))
            assert [(e.locker, e.amount) for e in aborted] == [(self.seller.address, shares_locked)]
        assert chain_read(lambda: escrow.settled_events(0, "latest", settlement_id=sid)) == []
        if cash_held:
            assert hold.get("state") == "released", f"ledger hold is {hold}, expected released"
        else:
            assert hold == {}
        self._assert_reports_agree(terms, "ABORT")

    def _assert_reports_agree(self, terms: Terms, decision: str) -> None:
        """Every report any live node holds for the settlement carries `decision`, verifies against the
        DON (exactly f+1 distinct signers), and at least one was executed by the forwarder and stored
        by the ledger with the same bytes and a valid quorum of signatures."""
        reports = self.reports(terms)
        assert reports, "no node holds a report for the settlement"
        executed = 0
        for execution_id, report in reports.items():
            raw, context = bytes.fromhex(report["raw"][2:]), bytes.fromhex(report["context"][2:])
            signatures = [bytes.fromhex(s[2:]) for s in report["signatures"]]
            signers = verify_report(raw, context, signatures, self.world.don)
            assert len(set(signers)) == self.world.don.f + 1
            _, items = decode_report(raw)
            mine = [i for i in items if i.settlement_id == terms.settlement_id]
            assert [i.decision.name for i in mine] == [decision], f"report {execution_id}: {mine}"
            info = self.transmission(execution_id)
            if info.state is TransmissionState.SUCCEEDED:
                executed += 1
                # Each network gets the report on its own: a settlement with no hold has nothing on the
                # ledger to wait for, so the ledger's copy may still be on its way here.
                stored = wait_for(
                    f"the ledger stores report {execution_id}",
                    functools.partial(self._ledger_report, execution_id),
                    attempts=150,
                )
                # The same bytes, verified again here; the ledger's f+1 signatures may be another
                # leader's set than this node's copy (two rounds can complete one report, and whoever
                # delivers first wins), and either is a valid quorum.
                assert stored.report == raw
                ledger_signers = verify_report(
                    stored.report, stored.context, list(stored.signatures), self.world.don
                )
                assert sorted(stored.signers) == sorted(ledger_signers)
                assert len(set(ledger_signers)) == self.world.don.f + 1
        assert executed >= 1, f"no report for the settlement was executed by the forwarder: {list(reports)}"

    def _ledger_report(self, execution_id: str) -> ReportRecord | None:
        """The ledger's stored copy of a report, or None while it has none (404)."""
        try:
            return self.world.ledger.get_report(execution_id)
        except PaymentsApiError as exc:
            if exc.status == 404:
                return None
            raise

    def transmission(self, execution_id: str) -> TransmissionInfo:
        """The forwarder's record of delivering report `execution_id` to the escrow."""
        forwarder, escrow = self.world.contracts.forwarder, self.world.asset.escrow
        return chain_read(
            lambda: forwarder.transmission_info(escrow, bytes.fromhex(execution_id[2:]), self.report_id)
        )

    # -- the nodes ------------------------------------------------------------------------------

    def url(self, index: int) -> str:
        return self.state.nodes[index].url

    def live(self) -> list[int]:
        return [i for i in range(N) if i not in self.paused and self.alive(i)]

    def alive(self, index: int) -> bool:
        process = self.cluster.nodes.get(index)
        return process is not None and process.alive()

    def view(self, index: int, terms: Terms) -> dict[str, Any] | None:
        response = self.http.get(f"{self.url(index)}/v1/settlements/0x{terms.settlement_id.hex()}")
        return response.json() if response.status_code == 200 else None

    def reports(self, terms: Terms) -> dict[str, dict[str, Any]]:
        """Every report for the settlement held by a live node, by execution id."""
        found: dict[str, dict[str, Any]] = {}
        for index in self.live():
            view = self.view(index, terms) or {}
            for report in view.get("reports") or []:
                found.setdefault(report["execution_id"], report)
        return found

    def wait_node_delivered(self, index: int, terms: Terms) -> dict[str, Any]:
        """The node's view once it holds a delivered report AND has reached its own decision (a node
        that was down may learn the quorum's report before its observations catch up)."""

        def delivered() -> dict[str, Any] | None:
            view = self.view(index, terms)
            done = view is not None and view["status"] == "delivered" and view["decision"] is not None
            return view if done else None

        result: dict[str, Any] = wait_for(
            f"node {index} shows the settlement decided and delivered", delivered
        )
        return result

    def metric(self, index: int, name: str, **labels: str) -> float:
        """Sum of the samples of `name` (with `labels`) on the node's /metrics."""
        text = self.http.get(f"{self.url(index)}/metrics").text
        return sum(
            value
            for sample, sample_labels, value in _parse_metrics(text)
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def store(self, index: int) -> Path:
        return self.state.nodes[index].config.parent / "node.sqlite"

    def query(self, index: int, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read-only query on the node's own store (the node keeps writing meanwhile; WAL)."""
        connection = sqlite3.connect(f"file:{self.store(index)}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def log_lines(self, index: int, needle: str) -> list[str]:
        path = self.world.log_dir() / f"node-{index}.log"
        return [line for line in path.read_text(errors="replace").splitlines() if needle in line]

    def leader_at(self, at_ms: int) -> int:
        """The slot leader at `at_ms` by the nodes' rule (crossdvp.oracle.consensus)."""
        return leader_of(slot_of(at_ms, self.round_ms), N)

    # -- faults ---------------------------------------------------------------------------------

    def kill(self, index: int) -> None:
        """SIGKILL, as a crash."""
        self.cluster.kill_node(index)

    def start(self, index: int) -> None:
        self.cluster.start_node(index)

    def pause(self, index: int) -> None:
        """SIGSTOP the node: it holds its sockets but answers nothing (a hung machine)."""
        process = self.cluster.nodes[index]
        os.kill(process.pid, signal.SIGSTOP)
        self.paused.add(index)

    def resume(self, index: int) -> None:
        process = self.cluster.nodes.get(index)
        if process is not None and process.alive():
            os.kill(process.pid, signal.SIGCONT)
        self.paused.discard(index)

    def proxy(self, index: int, mode: ProxyMode) -> None:
        self.cluster.proxies[index].set_mode(mode)

    def set_byzantine(self, index: int | None) -> None:
        """Restart node `index` with [testing] byzantine = "flip" (None: restart it honest)."""
        target = index if index is not None else self.cluster.byzantine_index
        self.cluster.byzantine_index = index
        self.cluster.byzantine_mode = "flip"
        if target is not None:
            self.kill(target)
            self.start(target)

    def heal(self) -> None:
        """Back to four honest, running nodes with a working RPC: undo whatever a test did."""
        for index in list(self.paused):
            self.resume(index)
        for proxy in self.cluster.proxies:
            proxy.set_mode(ProxyMode.PASS)
        if self.cluster.byzantine_index is not None:
            self.set_byzantine(None)
        self.start_many([index for index in range(N) if not self.alive(index)])


@contextlib.contextmanager
def dvp_world(directory: Path) -> Iterator[DvpWorld]:
    """A DvpWorld that is closed (every process stopped by PID) however the block ends; if bringing
    it up fails half-way, whatever the devnet recorded is stopped too."""
    world: DvpWorld | None = None
    try:
        world = DvpWorld(directory)
        yield world
    finally:
        if world is not None:
            world.close()
        else:
            with contextlib.suppress(Exception):
                devnet_down(directory)
