"""The node's HTTP API over ASGI (no sockets): registration, status, listing, peers, health, metrics."""

from __future__ import annotations

import httpx
import pytest

from crossdvp.oracle.api import create_app
from crossdvp.oracle.store import hex32
from tests.oracle.harness import Cluster, dvp_terms

pytestmark = pytest.mark.anyio


def _client(cluster: Cluster, index: int = 0) -> httpx.AsyncClient:
    app = create_app(cluster.nodes[index])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


async def test_register_validate_and_follow_a_settlement(cluster: Cluster) -> None:
    terms = dvp_terms("api", deadline_s=cluster.chain.time_s + 30)
    async with _client(cluster) as client:
        bad = terms.to_dict()
        bad["legs"][1]["amount_minor"] = 0
        response = await client.post("/v1/settlements", json=bad)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "amount_minor" in response.json()["detail"]
        assert (await client.post("/v1/settlements", json=[1])).status_code == 422

        response = await client.post("/v1/settlements", json=terms.to_dict())
        assert response.status_code == 201
        view = response.json()
        assert view["status"] == "pending" and view["terms_hash"] == hex32(terms.terms_hash)
        assert (await client.post("/v1/settlements", json=terms.to_dict())).status_code == 200
        other = dvp_terms("api", deadline_s=terms.deadline_s + 1)
        assert (await client.post("/v1/settlements", json=other.to_dict())).status_code == 409

        cluster.lock(terms)
        await cluster.run_until(lambda: cluster.outcome(terms) == ("settled", "settled"))
        await cluster.run_until(
            lambda: all(
                d.state.value == "delivered"
                for r in cluster.nodes[0].store.reports_for(terms.settlement_id)
                for d in cluster.nodes[0].store.deliveries_for(r.report.workflow_execution_id)
            )
        )
        view = (await client.get(f"/v1/settlements/{hex32(terms.settlement_id)}")).json()
        assert view["status"] == "delivered"
        assert view["decision"]["decision"] == "SETTLE"
        assert [leg["locked"] for leg in view["legs"]] == [True, True]
        assert len(view["locks"]) == 2 and all(lock["matches"] for lock in view["locks"])
        assert len(view["report"]["signatures"]) == 2 and len(view["report"]["signers"]) == 2
        assert {d["network"] for d in view["report"]["deliveries"]} == {
            "eip155:31337",
            "payments:crossdvp-payments",
        }
        assert all(d["reference"] for d in view["report"]["deliveries"])

        listed = (await client.get("/v1/settlements", params={"status": "delivered"})).json()
        assert [s["settlement_id"] for s in listed["settlements"]] == [hex32(terms.settlement_id)]
        assert (await client.get("/v1/settlements", params={"status": "pending"})).json()["settlements"] == []
        assert (await client.get("/v1/settlements", params={"status": "nope"})).status_code == 422
        assert (await client.get("/v1/settlements/0x1234")).status_code == 400
        assert (await client.get("/v1/settlements/0x" + "00" * 32)).status_code == 404


async def test_peer_endpoint_health_and_metrics(cluster: Cluster) -> None:
    terms = dvp_terms("peer-http", deadline_s=cluster.chain.time_s + 30)
    envelope = cluster.nodes[1].signer.seal(0, "terms", {"terms": terms.to_dict()})
    async with _client(cluster) as client:
        response = await client.post("/v1/peer/messages", json=envelope)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        tampered = dict(envelope, sender=2)
        assert (await client.post("/v1/peer/messages", json=tampered)).status_code == 403
        assert (await client.post("/v1/peer/messages", content=b"not json")).status_code == 403

        await cluster.nodes[0].poll_once()
        health = (await client.get("/health")).json()
        assert health["node"] == "node-0" and health["status"] == "ok"
        assert health["networks"]["eip155:31337"]["final_time_s"] == cluster.chain.final_time_s

        text = (await client.get("/metrics")).text
        assert 'crossdvp_node_peer_messages_dropped_total{reason="bad_signature"} 1.0' in text
        assert 'crossdvp_node_peer_messages_received_total{kind="terms"} 1.0' in text


async def test_register_a_batch_one_result_per_item_and_shared_with_every_peer(cluster: Cluster) -> None:
    deadline = cluster.chain.time_s + 30
    known = dvp_terms("batch-known", deadline_s=deadline)
    fresh = [dvp_terms(f"batch-{i}", deadline_s=deadline) for i in range(3)]
    conflicting = dvp_terms("batch-known", deadline_s=deadline + 1)  # same id, other terms
    invalid = fresh[0].to_dict() | {"settlement_id": hex32(b"\x07" * 32), "legs": []}
    cluster.nodes[0].register_terms(known)
    async with _client(cluster) as client:
        body = {
            "settlements": [
                fresh[0].to_dict(),
                known.to_dict(),
                invalid,
                conflicting.to_dict(),
                fresh[1].to_dict(),
                "not terms",
                fresh[2].to_dict(),
            ]
        }
        response = await client.post("/v1/settlements/batch", json=body)
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["status"] for r in results] == [201, 200, 422, 409, 201, 422, 201]
        assert [r["settlement_id"] for r in results] == [
            hex32(fresh[0].settlement_id),
            hex32(known.settlement_id),
            hex32(b"\x07" * 32),
            hex32(known.settlement_id),
            hex32(fresh[1].settlement_id),
            None,
            hex32(fresh[2].settlement_id),
        ]
        assert "legs" in results[2]["problem"]["detail"]
        assert results[3]["problem"]["status"] == 409 and "problem" not in results[0]
        # The same batch again: nothing new, and the refused items are refused again.
        again = (await client.post("/v1/settlements/batch", json=body)).json()["results"]
        assert [r["status"] for r in again] == [200, 200, 422, 409, 200, 422, 200]
        for bad in ({}, {"settlements": []}, {"settlements": [{}] * 201}, [fresh[0].to_dict()]):
            refused = await client.post("/v1/settlements/batch", json=bad)
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert (await client.post("/v1/settlements/batch", content=b"{")).status_code == 422
    assert cluster.nodes[0].store.get_terms(conflicting.settlement_id) == known
    # New terms reach every peer through the outbox, as single registrations do.
    await cluster.run(2)
    for node in cluster.nodes:
        assert all(node.store.get_terms(t.settlement_id) == t for t in fresh)
