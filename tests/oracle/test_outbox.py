"""The outbox: terms go to each peer as one batch envelope per tick, one request in flight per peer,
per-item acknowledgement, and per-message backoff for a peer that is down."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from crossdvp.oracle import node as node_module
from crossdvp.oracle.memory import MemoryPeerNetwork
from crossdvp.oracle.node import Node
from crossdvp.oracle.store import OutboxMessage
from crossdvp.oracle.wire import report_to_wire
from crossdvp.settlement.terms import Terms
from tests.oracle.harness import Cluster, dvp_terms

pytestmark = pytest.mark.anyio

FAR_FUTURE_MS = 10**15


class Recorder:
    """Wraps the in-memory peer network: records every request and the most in flight per peer."""

    def __init__(self, peers: MemoryPeerNetwork) -> None:
        self.calls: list[tuple[int, int, str, int]] = []  # (sender, to, kind, items)
        self.max_in_flight: Counter[int] = Counter()
        self._in_flight: Counter[int] = Counter()
        self._deliver = peers.deliver
        peers.deliver = self  # type: ignore[method-assign]

    async def __call__(self, sender: int, to: int, envelope: dict[str, Any]) -> dict[str, Any]:
        kind = envelope["kind"]
        self.calls.append((sender, to, kind, len(envelope["body"]["terms"]) if kind == "terms_batch" else 1))
        self._in_flight[to] += 1
        self.max_in_flight[to] = max(self.max_in_flight[to], self._in_flight[to])
        try:
            await asyncio.sleep(0.001)  # let the other requests of the tick start, if any would
            return await self._deliver(sender, to, envelope)
        finally:
            self._in_flight[to] -= 1

    def take(self) -> list[tuple[int, int, str, int]]:
        calls, self.calls = sorted(self.calls), []
        return calls


def _register(node: Node, count: int, prefix: str, deadline_s: int) -> list[Terms]:
    terms = [dvp_terms(f"{prefix}-{i}", deadline_s=deadline_s) for i in range(count)]
    for t in terms:
        assert node.register_terms(t)
    return terms


def _pending(node: Node) -> list[OutboxMessage]:
    return node.store.due_outbox(FAR_FUTURE_MS, default_limit=10_000)


def _stored(node: Node) -> int:
    return len(node.store.list_terms(limit=10_000))


async def test_many_terms_go_as_one_envelope_per_peer_per_tick(cluster: Cluster) -> None:
    sender = cluster.nodes[0]
    _register(sender, 250, "bulk", cluster.chain.time_s + 600)
    recorder = Recorder(cluster.peers)
    await sender.outbox_tick()
    assert recorder.take() == [(0, m, "terms_batch", 200) for m in (1, 2, 3)]
    assert [_stored(n) for n in cluster.nodes] == [250, 200, 200, 200]
    await sender.outbox_tick()  # the rest of the backlog on the next tick
    assert recorder.take() == [(0, m, "terms_batch", 50) for m in (1, 2, 3)]
    assert [_stored(n) for n in cluster.nodes] == [250] * 4
    assert _pending(sender) == []
    await sender.outbox_tick()
    assert recorder.take() == []


async def test_one_request_in_flight_per_peer_terms_first_then_reports(cluster: Cluster) -> None:
    settled = dvp_terms("settled-first", deadline_s=cluster.chain.time_s + 30)
    cluster.nodes[0].register_terms(settled)
    cluster.lock(settled)
    await cluster.run_until(lambda: cluster.nodes[0].store.reports_count() == 1)
    await cluster.run_until(lambda: all(_pending(n) == [] for n in cluster.nodes))
    sender = cluster.nodes[0]
    report = sender.store.reports_for(settled.settlement_id)[0].report
    for _ in range(3):  # three report shares per peer (duplicates for them: acknowledged all the same)
        sender.store.enqueue([1, 2, 3], "report", report_to_wire(report), cluster.clock.now_ms())
    _register(sender, 5, "with-reports", cluster.chain.time_s + 600)
    recorder = Recorder(cluster.peers)
    await sender.outbox_tick()
    calls = recorder.calls
    for member in (1, 2, 3):
        assert [(k, n) for s, to, k, n in calls if to == member] == [("terms_batch", 5)] + [("report", 1)] * 3
    assert recorder.max_in_flight == Counter({1: 1, 2: 1, 3: 1})
    assert _pending(sender) == []


async def test_receiver_registers_every_valid_item_of_a_batch(cluster: Cluster) -> None:
    target, sender = cluster.nodes[0], cluster.nodes[1]
    deadline = cluster.chain.time_s + 600
    good_a, good_b = dvp_terms("batch-a", deadline_s=deadline), dvp_terms("batch-b", deadline_s=deadline)
    held = dvp_terms("batch-held", deadline_s=deadline)
    target.store.add_terms(held, 0)
    conflicting = dvp_terms("batch-held", deadline_s=deadline + 1)  # same id, other terms
    items: list[Any] = [
        good_a.to_dict(),
        {**good_b.to_dict(), "settlement_id": "0x12"},  # invalid
        good_b.to_dict(),
        conflicting.to_dict(),
        5,  # not even an object
        good_a.to_dict(),  # repeated within the batch
    ]
    status, reply = await target.handle_peer_message(sender.signer.seal(0, "terms_batch", {"terms": items}))
    assert status == 200 and reply["status"] == "ok"
    statuses = [r["status"] for r in reply["results"]]
    assert statuses == ["ok", "rejected", "ok", "conflict", "rejected", "duplicate"]
    assert {r.get("reason") for r in reply["results"] if r["status"] == "rejected"} == {"invalid_terms"}
    assert target.store.get_terms(good_a.settlement_id) == good_a
    assert target.store.get_terms(good_b.settlement_id) == good_b
    assert target.store.get_terms(held.settlement_id) == held
    assert target.metrics.peer_dropped.labels(reason="invalid_terms")._value.get() == 2


@pytest.mark.parametrize("terms", [[], {"a": 1}, None, [{}] * 201])
async def test_a_malformed_batch_is_rejected_whole(cluster: Cluster, terms: Any) -> None:
    target, sender = cluster.nodes[0], cluster.nodes[1]
    body = {} if terms is None else {"terms": terms}
    status, reply = await target.handle_peer_message(sender.signer.seal(0, "terms_batch", body))
    assert (status, reply["reason"]) == (422, "malformed")
    assert _stored(target) == 0


async def test_sender_acknowledges_the_valid_items_and_retries_the_invalid_one(cluster: Cluster) -> None:
    sender = cluster.nodes[0]
    now = cluster.clock.now_ms()
    deadline = cluster.chain.time_s + 600
    a, b = _register(sender, 2, "ack", deadline)
    cluster.nodes[2].store.add_terms(dvp_terms("ack-0", deadline_s=deadline + 1), 0)  # node 2: conflict
    sender.store.enqueue([1], "terms", {"terms": {"bogus": True}}, now)
    recorder = Recorder(cluster.peers)
    await sender.outbox_tick()
    assert recorder.take() == [(0, 1, "terms_batch", 3), (0, 2, "terms_batch", 2), (0, 3, "terms_batch", 2)]
    assert all(n.store.get_terms(b.settlement_id) == b for n in cluster.nodes)
    assert cluster.nodes[1].store.get_terms(a.settlement_id) == a
    # Acknowledged: everything but the invalid item (the conflict is final too); that one backs off.
    left = _pending(sender)
    assert [(m.member, m.body, m.attempts) for m in left] == [(1, {"terms": {"bogus": True}}, 1)]
    assert sender.store.due_outbox(now + node_module.OUTBOX_BACKOFF_MS - 1) == []
    assert sender.store.due_outbox(now + node_module.OUTBOX_BACKOFF_MS) == left


async def test_unreachable_peer_gets_one_request_per_tick_and_backs_off(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "MAX_TERMS_PER_BATCH", 5)
    sender = cluster.nodes[0]
    cluster.down(3)
    _register(sender, 12, "down", cluster.chain.time_s + 600)
    recorder = Recorder(cluster.peers)
    to_3: list[list[int]] = []
    for _ in range(4):  # four ticks at the same instant: each batch is tried once, then all back off
        await sender.outbox_tick()
        calls = recorder.take()
        to_3.append([n for _, to, _, n in calls if to == 3])
        assert sorted(to for _, to, _, _ in calls if to != 3) == ([1, 2] if len(to_3) < 4 else [])
    assert to_3 == [[5], [5], [2], []]
    assert [_stored(n) for n in cluster.nodes] == [12, 12, 12, 0]
    assert [m.attempts for m in _pending(sender)] == [1] * 12

    cluster.clock.advance(node_module.OUTBOX_BACKOFF_MS - 1)
    await sender.outbox_tick()
    assert recorder.take() == []
    cluster.clock.advance(1)  # the first batch is due again: one request, and its backoff doubles
    await sender.outbox_tick()
    assert recorder.take() == [(0, 3, "terms_batch", 5)]
    assert [m.attempts for m in _pending(sender)] == [2] * 5 + [1] * 7
    retried = sender.store.due_outbox(cluster.clock.now_ms() + 2 * node_module.OUTBOX_BACKOFF_MS)
    assert len(retried) == 12
    assert len(sender.store.due_outbox(cluster.clock.now_ms() + 2 * node_module.OUTBOX_BACKOFF_MS - 1)) == 7

    cluster.up(3)
    for _ in range(40):  # back up: it catches up, never with more than one request per tick
        cluster.clock.advance(100)
        await sender.outbox_tick()
        assert len([c for c in recorder.take() if c[1] == 3]) <= 1
        if not _pending(sender):
            break
    assert _pending(sender) == [] and _stored(cluster.nodes[3]) == 12


async def test_shared_terms_this_node_holds_are_duplicates_without_a_parse(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each peer shares every client registration again: terms identical to what this node holds answer
    "duplicate" without being parsed; the same id with other terms is still parsed and a conflict."""
    target, sender = cluster.nodes[0], cluster.nodes[1]
    deadline = cluster.chain.time_s + 600
    held = dvp_terms("held-twice", deadline_s=deadline)
    assert target.register_terms(held)
    fresh = dvp_terms("fresh-one", deadline_s=deadline)
    conflicting = dvp_terms("held-twice", deadline_s=deadline + 1)
    parsed: list[object] = []
    real_from_dict = Terms.from_dict.__func__  # type: ignore[attr-defined]

    def counting_from_dict(cls: type[Terms], data: Any) -> Terms:
        parsed.append(data.get("settlement_id"))
        return real_from_dict(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Terms, "from_dict", classmethod(counting_from_dict))
    items = [held.to_dict(), fresh.to_dict(), conflicting.to_dict()]
    status, reply = await target.handle_peer_message(sender.signer.seal(0, "terms_batch", {"terms": items}))
    assert status == 200
    assert [r["status"] for r in reply["results"]] == ["duplicate", "ok", "conflict"]
    sid = "0x" + held.settlement_id.hex()
    assert parsed == ["0x" + fresh.settlement_id.hex(), sid]  # the held terms only for the conflict
    assert target.store.get_terms(held.settlement_id) == held
