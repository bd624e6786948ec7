"""Four `crossdvp node run` processes against a real anvil and a real payments service: the happy paths
seen from the terms' side, on the package's shared network (conftest.py `dvp`, dvp_world.py).

Terms registered with ONE node reach the others through peer sharing, and that is enough for a DvP to
settle on both ledgers or, when its cash never arrives, to abort with the shares refunded; a node
SIGKILLed and restarted learns the quorum's report instead of making another. The fault suite
(leader killed mid-round, RPC outages, Byzantine nodes, ...) is test_node_faults.py; the in-process
twins in test_node.py cover the protocol paths.
"""

from __future__ import annotations

import pytest

from crossdvp.settlement.terms import Terms
from tests.oracle.dvp_world import SHARES, DvpWorld

pytestmark = pytest.mark.integration


def _registered_with_one_node(dvp: DvpWorld, label: str, node: int, deadline_in_s: int) -> Terms:
    terms = dvp.terms(label, deadline_in_s=deadline_in_s)
    dvp.register(terms, [node])
    return terms


def test_terms_given_to_one_node_settle_on_both_ledgers(healthy: DvpWorld) -> None:
    dvp = healthy
    terms = _registered_with_one_node(dvp, "e2e-settle", 0, deadline_in_s=900)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    dvp.assert_settled(terms)
    for node in range(4):
        assert dvp.wait_node_delivered(node, terms)["decision"]["decision"] == "SETTLE"


def test_terms_given_to_one_node_abort_when_the_cash_never_arrives(healthy: DvpWorld) -> None:
    dvp = healthy
    terms = _registered_with_one_node(dvp, "e2e-abort", 1, deadline_in_s=12)
    before = dvp.balances()["seller_shares"]
    dvp.lock_shares(terms)
    dvp.assert_aborted(terms, shares_locked=SHARES, cash_held=False)
    assert dvp.balances()["seller_shares"] == before
    assert dvp.wait_node_delivered(2, terms)["decision"]["decision"] == "ABORT"


def test_a_restarted_node_learns_the_quorums_report(healthy: DvpWorld) -> None:
    dvp = healthy
    dvp.kill(3)
    terms = _registered_with_one_node(dvp, "e2e-kill", 0, deadline_in_s=900)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    dvp.assert_settled(terms)
    dvp.start(3)
    dvp.register(terms, [3])  # as the SDK would; node 0's share reaches it too, after its backoff
    view = dvp.wait_node_delivered(3, terms)
    assert view["decision"]["decision"] == "SETTLE"
    assert len(view["reports"]) == 1  # it learned the quorum's report; nobody made a second one
