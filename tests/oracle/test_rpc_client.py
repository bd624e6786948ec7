"""The raw JSON-RPC client: batches whose calls may fail one by one, and the cost of its HTTP stack."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
from httpcore._synchronization import current_async_library

from crossdvp.oracle._rpc import JsonRpcClient
from crossdvp.oracle.errors import LedgerUnavailable, NonceTaken, RpcReverted


def _answering(answers: dict[str, dict[str, object]], seen: list[list[str]]) -> JsonRpcClient:
    """A client whose node answers each method with the given reply fields."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append([item["method"] for item in body])
        return httpx.Response(
            200, json=[{"jsonrpc": "2.0", "id": item["id"], **answers[item["method"]]} for item in body]
        )

    return JsonRpcClient("http://127.0.0.1:1", transport=httpx.MockTransport(handler))


def test_a_batch_of_outcomes_gives_each_failed_call_its_error_in_place() -> None:
    seen: list[list[str]] = []
    client = _answering(
        {
            "eth_blockNumber": {"result": "0x10"},
            "eth_estimateGas": {"error": {"code": 3, "message": "execution reverted", "data": "0xdeadbeef"}},
            "eth_sendRawTransaction": {"error": {"code": -32003, "message": "nonce too low"}},
            "eth_chainId": {"error": {"code": -32000, "message": "header not found"}},
        },
        seen,
    )
    calls = [(m, []) for m in ("eth_blockNumber", "eth_estimateGas", "eth_sendRawTransaction", "eth_chainId")]

    async def ask() -> list[object]:
        try:
            return await client.batch_outcomes(calls)
        finally:
            await client.aclose()

    block, estimate, send, chain = asyncio.run(ask())
    assert seen == [[m for m, _ in calls]]  # one round trip
    assert block == "0x10"
    assert isinstance(estimate, RpcReverted) and estimate.data == bytes.fromhex("deadbeef")
    assert isinstance(send, NonceTaken)
    assert isinstance(chain, LedgerUnavailable) and not isinstance(chain, NonceTaken)


def test_the_http_stack_finds_sniffio_once_instead_of_searching_for_it_on_every_request() -> None:
    # httpcore tries `import sniffio` on every request; without the package installed, each try
    # walks sys.path (42 us), which was 5% of a loaded node's CPU.
    async def library() -> str:
        return current_async_library()

    assert asyncio.run(library()) == "asyncio"
    assert "sniffio" in sys.modules
