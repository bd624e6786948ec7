"""A DON of in-process nodes over in-memory ledgers and an in-memory peer network, driven step by step.

Each step runs every live node's activities once, then moves the nodes' clock by `step_ms` and each
ledger's clock by one second. Nothing sleeps; loops are bounded by step counts, not by time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from crossdvp.clock import ManualClock
from crossdvp.oracle.keys import NodeKey, key_from_hex
from crossdvp.oracle.memory import MemoryLedger, MemoryPeerNetwork
from crossdvp.oracle.node import Node, NodeSettings
from crossdvp.oracle.store import NodeStore
from crossdvp.settlement.report import DonConfig, WorkflowIdentity
from crossdvp.settlement.terms import Decision, Leg, Terms

CHAIN = "eip155:31337"
CASH = "payments:crossdvp-payments"
TOKEN = "0x" + "11" * 20
SELLER = "0x" + "22" * 20
BUYER = "0x" + "33" * 20
WORKFLOW = WorkflowIdentity(
    workflow_cid=bytes.fromhex("ab" * 32),
    workflow_name="crossdvp-settlement",
    workflow_owner="0x" + "44" * 20,
    report_id=bytes.fromhex("0001"),
)


def node_key(i: int) -> NodeKey:
    return key_from_hex(
        hashlib.sha256(f"crossdvp-test-node-{i}".encode()).hexdigest(), source=f"test key {i}"
    )


def settlement_id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def dvp_terms(label: str, deadline_s: int, *, shares: int = 1_000 * 10**18, cash: int = 1_000_000) -> Terms:
    return Terms(
        settlement_id=settlement_id(label),
        deadline_s=deadline_s,
        legs=(
            Leg(network=CHAIN, asset=TOKEN, amount_minor=shares, payer=SELLER, payee=BUYER),
            Leg(network=CASH, asset="USD", amount_minor=cash, payer="acct-buyer", payee="acct-seller"),
        ),
    )


class Cluster:
    def __init__(
        self,
        tmp_path: Path,
        *,
        n: int = 4,
        f: int = 1,
        byzantine: dict[int, str] | None = None,
        stagger_ms: int = 0,
        round_ms: int = 1_000,
        step_ms: int = 250,
    ) -> None:
        self.tmp_path = tmp_path
        self.keys = [node_key(i) for i in range(n)]
        self.don = DonConfig(don_id=7, config_version=1, f=f, signers=tuple(k.address for k in self.keys))
        self.clock = ManualClock(start_ms=1_700_000_000_000 - 1_700_000_000_000 % (round_ms * n))
        self.peers = MemoryPeerNetwork()
        self.chain = MemoryLedger(CHAIN, self.don, WORKFLOW)
        self.cash = MemoryLedger(CASH, self.don, WORKFLOW)
        self.byzantine = byzantine or {}
        self.stagger_ms = stagger_ms
        self.round_ms = round_ms
        self.step_ms = step_ms
        self.stopped: set[int] = set()
        self.nodes: list[Node] = [self.make_node(i) for i in range(n)]

    def settings(self, i: int) -> NodeSettings:
        return NodeSettings(
            index=i,
            name=f"node-{i}",
            don=self.don,
            workflow=WORKFLOW,
            poll_interval_ms=self.step_ms,
            round_ms=self.round_ms,
            stagger_ms=self.stagger_ms,
            delivery_recheck_ms=self.step_ms,
            byzantine=self.byzantine.get(i),
        )

    def store_url(self, i: int) -> str:
        return f"sqlite:///{self.tmp_path / f'node-{i}.sqlite'}"

    def make_node(self, i: int) -> Node:
        node = Node(
            self.settings(i),
            key=self.keys[i],
            store=NodeStore(self.store_url(i)),
            observers=[self.chain.observer(), self.cash.observer()],
            deliverers=[self.chain.deliverer(), self.cash.deliverer()],
            transport=self.peers.transport_for(i),
            clock=self.clock,
        )
        self.peers.attach(node)
        return node

    def restart(self, i: int) -> Node:
        """A crash and restart: a brand-new Node object (and store engine) on the same store file."""
        self.nodes[i].store.close()
        self.nodes[i] = self.make_node(i)
        return self.nodes[i]

    def down(self, *indices: int) -> None:
        for i in indices:
            self.stopped.add(i)
            self.peers.down.add(i)

    def up(self, *indices: int) -> None:
        for i in indices:
            self.stopped.discard(i)
            self.peers.down.discard(i)

    def lock(self, terms: Terms, legs: Iterable[int] = (0, 1), **override: object) -> None:
        for leg_index in legs:
            leg = terms.legs[leg_index]
            ledger = self.chain if leg.network == CHAIN else self.cash
            fields: dict[str, object] = {
                "settlement_id": terms.settlement_id,
                "leg_index": leg_index,
                "terms_hash": terms.terms_hash,
                "asset": leg.asset,
                "amount_minor": leg.amount_minor,
                "payer": leg.payer,
                "payee": leg.payee,
                "deadline_s": terms.deadline_s,
            }
            fields.update(override)
            ledger.lock(**fields)  # type: ignore[arg-type]

    async def decide_locked(self) -> None:
        """Let both ledgers mine a block, then have every node poll and decide once (no rounds yet)."""
        self.chain.advance(1)
        self.cash.advance(1)
        for node in self.nodes:
            await node.poll_once()
            node.decide_pending()

    async def decided(self, label: str) -> Terms:
        """Terms every node already holds, both legs locked, and every node's decision on them: what a
        leader's round starts from."""
        terms = dvp_terms(label, deadline_s=self.chain.time_s + 30)
        for node in self.nodes:
            node.store.add_terms(terms, self.clock.now_ms())
        self.lock(terms)
        await self.decide_locked()
        return terms

    def outcome(self, terms: Terms) -> tuple[str | None, str | None]:
        return self.chain.state_of(terms.settlement_id, 0), self.cash.state_of(terms.settlement_id, 1)

    async def step(self, *, skip: Iterable[int] = ()) -> None:
        skipped = set(skip) | self.stopped
        for node in self.nodes:
            if node.index not in skipped:
                await node.step()
        self.clock.advance(self.step_ms)
        self.chain.advance(1)
        self.cash.advance(1)

    async def run_until(
        self, done: Callable[[], bool], *, max_steps: int = 60, skip: Iterable[int] = ()
    ) -> int:
        for steps in range(max_steps):
            if done():
                return steps
            await self.step(skip=skip)
        raise AssertionError(f"condition not reached in {max_steps} steps")

    async def run(self, steps: int, *, skip: Iterable[int] = ()) -> None:
        for _ in range(steps):
            await self.step(skip=skip)

    def decisions(self, terms: Terms) -> list[Decision | None]:
        out: list[Decision | None] = []
        for node in self.nodes:
            stored = node.store.decision(terms.settlement_id)
            out.append(None if stored is None else stored.decision)
        return out

    def close(self) -> None:
        for node in self.nodes:
            node.store.close()
