"""The faults a chaos run injects, and the processes it injects them into.

`Cluster` takes the devnet's oracle nodes over: it stops each node the devnet started (by its PID)
and starts it again itself, through crossdvp.process, with its EVM RPC URL pointed at its own
`RpcFaultProxy` and, for one node, the test-only Byzantine setting — both through the node's
`CROSSDVP_NODE_*` environment overrides, so the config files stay as the devnet wrote them. It can
then SIGKILL and restart any node or the payments service.

`FaultScheduler` runs in a thread during the workload and, at random moments drawn from the run's
seeded `random.Random`, injects one fault after another; every enabled kind comes once before any
repeats, so even a short run sees each kind. Kinds:

- node_kill / node_kill_two: SIGKILL one node (or two at once: more than f, progress must stop
  safely), restart after a random delay;
- byzantine: one node runs as "flip" or "garbage" (switched at each of its restarts);
- rpc: one node's RPC proxy delays, drops, errors or goes stale for a few seconds;
- payments_kill: SIGKILL the payments service, restart it on the same database and port;
- reorg: a depth-1 chain reorg (shallower than the finality depth): snapshot, mine, revert, and
  re-mine the same transactions; it pauses and restores the devnet's interval mining through
  anvil's evm_setIntervalMining, which takes whole seconds only, so a devnet with a fractional
  block time is refused up front (interval_mining_s);
- duplicate_delivery: already executed reports re-delivered, duplicated and shuffled, to both
  networks (they must be no-ops).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

import httpx

from crossdvp.chain.anvil import dev_keys
from crossdvp.chain.client import Call
from crossdvp.chain.errors import ChainError
from crossdvp.chaos.rpc_proxy import ProxyMode, RpcFaultProxy
from crossdvp.chaos.world import RwLock, World
from crossdvp.devnet.keyfiles import read_secret
from crossdvp.devnet.nodeconfig import KEY_PASSWORD_ENV, PAYMENTS_API_KEY_ENV, TRANSMITTER_KEY_ENV
from crossdvp.errors import ConfigError, CrossDvpError
from crossdvp.payments.errors import PaymentsApiError
from crossdvp.process import ManagedProcess, start_process, stop_pid

__all__ = ["ALL_FAULTS", "Cluster", "FaultKind", "FaultScheduler", "interval_mining_s", "redeliver", "reorg"]

_LEDGER_ID = "crossdvp-payments"


class FaultKind(StrEnum):
    NODE_KILL = "node_kill"
    NODE_KILL_TWO = "node_kill_two"
    BYZANTINE = "byzantine"
    RPC = "rpc"
    PAYMENTS_KILL = "payments_kill"
    REORG = "reorg"
    DUPLICATE_DELIVERY = "duplicate_delivery"


ALL_FAULTS = frozenset(FaultKind)


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


class Cluster:
    """The node processes and the payments service of a devnet, under the harness's control."""

    def __init__(self, world: World, *, byzantine_index: int | None) -> None:
        self.world = world
        self.state = world.state
        self.byzantine_index = byzantine_index
        self.byzantine_mode = "flip"
        self.proxies: list[RpcFaultProxy] = []
        self.nodes: dict[int, ManagedProcess] = {}
        self.payments: ManagedProcess | None = None
        self._password = read_secret(self.state.password_file)
        self._lock = threading.Lock()
        self.restarts: Counter[str] = Counter()

    def _transmitter_key(self, index: int) -> bytes:
        # The devnet gives node i anvil's dev account 1 + i as its transmitter (see devnet.up).
        count = max(10, len(self.state.nodes) + 1)
        key = dev_keys(count)[1 + index]
        from eth_account import Account

        if str(Account.from_key(key).address).lower() != self.state.nodes[index].transmitter:
            raise CrossDvpError(f"node-{index}: cannot find its transmitter key among anvil's dev keys")
        return key

    def _evm_network_index(self, index: int) -> int:
        config = tomllib.loads(self.state.nodes[index].config.read_text())
        for position, network in enumerate(config.get("networks", [])):
            if network.get("kind") == "evm":
                return position
        raise CrossDvpError(f"node-{index}: its config has no evm network")

    def take_over(self) -> None:
        """Restart every node behind its own RPC proxy (see the module docstring)."""
        for node in self.state.nodes:
            proxy = RpcFaultProxy(self.world.evm.rpc_url).start()
            self.proxies.append(proxy)
            record = self.state.process(node.name)
            if record is not None and record.alive():
                stop_pid(record.pid)
        for node in self.state.nodes:
            self.start_node(node.index)

    def _node_env(self, index: int) -> dict[str, str]:
        node = self.state.nodes[index]
        env = {
            KEY_PASSWORD_ENV: self._password,
            TRANSMITTER_KEY_ENV: "0x" + self._transmitter_key(index).hex(),
            PAYMENTS_API_KEY_ENV: read_secret(node.payments_key_file),
            f"CROSSDVP_NODE_NETWORKS_{self._evm_network_index(index)}_RPC_URL": self.proxies[index].url,
        }
        if index == self.byzantine_index:
            env["CROSSDVP_NODE_TESTING_BYZANTINE"] = self.byzantine_mode
        return env

    def start_node(self, index: int) -> None:
        node = self.state.nodes[index]
        argv = [sys.executable, "-m", "crossdvp.cli", "node", "run", "--config", str(node.config)]
        process = start_process(
            node.name,
            argv,
            log_path=self.world.log_dir() / f"{node.name}.log",
            ready=_http_ok(f"{node.url}/health"),
            env=self._node_env(index),
            timeout_s=90,
        )
        with self._lock:
            self.nodes[index] = process

    def kill_node(self, index: int) -> None:
        with self._lock:
            process = self.nodes.get(index)
        if process is not None:
            process.kill()
        self.restarts[f"node-{index}"] += 1

    def kill_payments(self) -> None:
        """SIGKILL the payments service, whichever of the devnet or this cluster started it."""
        if self.payments is not None:
            self.payments.kill()
            return
        record = self.state.process("payments")
        if record is not None and record.alive():
            os.kill(record.pid, signal.SIGKILL)
            end = time.monotonic() + 10
            while record.alive() and time.monotonic() < end:
                time.sleep(0.02)

    def start_payments(self) -> None:
        payments = self.state.payments
        if payments is None:
            raise CrossDvpError("devnet state has no payments service")
        port = payments.url.rsplit(":", 1)[1]
        argv = [
            sys.executable, "-m", "crossdvp.cli", "payments", "serve",
            "--database-url", payments.database_url, "--port", port,
            "--ledger-id", payments.ledger_id, "--grace-s", str(payments.grace_s),
        ]  # fmt: skip
        self.payments = start_process(
            "payments",
            argv,
            log_path=self.world.log_dir() / "payments.log",
            ready=_http_ok(f"{payments.url}/v1/info"),
            env={"CROSSDVP_PAYMENTS_ADMIN_KEY": self.world.admin_api_key},
            timeout_s=60,
        )

    def stop_all(self) -> None:
        """Stop every process this cluster started, by PID, and the proxies."""
        with self._lock:
            processes = list(self.nodes.values())
        if self.payments is not None:
            processes.append(self.payments)
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()
        for proxy in self.proxies:
            proxy.stop()


def interval_mining_s(block_time_s: float) -> int:
    """The devnet's block time as the whole seconds evm_setIntervalMining takes, for the reorg fault
    to restore interval mining after pausing it. Raises ConfigError for a fractional block time
    (anvil's RPC refuses one, so the reorg would fail mid-run with mining left paused)."""
    if isinstance(block_time_s, bool) or not float(block_time_s).is_integer() or block_time_s < 1:
        raise ConfigError(
            f"the reorg fault needs a whole-second block time (anvil's evm_setIntervalMining takes "
            f"whole seconds only), got {block_time_s!r}s; use a whole number or leave out reorg"
        )
    return int(block_time_s)


def reorg(world: World, chain_writes: RwLock, block_time_s: int, rng: random.Random) -> tuple[int, bool]:
    """A depth-1 reorg, shallower than any finality depth >= 2: with interval mining paused, snapshot,
    mine a block (with a marker transfer of the harness's own plus whatever is pending), revert, and
    re-mine either the same transactions or all but the marker (different ones). Returns how many
    transactions were re-sent and whether the marker was dropped."""
    evm = world.evm
    marker = evm.account(dev_keys()[8])
    drop_marker = rng.random() < 0.5
    with chain_writes.exclusive():
        evm.request("evm_setIntervalMining", [0])
        try:
            snapshot = evm.snapshot()
            marker_hash = (
                "0x"
                + evm.send(
                    marker, Call(to=marker.address, data=b"", label="reorg marker", value=1), gas=21_000
                ).hex()
            )
            evm.mine(1)
            block = evm.request("eth_getBlockByNumber", ["latest", True])
            hashes = [str(tx["hash"]) for tx in block.get("transactions", [])]
            with contextlib.suppress(ChainError):
                pool = evm.request("txpool_content") or {}
                for by_nonce in (pool.get("pending") or {}).values():
                    hashes += [str(tx["hash"]) for tx in by_nonce.values()]
            if drop_marker:
                hashes = [h for h in hashes if h != marker_hash]
            raws = [evm.request("eth_getRawTransactionByHash", [h]) for h in hashes]
            evm.revert(snapshot)
            for raw in raws:
                if raw:
                    with contextlib.suppress(ChainError):
                        evm.request("eth_sendRawTransaction", [raw])
            evm.mine(1)
        finally:
            evm.request("evm_setIntervalMining", [block_time_s])
    return len(raws), drop_marker


def redeliver(world: World, rng: random.Random, sender_key: bytes) -> int:
    """Re-deliver up to 6 executed reports, each twice, in shuffled order, to both networks."""
    ids: list[bytes] = []
    cursor = 0
    while True:
        page = world.ledger.events(after=cursor, limit=500)
        ids += [e.workflow_execution_id for e in page.events if e.workflow_execution_id is not None]
        cursor = page.next_cursor
        if not page.has_more:
            break
    chosen = rng.sample(sorted(set(ids)), min(6, len(set(ids))))
    deliveries = [*chosen, *chosen]
    rng.shuffle(deliveries)
    sender = world.evm.account(sender_key)
    for execution_id in deliveries:
        stored = world.ledger.get_report(execution_id)
        with contextlib.suppress(PaymentsApiError):
            world.ledger.post_report(stored.report, stored.context, stored.signatures)
        with contextlib.suppress(ChainError):  # AlreadyAttempted once delivered: the expected answer
            world.contracts.forwarder.report(
                sender, world.asset.escrow, stored.report, stored.context, stored.signatures
            )
    return len(deliveries)


class FaultScheduler:
    """Injects faults from `kinds` until stopped (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        kinds: frozenset[FaultKind],
        rng: random.Random,
        chain_writes: RwLock,
        *,
        block_time_s: float,
        gap_s: tuple[float, float] = (2.0, 6.0),
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        """Raises ConfigError if `kinds` has reorg and `block_time_s` is fractional
        (interval_mining_s)."""
        self.cluster = cluster
        self.kinds = sorted(kinds)
        self.rng = rng
        self.chain_writes = chain_writes
        self.block_time_s = block_time_s
        if FaultKind.REORG in kinds:
            interval_mining_s(block_time_s)  # refused here, not when the first reorg comes
        self.gap_s = gap_s
        self.log = log
        self.injected: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if FaultKind.BYZANTINE in kinds:
            self.injected[FaultKind.BYZANTINE.value] += 1  # on from the start, for the whole run

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def every_kind_injected(self) -> bool:
        return all(self.injected[k.value] > 0 for k in self.kinds)

    def _sleep(self, low: float, high: float) -> None:
        self._stop.wait(self.rng.uniform(low, high))

    def _run(self) -> None:
        if not self.kinds:
            return  # a run without faults (`--faults none`): the baseline
        queue: list[FaultKind] = []
        while not self._stop.is_set():
            self._sleep(*self.gap_s)
            if self._stop.is_set():
                return
            if not queue:
                queue = list(self.kinds)
                self.rng.shuffle(queue)
            kind = queue.pop()
            before = self.injected[kind.value]
            try:
                self.inject(kind)
                if self.injected[kind.value] == before:
                    queue.insert(0, kind)  # nothing to inject yet (no report executed): try again later
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                self.errors.append(f"{kind.value}: {type(exc).__name__}: {exc}")
                self.log(f"fault {kind.value} failed: {exc}")

    def _honest(self) -> list[int]:
        return [i for i in range(len(self.cluster.state.nodes)) if i != self.cluster.byzantine_index]

    def inject(self, kind: FaultKind) -> None:
        """One fault, including its recovery (restart, proxy back to pass)."""
        cluster = self.cluster
        if kind is FaultKind.NODE_KILL or kind is FaultKind.NODE_KILL_TWO:
            count = 2 if kind is FaultKind.NODE_KILL_TWO else 1
            victims = self.rng.sample(range(len(cluster.state.nodes)), count)
            for index in victims:
                cluster.kill_node(index)
            self.log(f"fault {kind.value}: SIGKILL node(s) {victims}")
            self._sleep(1.0, 4.0)
            for index in victims:
                cluster.start_node(index)
        elif kind is FaultKind.BYZANTINE:
            byzantine = cluster.byzantine_index
            if byzantine is None:
                return
            cluster.byzantine_mode = "garbage" if cluster.byzantine_mode == "flip" else "flip"
            cluster.kill_node(byzantine)
            cluster.start_node(byzantine)
            self.log(f"fault byzantine: node-{byzantine} now {cluster.byzantine_mode}")
        elif kind is FaultKind.RPC:
            index = self.rng.choice(range(len(cluster.proxies)))
            mode = self.rng.choice([ProxyMode.DELAY, ProxyMode.DROP, ProxyMode.ERROR, ProxyMode.STALE])
            cluster.proxies[index].set_mode(mode, delay_ms=self.rng.randint(200, 1500))
            self.log(f"fault rpc: node-{index}'s RPC {mode.value}")
            try:
                self._sleep(2.0, 5.0)
            finally:
                cluster.proxies[index].set_mode(ProxyMode.PASS)
        elif kind is FaultKind.PAYMENTS_KILL:
            cluster.kill_payments()
            self.log("fault payments_kill: SIGKILL the payments service")
            self._sleep(0.5, 2.0)
            cluster.start_payments()
        elif kind is FaultKind.REORG:
            interval_s = interval_mining_s(self.block_time_s)
            count, dropped = reorg(cluster.world, self.chain_writes, interval_s, self.rng)
            variant = "different transactions (marker dropped)" if dropped else "the same transactions"
            self.log(f"fault reorg: depth 1, re-mined {count} transaction(s): {variant}")
        elif kind is FaultKind.DUPLICATE_DELIVERY:
            count = redeliver(cluster.world, self.rng, dev_keys()[9])
            if count == 0:
                return
            self.log(f"fault duplicate_delivery: {count} re-deliveries")
        self.injected[kind.value] += 1
