"""The raw JSON-RPC client asks again when a read at a moving tag races the block being mined."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from crossdvp.oracle._rpc import JsonRpcClient
from crossdvp.oracle.errors import LedgerUnavailable

_RACE = {"code": -32602, "message": "BlockOutOfRangeError: block height is 12 but requested was 11"}


def _client(races: int, calls: list[object]) -> JsonRpcClient:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        items = body if isinstance(body, list) else [body]
        answer = [
            {"jsonrpc": "2.0", "id": item["id"], "error": _RACE}
            if len(calls) <= races
            else {"jsonrpc": "2.0", "id": item["id"], "result": "0x1"}
            for item in items
        ]
        return httpx.Response(200, json=answer if isinstance(body, list) else answer[0])

    return JsonRpcClient("http://127.0.0.1:1", transport=httpx.MockTransport(handler))


def test_a_read_at_latest_that_races_the_next_block_is_asked_again() -> None:
    calls: list[object] = []
    client = _client(races=2, calls=calls)
    assert asyncio.run(client.call("eth_call", [{"to": "0x00"}, "latest"])) == "0x1"
    assert len(calls) == 3
    calls.clear()
    client = _client(races=1, calls=calls)
    assert asyncio.run(client.batch([("eth_call", [{"to": "0x00"}, "latest"]), ("eth_blockNumber", [])])) == [
        "0x1",
        "0x1",
    ]


def test_invalid_params_at_a_fixed_block_is_not_retried_and_a_lasting_race_gives_up() -> None:
    calls: list[object] = []
    client = _client(races=100, calls=calls)
    with pytest.raises(LedgerUnavailable):
        asyncio.run(client.call("eth_call", [{"to": "0x00"}, "0x10"]))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(LedgerUnavailable, match="raced"):
        asyncio.run(client.call("eth_call", [{"to": "0x00"}, "latest"]))
    assert len(calls) == 4
