"""The real sources against httpx mock transports: timeouts mean down, only GETs reach the ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from crossdvp.console.config import config_from_toml
from crossdvp.console.sources import HttpNodeSource, LedgerHttpSource
from crossdvp.errors import ConfigError
from tests.console.fakes import LEDGER_KEY, make_config, node_metrics_text, terms_view

CONFIG = make_config()


def test_a_node_that_does_not_answer_health_is_down() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    source = HttpNodeSource(transport=httpx.MockTransport(handler))
    result = asyncio.run(source.probe(CONFIG.nodes[0]))
    assert (result.up, result.error) == (False, "connection refused")


def test_a_live_node_reports_health_metrics_and_settlements() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "node": "node-0", "networks": {}})
        if request.url.path == "/metrics":
            return httpx.Response(200, text=node_metrics_text(rounds=2))
        if request.url.path == "/v1/settlements":
            assert request.url.params["limit"] == "1000"
            return httpx.Response(200, json={"settlements": [terms_view()], "next_after": None})
        return httpx.Response(404)

    source = HttpNodeSource(transport=httpx.MockTransport(handler))
    result = asyncio.run(source.probe(CONFIG.nodes[0]))
    assert result.up and result.error is None
    assert len(result.settlements) == 1
    assert any(s.name == "crossdvp_node_rounds_total" and s.value == 2 for s in result.metrics)


def test_a_node_with_broken_metrics_is_up_with_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/metrics":
            return httpx.Response(500)
        return httpx.Response(200, json={"settlements": []})

    result = asyncio.run(HttpNodeSource(transport=httpx.MockTransport(handler)).probe(CONFIG.nodes[0]))
    assert result.up and result.error == "metrics: HTTP 500"


def test_ledger_source_pages_with_get_only_and_the_key_in_the_header() -> None:
    seen: list[httpx.Request] = []
    account = {
        "account_id": "a",
        "participant_id": "p",
        "currency": "USD",
        "frozen": False,
        "available_minor": 5,
        "held_minor": 1,
        "created_at_s": 1,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/info":
            return httpx.Response(
                200, json={"ledger_id": "x", "network": "payments:x", "time_s": 7, "grace_s": 1}
            )
        if request.url.path == "/v1/accounts":
            if "after" not in request.url.params:
                return httpx.Response(200, json={"items": [account], "next_after": "a"})
            return httpx.Response(200, json={"items": [{**account, "account_id": "b"}], "next_after": None})
        return httpx.Response(200, json={"items": [], "next_after": None})

    facts = asyncio.run(LedgerHttpSource(CONFIG.ledger, transport=httpx.MockTransport(handler)).facts())
    assert facts.ok and facts.time_s == 7
    assert [a.account_id for a in facts.accounts] == ["a", "b"]
    assert {r.method for r in seen} == {"GET"}
    assert all(r.headers["authorization"] == f"Bearer {LEDGER_KEY}" for r in seen)


def test_ledger_down_is_reported_not_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    facts = asyncio.run(LedgerHttpSource(CONFIG.ledger, transport=httpx.MockTransport(handler)).facts())
    assert (facts.ok, facts.error) == (False, "timed out")


TOML = """
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 1
registry = "0x{r}"
token = "0x{t}"
escrow = "0x{e}"
forwarder = "0x{f}"
deployed_at_block = 0
[ledger]
url = "http://127.0.0.1:8700"
network = "payments:bank"
api_key_env = "CONSOLE_LEDGER_KEY"
[don]
f = 1
[[nodes]]
name = "n0"
url = "http://127.0.0.1:9000"
signer = "0x{s}"
""".format(r="11" * 20, t="22" * 20, e="33" * 20, f="44" * 20, s="AB" * 20)


def test_toml_config_reads_the_key_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "console.toml"
    path.write_text(TOML)
    config = config_from_toml(path, env={"CONSOLE_LEDGER_KEY": "k-123"})
    assert config.ledger.api_key.reveal() == "k-123"
    assert config.nodes[0].signer == "0x" + "ab" * 20
    with pytest.raises(ConfigError, match="CONSOLE_LEDGER_KEY"):
        config_from_toml(path, env={})
    path.write_text(TOML.replace("f = 1", "f = 0"))
    with pytest.raises(ConfigError, match=r"don\.f"):
        config_from_toml(path, env={"CONSOLE_LEDGER_KEY": "k"})
    assert json.dumps(str(config.ledger)).find("k-123") == -1
