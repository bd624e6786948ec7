"""Issue 4's integration suite: a DON of 4 real `crossdvp node run` processes (n = 4, f = 1) between a
real anvil and a real payments service, under the faults the design must survive.

One network is shared by the package's integration tests (dvp_world.py, conftest.py `dvp`). The
first scenarios run concurrently on it (one batch of trades with different settlement ids), the
fault scenarios one after another, each restoring four honest running nodes afterwards
(`healthy`). Every outcome is asserted on the ledgers' own state — the escrow's lock record and
events, token balances, the ledger's holds and balances, the forwarder's transmission record —
not only on what nodes believe.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

import pytest

from crossdvp.chain.contracts import LockState, TransmissionState
from crossdvp.chaos.rpc_proxy import ProxyMode
from crossdvp.payments.errors import PaymentsApiError
from crossdvp.settlement.terms import Decision, Terms
from tests.oracle.dvp_world import CASH, SHARES, DvpWorld, chain_read, wait_for

pytestmark = pytest.mark.integration

SIGNATURES = "crossdvp_node_signatures_total"
ROUNDS = "crossdvp_node_rounds_total"
ERRORS = "crossdvp_node_errors_total"
POLLS = "crossdvp_node_polls_total"
DROPPED = "crossdvp_node_peer_messages_dropped_total"
# Trades that must abort need a deadline the test can reach soon, yet late enough for every lock the
# scenario places first (a chain lock waits for a block, one per second).
SHORT_DEADLINE_S = 20
LONG_DEADLINE_S = 900


# -- 1-3: one concurrent batch of trades ---------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    settle: Terms
    no_cash: Terms
    wrong_amount: Terms
    wrong_payee: Terms
    before: dict[str, int]


@pytest.fixture(scope="module")
def batch(dvp: DvpWorld) -> Batch:
    """Four trades in flight at once: one that settles, one whose cash never arrives, one whose chain
    lock has the wrong amount, one whose hold names the wrong payee."""
    before = dvp.balances()
    b = Batch(
        settle=dvp.terms("batch-settle", deadline_in_s=LONG_DEADLINE_S),
        no_cash=dvp.terms("batch-no-cash", deadline_in_s=SHORT_DEADLINE_S),
        wrong_amount=dvp.terms("batch-wrong-amount", deadline_in_s=SHORT_DEADLINE_S),
        wrong_payee=dvp.terms("batch-wrong-payee", deadline_in_s=SHORT_DEADLINE_S),
        before=before,
    )
    for terms in (b.no_cash, b.wrong_amount, b.wrong_payee, b.settle):
        dvp.register(terms)
    # The short-deadline locks first: each must land before its deadline.
    dvp.lock_shares(b.no_cash)
    dvp.lock_shares(b.wrong_amount, amount=SHARES - 1)
    dvp.hold_cash(b.wrong_amount)
    dvp.lock_shares(b.wrong_payee)
    dvp.hold_cash(b.wrong_payee, payee_account=dvp.mallory_account)
    dvp.lock_shares(b.settle)
    dvp.hold_cash(b.settle)
    return b


def test_a_dvp_settles_on_both_ledgers(dvp: DvpWorld, batch: Batch) -> None:
    dvp.assert_settled(batch.settle)
    for node in range(4):
        view = dvp.wait_node_delivered(node, batch.settle)
        assert view["decision"]["decision"] == "SETTLE"


def test_cash_never_arrives_aborts_after_the_deadline_and_refunds_the_shares(
    dvp: DvpWorld, batch: Batch
) -> None:
    dvp.assert_aborted(batch.no_cash, shares_locked=SHARES, cash_held=False)
    # Executed only after the deadline, by the chain's own clock; decided at the deadline (the rule).
    escrow, sid = dvp.world.contracts.escrow, batch.no_cash.settlement_id
    (aborted,) = chain_read(lambda: escrow.aborted_events(0, "latest", settlement_id=sid))
    executed_at = chain_read(lambda: dvp.world.evm.get_block(aborted.block_number)).timestamp
    assert executed_at > batch.no_cash.deadline_s
    view = dvp.view(0, batch.no_cash)
    assert view is not None and view["decision"]["decided_at_s"] == batch.no_cash.deadline_s


def test_a_lock_that_does_not_match_the_terms_aborts_and_refunds(dvp: DvpWorld, batch: Batch) -> None:
    # Wrong amount on the chain: that lock is treated as absent; ABORT refunds it and releases the hold.
    dvp.assert_aborted(batch.wrong_amount, shares_locked=SHARES - 1, cash_held=True)
    # Wrong payee on the ledger: the matching chain lock is refunded too; the payee got nothing.
    dvp.assert_aborted(batch.wrong_payee, shares_locked=SHARES, cash_held=True)
    view = dvp.view(1, batch.wrong_amount)
    assert view is not None
    assert [lock["matches"] for lock in view["locks"] if lock["leg_index"] == 0] == [False]
    view = dvp.view(1, batch.wrong_payee)
    assert view is not None
    assert [lock["matches"] for lock in view["locks"] if lock["leg_index"] == 1] == [False]


def test_the_batch_moved_exactly_one_trade_of_value(dvp: DvpWorld, batch: Batch) -> None:
    for terms in (batch.settle, batch.no_cash, batch.wrong_amount, batch.wrong_payee):
        dvp.wait_final(terms, "batch")
    after, before = dvp.balances(), batch.before
    assert after["seller_shares"] - before["seller_shares"] == -SHARES
    assert after["buyer_shares"] - before["buyer_shares"] == SHARES
    assert after["escrow_shares"] == before["escrow_shares"]
    assert after["buyer_cash"] - before["buyer_cash"] == -CASH
    assert after["buyer_held"] == before["buyer_held"]
    assert after["seller_cash"] - before["seller_cash"] == CASH
    assert after["mallory_cash"] == before["mallory_cash"]


def test_logs_name_every_decision_and_delivery_in_one_line(dvp: DvpWorld, batch: Batch) -> None:
    for terms, decision in ((batch.settle, "SETTLE"), (batch.no_cash, "ABORT")):
        sid = "0x" + terms.settlement_id.hex()
        for node in range(4):
            dvp.wait_node_delivered(node, terms)
            decided = [line for line in dvp.log_lines(node, sid) if f"decided {decision}" in line]
            assert len(decided) == 1, f"node {node}: decision lines for {sid}: {decided}"
            record = json.loads(decided[0])
            assert record.get("settlement_id") == sid
        delivered = [
            line for node in range(4) for line in dvp.log_lines(node, sid) if " delivered to " in line
        ]
        for network in (dvp.chain_network, dvp.ledger_network):
            assert any(f"delivered to {network}" in line for line in delivered), (network, delivered)


# -- 4-9: faults, one at a time ------------------------------------------------------------------


def _settle_trade(dvp: DvpWorld, label: str, nodes: list[int] | None = None) -> Terms:
    terms = dvp.terms(label, deadline_in_s=LONG_DEADLINE_S)
    dvp.register(terms, nodes)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    return terms


def test_one_node_killed_before_the_decision_still_settles(healthy: DvpWorld) -> None:
    dvp = healthy
    terms = dvp.terms("kill-before-decision", deadline_in_s=LONG_DEADLINE_S)
    dvp.register(terms)
    dvp.kill(3)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    dvp.assert_settled(terms)
    dvp.start(3)
    view = dvp.wait_node_delivered(3, terms)  # the restarted node catches up from its store and peers
    assert view["decision"]["decision"] == "SETTLE"


def test_the_leader_killed_mid_round_still_settles(healthy: DvpWorld) -> None:
    """Node 1 is the only one running when the trade becomes decidable (the others are paused), so the
    round it leads when its slot comes cannot complete; it is SIGKILLed the moment its store records
    its leader signature, i.e. right after it proposed. The others, resumed, must settle without it."""
    dvp = healthy
    victim, others = 1, [0, 2, 3]
    terms = dvp.terms("leader-killed", deadline_in_s=LONG_DEADLINE_S)
    dvp.register(terms)
    sid = "0x" + terms.settlement_id.hex()
    for index in others:
        dvp.pause(index)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    signed = wait_for(
        "node 1 proposes the settlement as leader",
        lambda: dvp.query(
            victim, "SELECT signed_ms FROM signatures WHERE settlement_id = ? AND role = 'leader'", sid
        ),
        interval_s=0.02,
        attempts=6000,
    )
    dvp.kill(victim)
    # It proposed as the slot leader by the nodes' rule (slot = now_ms // round_ms, leader = slot mod n):
    # its signing time lies in its slot, or just past it when the round began at the slot's very end.
    signed_ms = signed[0][0]
    assert victim in (dvp.leader_at(signed_ms), dvp.leader_at(signed_ms - dvp.round_ms // 2)), signed_ms
    # Killed mid-round: no quorum was possible, so it holds no complete report.
    assert dvp.query(victim, "SELECT 1 FROM report_items WHERE settlement_id = ?", sid) == []
    assert dvp.chain_lock(terms).state is LockState.LOCKED
    for index in others:
        dvp.resume(index)
    dvp.assert_settled(terms)
    dvp.start(victim)
    assert dvp.wait_node_delivered(victim, terms)["decision"]["decision"] == "SETTLE"


def test_a_node_killed_right_after_signing_and_restarted_never_equivocates(healthy: DvpWorld) -> None:
    """With two nodes paused the report needs node 2's signature; node 2 is SIGKILLed as soon as its
    store records one, restarted, and must neither sign twice nor sign anything else."""
    dvp = healthy
    victim = 2
    terms = dvp.terms("kill-after-signing", deadline_in_s=LONG_DEADLINE_S)
    dvp.register(terms)
    sid = "0x" + terms.settlement_id.hex()
    dvp.pause(0)
    dvp.pause(1)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    wait_for(
        "node 2 signs the settlement",
        lambda: dvp.query(victim, "SELECT 1 FROM signatures WHERE settlement_id = ?", sid),
        interval_s=0.02,
        attempts=6000,
    )
    dvp.kill(victim)
    dvp.start(victim)
    dvp.resume(0)
    dvp.resume(1)
    dvp.assert_settled(terms)
    dvp.wait_node_delivered(victim, terms)
    rows = dvp.query(
        victim, "SELECT execution_id, decision, role FROM signatures WHERE settlement_id = ?", sid
    )
    assert rows, "the victim's store lost its signature record"
    assert {decision for _, decision, _ in rows} == {int(Decision.SETTLE)}, rows
    execution_ids = [execution_id for execution_id, _, _ in rows]
    assert len(execution_ids) == len(set(execution_ids)), f"a signature recorded twice: {rows}"
    assert dvp.query(victim, "SELECT decision FROM decisions WHERE settlement_id = ?", sid) == [
        (int(Decision.SETTLE),)
    ]
    # assert_settled verified every report for it (f+1 distinct DON signers, all SETTLE); any report
    # that carries the victim's signature is one its store recorded signing, so none was made behind
    # its non-equivocation check (e.g. from a state lost in the crash).
    for execution_id, report in dvp.reports(terms).items():
        if dvp.world.don.signers[victim] in report["signers"]:
            assert execution_id in execution_ids, f"report {execution_id} signed by the victim unrecorded"


def test_two_down_settles_correctly_three_down_completes_nothing_until_one_returns(
    healthy: DvpWorld,
) -> None:
    dvp = healthy
    dvp.kill(0)
    dvp.kill(1)
    # Two of four down: the two live honest nodes still make f+1 = 2 signatures, and nothing is wrong.
    first = _settle_trade(dvp, "two-down", nodes=[2, 3])
    dvp.assert_settled(first)
    # Three down: the last node decides but can never gather f+1 signatures.
    second = _settle_trade(dvp, "three-down", nodes=[2, 3])
    dvp.kill(2)
    wait_for(
        "node 3 decides alone",
        lambda: (dvp.view(3, second) or {}).get("decision"),
    )
    no_quorum = dvp.metric(3, ROUNDS, outcome="no_quorum")
    wait_for(
        "node 3 leads two more rounds without a quorum",
        lambda: dvp.metric(3, ROUNDS, outcome="no_quorum") >= no_quorum + 2,
    )
    assert dvp.chain_lock(second).state is LockState.LOCKED
    assert (dvp.hold(second) or {}).get("state") == "held"
    assert (dvp.view(3, second) or {}).get("reports") == []
    # One comes back: everything completes.
    dvp.start(0)
    dvp.register(second, [0])  # as the SDK would; its peers' shares also reach it, later
    dvp.assert_settled(second)
    dvp.start_many([1, 2])
    # The nodes that were down get the terms from the client again rather than waiting out the peers'
    # share backoff (which grows to 30 s while a peer is unreachable).
    dvp.register(first, [0, 1])
    dvp.register(second, [1])
    for index in range(4):
        dvp.wait_node_delivered(index, first)
        dvp.wait_node_delivered(index, second)


def _poll_errors(dvp: DvpWorld, index: int) -> float:
    return dvp.metric(index, POLLS, network=dvp.chain_network, outcome="error")


def test_an_rpc_outage_is_retried_counted_and_caught_up(healthy: DvpWorld) -> None:
    dvp = healthy
    errors = [_poll_errors(dvp, i) for i in range(4)]
    retryable = [dvp.metric(i, ERRORS, kind="observe_retryable") for i in range(4)]
    oks = [dvp.metric(i, POLLS, network=dvp.chain_network, outcome="ok") for i in range(4)]
    for index, mode in enumerate((ProxyMode.ERROR, ProxyMode.ERROR, ProxyMode.DROP, ProxyMode.DROP)):
        dvp.proxy(index, mode)
    terms = _settle_trade(dvp, "rpc-outage")
    for index in range(4):
        wait_for(
            f"node {index} counts failed chain polls",
            functools.partial(lambda i: _poll_errors(dvp, i) >= errors[i] + 2, index),
        )
    for index in range(4):  # counted as errors worth retrying (retryability is data, not text)
        assert dvp.metric(index, ERRORS, kind="observe_retryable") >= retryable[index] + 2
    assert dvp.chain_lock(terms).state is LockState.LOCKED  # nobody could have executed it
    assert all(dvp.cluster.proxies[i].stats().faulted() > 0 for i in range(4))
    for index in range(4):
        dvp.proxy(index, ProxyMode.PASS)
    dvp.assert_settled(terms)
    for index in range(4):
        dvp.wait_node_delivered(index, terms)
        assert dvp.metric(index, POLLS, network=dvp.chain_network, outcome="ok") > oks[index]


def test_a_byzantine_node_cannot_make_anything_settle_or_abort_against_the_honest_decision(
    healthy: DvpWorld,
) -> None:
    dvp = healthy
    byzantine, honest = 3, [0, 1, 2]
    dropped = sum(dvp.metric(i, DROPPED) for i in honest)
    dvp.set_byzantine(byzantine)
    before = dvp.balances()
    abort = dvp.terms("byzantine-abort", deadline_in_s=SHORT_DEADLINE_S)
    dvp.register(abort)
    dvp.lock_shares(abort)
    settle = _settle_trade(dvp, "byzantine-settle")
    dvp.assert_settled(settle)
    dvp.assert_aborted(abort, shares_locked=SHARES, cash_held=False)
    # It did try: honest nodes dropped its flipped signatures and forged reports.
    wait_for(
        "honest nodes drop a Byzantine message",
        lambda: sum(dvp.metric(i, DROPPED) for i in honest) > dropped,
    )
    # It pushed its forgeries (flipped decisions for every settlement it knows, old ones too) to both
    # networks itself; each network's own record shows it refused them.
    forged = wait_for(
        "the Byzantine node tries to deliver a forged report",
        lambda: [
            match.group(1)
            for line in dvp.log_lines(byzantine, "forwarder refuses report")
            if (match := re.search(r"forwarder refuses report (0x[0-9a-f]{64})", line))
        ],
    )
    for execution_id in set(forged):
        info = dvp.transmission(execution_id)
        assert info.state is TransmissionState.NOT_ATTEMPTED, (execution_id, info)
        with pytest.raises(PaymentsApiError) as refused:
            dvp.world.ledger.get_report(execution_id)
        assert refused.value.status == 404
    after = dvp.balances()
    assert after["seller_shares"] - before["seller_shares"] == -SHARES
    assert after["buyer_shares"] - before["buyer_shares"] == SHARES
    assert after["escrow_shares"] == before["escrow_shares"]
    assert after["buyer_cash"] - before["buyer_cash"] == -CASH
    assert after["seller_cash"] - before["seller_cash"] == CASH
    assert dvp.chain_lock(settle).state is LockState.SETTLED
    assert dvp.chain_lock(abort).state is LockState.ABORTED
