"""The JSON-RPC fault proxy against a real anvil: each mode does what it says; modes switch at run time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crossdvp.chain.anvil import Anvil
from crossdvp.chain.client import EvmClient
from crossdvp.chain.errors import RpcError
from crossdvp.chaos.rpc_proxy import ProxyMode, RpcFaultProxy
from crossdvp.errors import CrossDvpError


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcFaultProxy]:
    with RpcFaultProxy(anvil.rpc_url) as running:
        yield running


@pytest.fixture
def via_proxy(proxy: RpcFaultProxy) -> EvmClient:
    return EvmClient(proxy.url, timeout_s=5.0)


def test_pass_forwards_every_request(proxy: RpcFaultProxy, via_proxy: EvmClient, evm: EvmClient) -> None:
    assert via_proxy.chain_id == evm.chain_id
    evm.mine(2)
    assert via_proxy.block_number() == evm.block_number()
    assert proxy.stats().by_mode.get("pass", 0) >= 2
    assert proxy.stats().faulted() == 0


def test_drop_closes_the_connection_without_an_answer(proxy: RpcFaultProxy, via_proxy: EvmClient) -> None:
    proxy.set_mode(ProxyMode.DROP)
    with pytest.raises(RpcError) as caught:
        via_proxy.block_number()
    assert caught.value.retryable
    assert proxy.stats().by_mode["drop"] >= 1


def test_error_answers_http_503_which_the_client_retries(proxy: RpcFaultProxy, via_proxy: EvmClient) -> None:
    proxy.set_mode(ProxyMode.ERROR)
    with pytest.raises(RpcError) as caught:
        via_proxy.block_number()
    assert caught.value.retryable
    assert "503" in str(caught.value)


def test_stale_replays_the_head_recorded_when_it_was_entered(
    proxy: RpcFaultProxy, via_proxy: EvmClient, evm: EvmClient
) -> None:
    evm.mine(1)
    head = evm.block_number()
    head_hash = evm.latest_block().hash
    finalized = evm.get_block("finalized").number
    proxy.set_mode(ProxyMode.STALE)
    evm.mine(3)
    assert evm.block_number() == head + 3
    assert via_proxy.block_number() == head
    assert via_proxy.latest_block().hash == head_hash
    assert via_proxy.get_block("finalized").number == finalized
    with pytest.raises(RpcError, match="not found"):
        via_proxy.get_block(head + 2)  # above the stale head: unknown to a lagging node
    assert via_proxy.get_block(head - 1).number == head - 1  # history still served
    proxy.set_mode(ProxyMode.PASS)
    assert via_proxy.block_number() == head + 3


def test_delay_still_answers_and_modes_switch_back(proxy: RpcFaultProxy, via_proxy: EvmClient) -> None:
    proxy.set_mode(ProxyMode.DELAY, delay_ms=50)
    assert via_proxy.block_number() >= 0
    assert proxy.stats().by_mode["delay"] == 1
    proxy.set_mode("pass")
    assert proxy.mode is ProxyMode.PASS


def test_a_negative_delay_is_refused(proxy: RpcFaultProxy) -> None:
    with pytest.raises(CrossDvpError, match="delay_ms"):
        proxy.set_mode(ProxyMode.DELAY, delay_ms=-1)


def test_transactions_pass_through_the_proxy(
    proxy: RpcFaultProxy, via_proxy: EvmClient, anvil: Anvil
) -> None:
    sender = via_proxy.account(anvil.dev_keys[3])
    receipt = via_proxy.transfer_eth(sender, "0x" + "11" * 20, 1)
    assert receipt.status == 1
