"""anvil is started, reached and stopped by PID, and its dev accounts are the funded ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from crossdvp.chain.anvil import Anvil, running_anvil, start_anvil
from crossdvp.chain.client import EvmClient
from crossdvp.process import ProcessStartError, pid_alive

pytestmark = pytest.mark.integration


def test_fresh_anvil_answers_and_is_gone_after_stop(fresh_anvil: Anvil) -> None:
    client = EvmClient(fresh_anvil.rpc_url)
    assert client.chain_id == 31337 == fresh_anvil.chain_id
    assert fresh_anvil.rpc_url.startswith("http://127.0.0.1:")
    assert pid_alive(fresh_anvil.pid)
    fresh_anvil.stop()
    assert not pid_alive(fresh_anvil.pid)


def test_kill_ends_the_process(fresh_anvil: Anvil) -> None:
    fresh_anvil.kill()
    assert not fresh_anvil.alive()
    assert not pid_alive(fresh_anvil.pid)


def test_running_anvil_stops_it_when_the_block_raises(tmp_path: Path) -> None:
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="test body failed"), running_anvil(tmp_path) as node:
        seen.append(node.pid)
        raise RuntimeError("test body failed")
    assert seen
    assert not pid_alive(seen[0])


def test_custom_chain_id(tmp_path: Path) -> None:
    with running_anvil(tmp_path, chain_id=4242) as node:
        assert EvmClient(node.rpc_url).chain_id == 4242
        assert EvmClient(node.rpc_url).caip2 == "eip155:4242"


def test_dev_keys_are_anvils_funded_accounts(anvil: Anvil, evm: EvmClient) -> None:
    addresses = [Account.from_key(key).address.lower() for key in anvil.dev_keys]
    assert len(addresses) == len(set(addresses)) == 10
    # The first dev account of the standard mnemonic, as every Foundry/Hardhat user knows it.
    assert addresses[0] == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    for address in addresses:
        assert evm.balance(address) > 0


def test_a_busy_port_fails_to_start_and_leaves_nothing(anvil: Anvil, tmp_path: Path) -> None:
    with pytest.raises(ProcessStartError, match="anvil"):
        start_anvil(tmp_path, port=anvil.port, timeout_s=10)
