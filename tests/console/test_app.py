"""The console's pages, fragments and JSON over in-memory sources (no processes)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from crossdvp.console.app import create_app
from crossdvp.console.service import Console
from tests.console.fakes import (
    BUYER,
    CHAIN,
    LEDGER,
    LEDGER_KEY,
    SELLER,
    SID,
    SIGNERS,
    FakeChain,
    FakeLedger,
    FakeNodes,
    chain_facts,
    hold,
    ledger_facts,
    locked_event,
    make_config,
    outcome_event,
    probe,
    terms_view,
)

CONFIG = make_config()
NOW = 1_800_000_000


@pytest.fixture
def world() -> tuple[FakeNodes, FakeChain, FakeLedger]:
    view = terms_view(
        decision="SETTLE",
        status="delivered",
        signers=SIGNERS[:2],
        deliveries=((CHAIN, "delivered"), (LEDGER, "delivered")),
    )
    nodes = FakeNodes({n.name: probe(n, [view], leader=i == 0, rounds=2) for i, n in enumerate(CONFIG.nodes)})
    nodes.probes["node-3"] = probe(CONFIG.nodes[3], [], up=False)
    chain = FakeChain(chain_facts(locked_event(), outcome_event("settled", BUYER)))
    ledger = FakeLedger(ledger_facts(hold("settled")))
    return nodes, chain, ledger


@pytest.fixture
def client(world: tuple[FakeNodes, FakeChain, FakeLedger]) -> TestClient:
    nodes, chain, ledger = world
    console = Console(CONFIG, nodes=nodes, chain=chain, ledger=ledger, clock=lambda: NOW, max_age_ms=0)
    return TestClient(create_app(console))


PAGES = [
    "/settlements",
    "/settlements?status=settled&party=seller",
    f"/settlements/{SID}",
    "/don",
    "/ledgers",
]
FRAGMENTS = [
    "/fragments/settlements",
    f"/fragments/settlements/{SID}",
    "/fragments/don",
    "/fragments/ledgers",
]
JSON = ["/api/settlements", f"/api/settlements/{SID}", "/api/don", "/api/ledgers"]


def test_every_page_renders_with_strict_headers(client: TestClient) -> None:
    for path in PAGES + FRAGMENTS + JSON:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


def test_settlements_page_shows_status_money_and_parties(client: TestClient) -> None:
    html = client.get("/settlements").text
    assert 'data-status="settled"' in html and "SETTLED" in html
    assert "25.00 OUSG" in html and "25,123.45 USD" in html
    assert "seller" in html and "buyer" in html
    assert f'href="/settlements/{SID}"' in html
    assert "node node-3 is down (connection refused)" in html


def test_filters_select_rows(client: TestClient) -> None:
    assert SID in client.get("/fragments/settlements?status=settled").text
    assert SID not in client.get("/fragments/settlements?status=locking").text
    assert SID not in client.get("/fragments/settlements?party=nobody").text
    assert SID in client.get("/fragments/settlements?party=BUYER").text
    # An unknown status is ignored rather than an error.
    assert SID in client.get("/fragments/settlements?status=<script>").text


def test_settlement_page_shows_legs_timeline_signers_and_movements(client: TestClient) -> None:
    html = client.get(f"/settlements/{SID}").text
    assert "0x" + "aa" * 32 in html  # the chain lock transaction, in full
    assert f"hold-{SID[2:]}-1" in html  # the ledger hold id
    assert "Decided SETTLE" in html and "Final: SETTLED" in html
    for signer in SIGNERS[:2]:
        assert signer in html
    assert html.count('data-movement="paid"') == 2


def test_unknown_settlement_is_404_and_malformed_ids_are_not_looked_up(client: TestClient) -> None:
    assert client.get("/settlements/0x" + "77" * 32).status_code == 404
    assert client.get("/api/settlements/0x" + "77" * 32).status_code == 404
    assert client.get("/settlements/not-an-id").status_code == 404


def test_don_page_shows_down_node(client: TestClient) -> None:
    html = client.get("/don").text
    assert re.search(r'data-node="node-3" data-health="down"', html)
    assert html.count('data-health="up"') == 3
    assert "3 of 4 nodes up" in html
    data = client.get("/api/don").json()
    assert [n["up"] for n in data["nodes"]] == [True, True, True, False]


def test_ledgers_page_shows_supply_holders_and_accounts(client: TestClient) -> None:
    html = client.get("/ledgers").text
    assert "10,000.00 OUSG" in html and SELLER in html
    assert "974,876.55 USD" in html


def test_json_keeps_integers_next_to_text(client: TestClient) -> None:
    (row,) = client.get("/api/settlements").json()["settlements"]
    assert row["legs"][1]["amount"] == {
        "amount_minor": 2_512_345,
        "decimals": 2,
        "unit": "USD",
        "text": "25,123.45 USD",
    }


def test_no_answer_contains_the_ledger_credential(client: TestClient) -> None:
    for path in PAGES + FRAGMENTS + JSON + ["/static/console.js", "/static/console.css"]:
        body = client.get(path).text
        assert LEDGER_KEY not in body, path
    assert LEDGER_KEY not in repr(CONFIG)
    assert LEDGER_KEY not in str(CONFIG.ledger)


def test_html_is_escaped(world: tuple[FakeNodes, FakeChain, FakeLedger]) -> None:
    nodes, chain, ledger = world
    view = terms_view()
    view["legs"][1]["payer"] = "<script>alert(1)</script>"
    nodes.probes["node-0"] = probe(CONFIG.nodes[0], [view])
    console = Console(CONFIG, nodes=nodes, chain=chain, ledger=ledger, clock=lambda: NOW, max_age_ms=0)
    html = TestClient(create_app(console)).get("/settlements").text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
