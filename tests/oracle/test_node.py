"""The node's protocol end to end over in-memory ledgers: settle, abort, faults, restarts, Byzantine peers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crossdvp.oracle.node import FULL_DECIDE_PASS_MS, Node
from crossdvp.oracle.ports import Observed, Observer
from crossdvp.oracle.store import NodeStore, hex32
from crossdvp.settlement.report import decode_report
from crossdvp.settlement.terms import Decision
from tests.oracle.harness import Cluster, dvp_terms

pytestmark = pytest.mark.anyio


def _settled(cluster: Cluster, terms: object) -> bool:
    return cluster.outcome(terms) == ("settled", "settled")  # type: ignore[arg-type]


async def _tick(cluster: Cluster, stop: asyncio.Event) -> None:
    """For running nodes: their clock moves one poll interval per 10 ms of real time until `stop`."""
    while not stop.is_set():
        await asyncio.sleep(0.01)
        cluster.clock.advance(cluster.step_ms)


async def _eventually(condition: Callable[[], bool], *, within_s: float = 10.0) -> bool:
    """Whether `condition` holds within `within_s` of real time (checked every 10 ms)."""
    for _ in range(int(within_s * 100)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def test_dvp_settles_on_both_networks(cluster: Cluster) -> None:
    terms = dvp_terms("settles", deadline_s=cluster.chain.time_s + 30)
    assert cluster.nodes[0].register_terms(terms)
    await cluster.run(2)  # terms reach every node through the outbox
    assert all(n.store.get_terms(terms.settlement_id) == terms for n in cluster.nodes)
    cluster.lock(terms)
    await cluster.run_until(lambda: _settled(cluster, terms))
    assert cluster.decisions(terms) == [Decision.SETTLE] * 4
    # One report, applied once per network, carrying the SETTLE decision with exactly f+1 signatures.
    assert len(cluster.chain.applied) == 1 and len(cluster.cash.applied) == 1
    report = next(iter(cluster.chain.applied.values()))
    assert len(report.signatures) == 2
    assert [i.decision for i in decode_report(report.raw)[1]] == [Decision.SETTLE]
    # Every node eventually stores the report and its deliveries as confirmed.
    await cluster.run_until(
        lambda: all(
            [d.state.value for d in n.store.deliveries_for(report.workflow_execution_id)] == ["delivered"] * 2
            for n in cluster.nodes
        )
    )


async def test_abort_after_deadline_when_cash_never_locks(cluster: Cluster) -> None:
    terms = dvp_terms("no-cash", deadline_s=cluster.chain.time_s + 5)
    cluster.nodes[1].register_terms(terms)
    cluster.lock(terms, legs=[0])
    await cluster.run(3)
    assert cluster.decisions(terms) == [None] * 4  # before the deadline nothing is decided
    await cluster.run_until(lambda: cluster.outcome(terms) == ("aborted", None))
    assert cluster.decisions(terms) == [Decision.ABORT] * 4
    stored = cluster.nodes[0].store.decision(terms.settlement_id)
    assert stored is not None and stored.decided_at_s == terms.deadline_s


async def test_mismatched_lock_leads_to_abort(cluster: Cluster) -> None:
    terms = dvp_terms("wrong-amount", deadline_s=cluster.chain.time_s + 5)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms, legs=[0])
    cluster.lock(terms, legs=[1], amount_minor=terms.legs[1].amount_minor - 1)  # short by one cent
    await cluster.run_until(lambda: cluster.outcome(terms) == ("aborted", "aborted"))
    assert cluster.decisions(terms) == [Decision.ABORT] * 4


async def test_one_node_down_still_settles(cluster: Cluster) -> None:
    cluster.down(2)
    terms = dvp_terms("one-down", deadline_s=cluster.chain.time_s + 30)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms)
    await cluster.run_until(lambda: _settled(cluster, terms))
    assert cluster.decisions(terms)[2] is None


async def test_silent_leader_is_replaced_by_the_next_slot(cluster: Cluster) -> None:
    """Node 0 answers peers but never runs its own loops: it never proposes while it leads."""
    terms = dvp_terms("silent-leader", deadline_s=cluster.chain.time_s + 30)
    cluster.nodes[1].register_terms(terms)
    cluster.lock(terms)
    await cluster.run_until(lambda: _settled(cluster, terms), skip=[0])
    assert cluster.nodes[0].metrics.signatures.labels(role="leader")._value.get() == 0
    await cluster.run(2, skip=[0])  # the leader's outbox shares the complete report
    assert cluster.nodes[0].store.reports_count() == 1


async def test_leader_of_the_decision_slot_silent_then_next_completes(cluster: Cluster) -> None:
    await cluster.decided("slot-leader")
    leader = next(n for n in cluster.nodes if n.is_leader())
    followers = [n for n in cluster.nodes if n is not leader]
    for follower in followers:
        assert await follower.consensus_tick() is None  # not their slot
    cluster.clock.advance(cluster.round_ms)  # the leader stayed silent for its whole slot
    nxt = next(n for n in cluster.nodes if n.is_leader())
    assert nxt is not leader
    outcome = await nxt.consensus_tick()
    assert outcome is not None and outcome.outcome == "complete"


async def test_a_round_completes_with_the_fastest_signers_and_leaves_a_slow_member_behind(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cluster.decided("slow-member")
    leader = next(n for n in cluster.nodes if n.is_leader())
    slow = next(n for n in cluster.nodes if n is not leader)
    deliver = cluster.peers.deliver

    async def held(sender: int, to: int, envelope: dict[str, Any]) -> dict[str, Any]:
        if to == slow.index:
            await asyncio.Event().wait()  # never answers
        return await deliver(sender, to, envelope)

    monkeypatch.setattr(cluster.peers, "deliver", held)
    outcome = await asyncio.wait_for(leader.consensus_tick(), timeout=5)
    assert outcome is not None and outcome.outcome == "complete"
    assert slow.metrics.signatures.labels(role="follower")._value.get() == 0
    # The request the round stopped waiting for ends when the node closes; nothing is left running.
    await asyncio.wait_for(leader.aclose(), timeout=5)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("propose")]


async def test_restarted_node_never_signs_the_opposite_and_resumes(cluster: Cluster) -> None:
    terms = dvp_terms("restart", deadline_s=cluster.chain.time_s + 30)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms)
    await cluster.run_until(lambda: cluster.decisions(terms)[1] is Decision.SETTLE)
    locks_before = len(cluster.nodes[1].store.locks_for(terms.settlement_id))
    restarted = cluster.restart(1)  # as after kill -9: only the store file survives
    # A leader (here: a forged proposal from node 0's key) asks for the opposite decision.
    flipped = {
        "items": [
            {
                "settlement_id": hex32(terms.settlement_id),
                "terms_hash": hex32(terms.terms_hash),
                "decision": 2,
            }
        ],
        "raw": "0x00",
    }
    status, reply = await restarted.handle_peer_message(cluster.nodes[0].signer.seal(1, "propose", flipped))
    assert status == 200 and reply["status"] == "partial" and reply["agreed"] == []
    assert restarted.store.signed_decisions(terms.settlement_id) <= {Decision.SETTLE}
    # The stored decision cannot be replaced either.
    stored, new = restarted.store.record_decision(terms, Decision.ABORT, terms.deadline_s, "test", 0)
    assert not new and stored.decision is Decision.SETTLE
    await cluster.run_until(lambda: _settled(cluster, terms))
    # It resumed from its stored cursors: no lock was stored twice.
    assert len(restarted.store.locks_for(terms.settlement_id)) == locks_before == 2


async def test_two_of_four_down_still_settles_with_f_plus_one(cluster: Cluster) -> None:
    """DESIGN.md liveness: any f+1 honest nodes make progress (report signatures are exactly f+1)."""
    terms = dvp_terms("two-down", deadline_s=cluster.chain.time_s + 30)
    cluster.down(2, 3)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms)
    await cluster.run_until(lambda: _settled(cluster, terms))


async def test_three_of_four_down_nothing_completes_until_one_returns(cluster: Cluster) -> None:
    terms = dvp_terms("three-down", deadline_s=cluster.chain.time_s + 30)
    cluster.nodes[0].register_terms(terms)
    cluster.down(1, 2, 3)
    cluster.lock(terms)
    await cluster.run(24)  # six full leader rotations
    assert cluster.decisions(terms)[0] is Decision.SETTLE
    assert cluster.outcome(terms) == ("locked", "locked")
    assert cluster.nodes[0].store.reports_count() == 0
    assert cluster.nodes[0].metrics.rounds.labels(outcome="no_quorum")._value.get() > 0
    cluster.up(3)  # it learns the terms from node 0's outbox, decides, and signs
    await cluster.run_until(lambda: _settled(cluster, terms))
    assert cluster.decisions(terms) == [Decision.SETTLE, None, None, Decision.SETTLE]


@pytest.mark.parametrize("mode", ["flip", "garbage"])
@pytest.mark.parametrize("cash_locked", [True, False])
async def test_byzantine_node_cannot_cause_a_wrong_outcome(
    tmp_path: Path, mode: str, cash_locked: bool
) -> None:
    cluster = Cluster(tmp_path, byzantine={1: mode})
    try:
        terms = dvp_terms("byzantine", deadline_s=cluster.chain.time_s + 6)
        cluster.nodes[0].register_terms(terms)
        cluster.lock(terms, legs=[0, 1] if cash_locked else [0])
        expected = ("settled", "settled") if cash_locked else ("aborted", None)
        await cluster.run_until(lambda: cluster.outcome(terms) == expected)
        await cluster.run(16)  # four more rotations: the Byzantine node leads again
        assert cluster.outcome(terms) == expected
        honest = Decision.SETTLE if cash_locked else Decision.ABORT
        for ledger in (cluster.chain, cluster.cash):
            for report in ledger.applied.values():
                assert {i.decision for i in decode_report(report.raw)[1]} == {honest}
        assert cluster.chain.rejected  # its forged reports were tried and refused
        for node in cluster.nodes:
            for stored in node.store.reports_for(terms.settlement_id):
                assert {i.decision for i in stored.report.items} == {honest}
        dropped = sum(
            n.metrics.peer_dropped.labels(reason=r)._value.get()
            for n in cluster.nodes
            for r in ("bad_report", "bad_report_signature", "malformed")
        )
        assert dropped > 0
    finally:
        cluster.close()


async def test_messages_from_non_members_or_badly_signed_are_dropped_and_counted(cluster: Cluster) -> None:
    from crossdvp.oracle.peers import PeerSigner
    from tests.oracle.harness import node_key

    target = cluster.nodes[0]
    terms = dvp_terms("auth", deadline_s=cluster.chain.time_s + 30)
    body = {"terms": terms.to_dict()}
    # A stranger's key claiming to be member 2.
    stranger = PeerSigner(key=node_key(99), index=2, don_id=7, config_version=1, signers=cluster.don.signers)
    status, reply = await target.handle_peer_message(stranger.seal(0, "terms", body))
    assert (status, reply["reason"]) == (403, "bad_signature")
    # A genuine message altered in flight.
    envelope = cluster.nodes[1].signer.seal(0, "terms", body)
    envelope["body"]["terms"]["deadline_s"] += 1
    assert (await target.handle_peer_message(envelope))[1]["reason"] == "bad_signature"
    # A sender index outside the DON.
    outsider = PeerSigner(key=node_key(99), index=9, don_id=7, config_version=1, signers=cluster.don.signers)
    assert (await target.handle_peer_message(outsider.seal(0, "terms", body)))[1]["reason"] == "non_member"
    # Meant for another node.
    assert (await target.handle_peer_message(cluster.nodes[1].signer.seal(2, "terms", body)))[1][
        "reason"
    ] == "wrong_recipient"
    assert (await target.handle_peer_message({"hello": 1}))[1]["reason"] == "malformed"
    dropped = target.metrics.peer_dropped
    assert dropped.labels(reason="bad_signature")._value.get() == 2
    assert dropped.labels(reason="non_member")._value.get() == 1
    assert target.store.get_terms(terms.settlement_id) is None
    # And the genuine message is accepted.
    status, reply = await target.handle_peer_message(cluster.nodes[1].signer.seal(0, "terms", body))
    assert (status, reply["status"]) == (200, "ok")


async def test_leader_reproposes_the_intersection_when_a_follower_is_behind(cluster: Cluster) -> None:
    a = dvp_terms("intersection-a", deadline_s=cluster.chain.time_s + 30)
    b = dvp_terms("intersection-b", deadline_s=cluster.chain.time_s + 30)
    for node in cluster.nodes:
        node.store.add_terms(a, 0)
        node.store.add_terms(b, 0)
    cluster.lock(a)
    cluster.chain.advance(1)
    cluster.cash.advance(1)
    for node in cluster.nodes:
        await node.poll_once()
        node.decide_pending()
    cluster.lock(b)
    cluster.chain.advance(1)
    cluster.cash.advance(1)
    leader = cluster.nodes[0]
    cluster.clock.advance(10_000)  # past every poll backoff
    await leader.poll_once()
    leader.decide_pending()
    assert leader.store.decision(b.settlement_id) is not None
    assert all(n.store.decision(b.settlement_id) is None for n in cluster.nodes[1:])
    outcome = await leader.consensus.lead_round()
    assert outcome.outcome == "complete" and outcome.proposals == 2
    assert outcome.report is not None
    assert [i.settlement_id for i in outcome.report.items] == [a.settlement_id]
    # Nobody signed b: the followers were never asked to sign an item they had not decided.
    for node in cluster.nodes[1:]:
        assert node.store.signed_decisions(b.settlement_id) == set()
    await cluster.run_until(lambda: _settled(cluster, a) and _settled(cluster, b))


async def test_rpc_outage_backs_off_then_catches_up(cluster: Cluster) -> None:
    terms = dvp_terms("outage", deadline_s=cluster.chain.time_s + 60)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms)
    cluster.chain.fail_polls = 12  # spread over the four nodes' polls
    await cluster.run_until(lambda: _settled(cluster, terms), max_steps=200)
    errors = sum(
        n.metrics.polls.labels(network="eip155:31337", outcome="error")._value.get() for n in cluster.nodes
    )
    assert errors == 12


async def test_failed_deliveries_are_retried_until_confirmed(cluster: Cluster) -> None:
    terms = dvp_terms("delivery-outage", deadline_s=cluster.chain.time_s + 60)
    cluster.nodes[0].register_terms(terms)
    cluster.lock(terms)
    cluster.cash.fail_deliveries = 5
    await cluster.run_until(lambda: _settled(cluster, terms), max_steps=200)
    errors = sum(
        n.metrics.deliveries.labels(network="payments:crossdvp-payments", outcome="error")._value.get()
        for n in cluster.nodes
    )
    assert errors == 5


async def test_staggered_delivery_sends_each_report_once(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stagger_ms=5_000)
    try:
        terms = dvp_terms("stagger", deadline_s=cluster.chain.time_s + 30)
        cluster.nodes[0].register_terms(terms)
        cluster.lock(terms)
        await cluster.run_until(lambda: _settled(cluster, terms))
        await cluster.run(30)  # every node's turn comes and finds the report delivered
        assert (cluster.chain.deliveries, cluster.cash.deliveries) == (1, 1)
    finally:
        cluster.close()


async def test_when_the_first_sender_is_down_the_next_one_delivers(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, stagger_ms=2_000)
    try:
        terms = dvp_terms("stagger-down", deadline_s=cluster.chain.time_s + 30)
        cluster.nodes[0].register_terms(terms)
        cluster.lock(terms)
        await cluster.run_until(lambda: cluster.nodes[0].store.reports_count() == 1)
        report = next(iter(cluster.nodes[0].store.reports_for(terms.settlement_id))).report
        from crossdvp.oracle.delivery import rotation_position

        first = next(i for i in range(4) if rotation_position(report.workflow_execution_id, i, 4) == 0)
        if cluster.chain.deliveries == 0:
            cluster.down(first)
        await cluster.run_until(lambda: _settled(cluster, terms), max_steps=100)
    finally:
        cluster.close()


class _HeldOpen:
    """An observer whose polls after the first are held open until `release` is set, as the ledger's
    event feed holds a long-poll while it has nothing new."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.calls = 0

    @property
    def network(self) -> str:
        return self.inner.network

    async def poll(self, cursor: str | None) -> Observed:
        self.calls += 1
        if self.calls > 1:
            await self.release.wait()
        return await self.inner.poll(cursor)


async def test_a_poll_held_open_by_one_network_holds_up_neither_the_other_nor_decisions(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Both legs are locked; the cash leg is final at the ledger's first poll, which then holds every
    later poll open. The chain lock becomes final meanwhile: the running node must still observe it
    and decide (the ledger's last final time already covers the chain lock's time)."""
    held = _HeldOpen(cluster.cash.observer())
    node = Node(
        cluster.settings(0),
        key=cluster.keys[0],
        store=NodeStore(f"sqlite:///{tmp_path / 'held-open.sqlite'}"),
        observers=[cluster.chain.observer(), held],
        deliverers=[cluster.chain.deliverer(), cluster.cash.deliverer()],
        transport=cluster.peers.transport_for(0),
        clock=cluster.clock,
    )
    terms = dvp_terms("held-open", deadline_s=cluster.chain.time_s + 30)
    assert node.register_terms(terms)
    cluster.lock(terms)  # both at the same ledger time T
    cluster.cash.advance(2)  # the cash lock is final (final time T + 1); the chain's is not yet
    stop = asyncio.Event()
    running = asyncio.gather(node.run(stop), _tick(cluster, stop))
    try:
        assert await _eventually(lambda: held.calls >= 2), "the ledger's second poll never started"
        assert node.store.decision(terms.settlement_id) is None
        cluster.chain.advance(1)  # the chain lock is final now
        decided = await _eventually(lambda: node.store.decision(terms.settlement_id) is not None)
        assert decided, "the chain lock was not decided on while the ledger held its poll open"
        stored = node.store.decision(terms.settlement_id)
        assert stored is not None and stored.decision is Decision.SETTLE
    finally:
        held.release.set()
        stop.set()
        await running
        node.store.close()


async def test_a_decision_pass_evaluates_what_changed_and_a_periodic_full_pass_the_rest(
    cluster: Cluster,
) -> None:
    """Between full passes, a pass runs the rule only for settlements with new terms or locks, and for
    those whose deadline a final time reached (a pass over every undecided settlement was a third of a
    node's busy time in a burst of thousands)."""
    node = cluster.nodes[0]
    now_s = cluster.chain.time_s
    waiting = [dvp_terms(f"waiting-{i}", deadline_s=now_s + 600) for i in range(30)]
    expiring = dvp_terms("expiring", deadline_s=now_s + 3)
    for terms in (*waiting, expiring):
        node.store.add_terms(terms, cluster.clock.now_ms())
    await node.poll_once()
    node.decide_pending()  # the first pass on a store is a full one

    def evaluated() -> float:
        return float(node.metrics.decide_evaluated._value.get())

    before = evaluated()
    node.decide_pending()
    assert evaluated() == before  # nothing changed: nothing evaluated
    locked = waiting[7]
    cluster.lock(locked)
    cluster.chain.advance(1)
    cluster.cash.advance(1)
    cluster.clock.advance(cluster.step_ms)  # the next poll is due
    await node.poll_once()
    node.decide_pending()
    assert evaluated() == before + 1
    assert node.store.decision(locked.settlement_id) is not None
    assert node.store.decision(locked.settlement_id).decision is Decision.SETTLE  # type: ignore[union-attr]
    # Final times pass the deadline of `expiring`; nothing of it was stored, yet it is evaluated.
    cluster.chain.advance(5)
    cluster.cash.advance(5)
    cluster.clock.advance(cluster.step_ms)
    await node.poll_once()
    before = evaluated()
    node.decide_pending()
    assert evaluated() == before + 1
    assert node.store.decision(expiring.settlement_id).decision is Decision.ABORT  # type: ignore[union-attr]
    # Once FULL_DECIDE_PASS_MS has passed, every undecided settlement is evaluated again.
    cluster.clock.advance(FULL_DECIDE_PASS_MS)
    before = evaluated()
    node.decide_pending()
    assert evaluated() == before + len(waiting) - 1
    assert node.metrics.decide_passes.labels(kind="full")._value.get() == 2


async def test_a_leader_reports_a_backlog_in_back_to_back_rounds(cluster: Cluster) -> None:
    """One report per consensus tick capped a burst at (ticks per second x max_batch) settlements/s:
    the run loop's leader now goes on at once while its rounds complete."""
    backlog = [dvp_terms(f"backlog-{i}", deadline_s=cluster.chain.time_s + 600) for i in range(250)]
    for node in cluster.nodes:
        node.store.add_terms_many(backlog, cluster.clock.now_ms())
    for terms in backlog:
        cluster.lock(terms)
    await cluster.decide_locked()
    leader = next(n for n in cluster.nodes if n.is_leader())
    assert leader.settings.max_batch == 100
    assert await leader.lead_while_complete() == 3  # 100 + 100 + 50, in one call
    assert leader.store.reports_count() == 3
    reports = leader.store.reports_for_many(t.settlement_id for t in backlog)
    reported = [item.settlement_id for stored in reports for item in stored.report.items]
    assert sorted(reported) == sorted(t.settlement_id for t in backlog)  # each settlement once
    assert await leader.lead_while_complete() == 0  # nothing left: the round is idle
    follower = next(n for n in cluster.nodes if n is not leader)
    assert await follower.lead_while_complete() == 0  # not its slot


async def test_running_nodes_report_a_new_decision_without_waiting_for_a_round_tick(tmp_path: Path) -> None:
    """Four running nodes whose consensus tick (round_ms / 5) is two minutes: a DvP locked after they
    started is still settled on both ledgers, because a poll that brings a lock starts a decision
    pass, a new decision starts the leader's round, and a round without quorum (a follower that had
    not polled yet) is retried when its pause ends rather than at the next tick."""
    cluster = Cluster(tmp_path, round_ms=600_000, step_ms=100)
    stop = asyncio.Event()
    try:
        terms = dvp_terms("woken", deadline_s=cluster.chain.time_s + 600)
        for node in cluster.nodes:
            assert node.register_terms(terms)
        running = asyncio.gather(*(node.run(stop) for node in cluster.nodes), _tick(cluster, stop))
        try:
            # Every loop has run once (and found nothing) before the locks exist.
            assert await _eventually(
                lambda: all(
                    all(net["last_poll_ms"] is not None for net in node.health()["networks"].values())
                    for node in cluster.nodes
                )
            )
            assert cluster.nodes[0].store.reports_count() == 0
            cluster.lock(terms)
            cluster.chain.advance(1)
            cluster.cash.advance(1)
            assert await _eventually(lambda: _settled(cluster, terms)), cluster.outcome(terms)
            assert any(node.metrics.rounds.labels(outcome="complete")._value.get() for node in cluster.nodes)
        finally:
            stop.set()
            await running
    finally:
        cluster.close()
