"""EvmClient against a real anvil: nonces under concurrency, receipts, reverts, transport failures."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from web3 import Web3

from crossdvp.chain._abi import decode_revert
from crossdvp.chain._artifacts import load_artifact
from crossdvp.chain._binding import topic_address
from crossdvp.chain.anvil import Anvil, running_anvil
from crossdvp.chain.client import Call, EvmClient, Sender, normalize_address
from crossdvp.chain.errors import ContractRevert, RpcError, TransactionTimeout
from crossdvp.chaos.rpc_proxy import RpcFaultProxy
from crossdvp.process import free_port

pytestmark = pytest.mark.integration

RECIPIENT = "0x000000000000000000000000000000000000beef"


def _forwarder(evm: EvmClient, owner: Sender) -> str:
    return evm.deploy(owner, "KeystoneForwarder")


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_many_transactions_in_flight_from_one_sender_get_consecutive_nonces(
    evm: EvmClient, dev_senders: tuple[Sender, ...]
) -> None:
    sender = dev_senders[1]
    start_nonce = evm.nonce(sender.address)
    hashes: list[bytes] = []
    hashes_lock = threading.Lock()

    def send_some(count: int) -> None:
        for _ in range(count):
            tx_hash = evm.send(sender, Call(to=RECIPIENT, data=b"", label="transfer", value=1), gas=21_000)
            with hashes_lock:
                hashes.append(tx_hash)

    threads = [threading.Thread(target=send_some, args=(10,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receipts = [evm.wait(h) for h in hashes]
    assert len(set(hashes)) == 50
    assert all(r.status == 1 for r in receipts)
    assert evm.nonce(sender.address, "latest") == start_nonce + 50
    nonces = sorted(int(evm.w3.eth.get_transaction(h)["nonce"]) for h in hashes)
    assert nonces == list(range(start_nonce, start_nonce + 50))


def test_fifty_pending_transactions_are_all_mined_together(tmp_path: Path) -> None:
    with running_anvil(tmp_path, extra_args=["--no-mining"]) as node:
        evm = EvmClient(node.rpc_url)
        sender = evm.account(node.dev_keys[2])
        hashes = [
            evm.send(sender, Call(to=RECIPIENT, data=b"", label="transfer", value=i + 1), gas=21_000)
            for i in range(50)
        ]
        assert evm.nonce(sender.address, "latest") == 0
        evm.mine()
        receipts = [evm.wait(h) for h in hashes]
        assert {r.block_number for r in receipts} == {1}
        assert all(r.status == 1 for r in receipts)
        assert evm.balance(RECIPIENT) == sum(range(1, 51))


def test_nonce_resyncs_after_another_client_used_the_same_key(evm: EvmClient, anvil: Anvil) -> None:
    ours = evm.account(anvil.dev_keys[3])
    evm.transact(ours, Call(to=RECIPIENT, data=b"", label="transfer", value=1), gas=21_000)
    # Another process with the same key: its own client, its own counter.
    other = EvmClient(anvil.rpc_url)
    other.transact(
        other.account(anvil.dev_keys[3]), Call(to=RECIPIENT, data=b"", label="t", value=1), gas=21_000
    )
    # Our counter is now stale; the node says "nonce too low" and the client re-reads it.
    receipt = evm.transact(ours, Call(to=RECIPIENT, data=b"", label="transfer", value=1), gas=21_000)
    assert receipt.status == 1
    assert evm.nonce(ours.address, "latest") == 3


def test_account_returns_one_sender_per_key(evm: EvmClient, anvil: Anvil) -> None:
    assert evm.account(anvil.dev_keys[0]) is evm.account(anvil.dev_keys[0])


def test_wait_times_out_without_a_block_then_finds_the_receipt(tmp_path: Path) -> None:
    with running_anvil(tmp_path, extra_args=["--no-mining"]) as node:
        evm = EvmClient(node.rpc_url)
        sender = evm.account(node.dev_keys[0])
        tx_hash = evm.send(sender, Call(to=RECIPIENT, data=b"", label="transfer", value=1), gas=21_000)
        with pytest.raises(TransactionTimeout) as caught:
            evm.wait(tx_hash, timeout_s=0.05)
        assert caught.value.tx_hash == tx_hash
        assert caught.value.retryable
        evm.mine()
        assert evm.wait(tx_hash).status == 1


def test_custom_error_without_arguments_is_decoded(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    owner = dev_senders[0]
    forwarder = evm.contract("KeystoneForwarder", _forwarder(evm, owner))
    with pytest.raises(ContractRevert) as caught:
        evm.transact(owner, forwarder.functions.setConfig(1, 1, 0, [Web3.to_checksum_address(RECIPIENT)]))
    assert caught.value.error_name == "FaultToleranceMustBePositive"
    assert caught.value.error_args == ()
    assert not caught.value.retryable
    assert "setConfig reverted: FaultToleranceMustBePositive()" in str(caught.value)


def test_custom_error_arguments_are_decoded_by_name(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    owner = dev_senders[0]
    forwarder = _forwarder(evm, owner)
    raw_report = bytes(109)  # metadata of don 0 / config 0, which is not configured
    data = _selector("report(address,bytes,bytes,bytes[])") + encode(
        ["address", "bytes", "bytes", "bytes[]"], [RECIPIENT, raw_report, bytes(96), []]
    )
    call = Call(to=forwarder, data=data, label="KeystoneForwarder.report")
    with pytest.raises(ContractRevert) as caught:
        evm.transact(owner, call)
    assert caught.value.error_name == "InvalidConfig"
    assert caught.value.error_args == (0,)
    assert caught.value.named_args == {"configId": 0}
    assert str(caught.value) == "KeystoneForwarder.report reverted: InvalidConfig(configId=0)"


def test_require_string_is_decoded(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    forwarder = _forwarder(evm, dev_senders[0])
    data = _selector("addForwarder(address)") + encode(["address"], [RECIPIENT])
    with pytest.raises(ContractRevert) as caught:
        evm.transact(dev_senders[1], Call(to=forwarder, data=data, label="KeystoneForwarder.addForwarder"))
    assert caught.value.error_name == "Error"
    assert caught.value.error_args == ("Only callable by owner",)


def test_a_revert_mined_on_chain_is_explained_by_replay(
    evm: EvmClient, dev_senders: tuple[Sender, ...]
) -> None:
    forwarder = _forwarder(evm, dev_senders[0])
    data = _selector("addForwarder(address)") + encode(["address"], [RECIPIENT])
    call = Call(to=forwarder, data=data, label="KeystoneForwarder.addForwarder")
    # An explicit gas limit skips estimation, so the transaction is mined and fails (status 0).
    with pytest.raises(ContractRevert) as caught:
        evm.transact(dev_senders[1], call, gas=200_000)
    assert caught.value.error_name == "Error"
    assert caught.value.tx_hash is not None
    assert evm.wait(caught.value.tx_hash).status == 0


def test_call_returns_data_and_owner_is_the_deployer(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    forwarder = _forwarder(evm, dev_senders[0])
    out = evm.call(Call(to=forwarder, data=_selector("owner()"), label="KeystoneForwarder.owner"))
    assert normalize_address("0x" + out[-20:].hex()) == dev_senders[0].address


def test_dead_endpoint_raises_retryable_rpc_error() -> None:
    client = EvmClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(RpcError) as caught:
        client.block_number()
    assert caught.value.retryable
    assert caught.value.code is None
    assert caught.value.method == "eth_blockNumber"


def test_silent_endpoint_times_out_as_retryable_rpc_error() -> None:
    # A socket that accepts connections (kernel backlog) but never answers: a hung node.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        client = EvmClient(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=0.2)
        with pytest.raises(RpcError, match="timed out") as caught:
            client.block_number()
    assert caught.value.retryable
    assert caught.value.code is None


def test_node_refusal_is_a_non_retryable_rpc_error_and_keeps_the_nonce(evm: EvmClient, anvil: Anvil) -> None:
    sender = evm.account(anvil.dev_keys[4])
    too_much = evm.balance(sender.address) * 2
    with pytest.raises(RpcError) as caught:
        evm.send(sender, Call(to=RECIPIENT, data=b"", label="transfer", value=too_much), gas=21_000)
    assert caught.value.code is not None
    assert not caught.value.retryable
    # The refused transaction did not consume a nonce: the next one is mined without a gap.
    assert evm.transfer_eth(sender, RECIPIENT, 1).status == 1


def test_snapshot_revert_and_time_travel(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    sender = dev_senders[5]
    snapshot = evm.snapshot()
    evm.transfer_eth(sender, RECIPIENT, 7)
    assert evm.balance(RECIPIENT) == 7
    evm.revert(snapshot)
    assert evm.balance(RECIPIENT) == 0
    # The nonce counter follows the rewind: the next transaction is accepted.
    evm.transfer_eth(sender, RECIPIENT, 5)
    assert evm.balance(RECIPIENT) == 5

    before = evm.latest_block().timestamp
    evm.increase_time(3600)
    evm.mine()
    assert evm.latest_block().timestamp >= before + 3600
    evm.set_next_block_timestamp(before + 10_000)
    evm.mine()
    assert evm.latest_block().timestamp == before + 10_000
    number = evm.block_number()
    evm.mine(3)
    assert evm.block_number() == number + 3
    evm.mine(0)
    assert evm.block_number() == number + 3


def test_fixture_isolation_part_one(evm: EvmClient, dev_senders: tuple[Sender, ...]) -> None:
    evm.transfer_eth(dev_senders[6], RECIPIENT, 11)
    assert evm.balance(RECIPIENT) == 11


def test_fixture_isolation_part_two(evm: EvmClient) -> None:
    # Runs after part one on the same module-scoped anvil; the evm fixture reverted its transfer.
    assert evm.balance(RECIPIENT) == 0


def test_decode_revert_handles_panic_and_garbage() -> None:
    panic = _selector("Panic(uint256)") + encode(["uint256"], [0x11])
    decoded = decode_revert(panic, {})
    assert decoded.error_name == "Panic"
    assert "overflow" in decoded.description
    unknown = decode_revert(b"\x12\x34\x56\x78", {})
    assert unknown.error_name == ""
    assert "0x12345678" in unknown.description
    assert decode_revert(b"", {}).error_name == ""


def test_normalize_address_names_the_field() -> None:
    assert normalize_address("0xABCDEF0000000000000000000000000000000001") == (
        "0xabcdef0000000000000000000000000000000001"
    )
    with pytest.raises(ValueError, match="payee must be 0x"):
        normalize_address("0x1234", field_name="payee")


def test_invalid_params_is_transient_only_for_reads_at_a_moving_tag() -> None:
    from crossdvp.chain.client import _transient

    assert _transient(-32602, ["0xabc", "latest"])
    assert not _transient(-32602, ["0xabc", "0x10"])
    assert not _transient(-32000, ["latest"])
    assert _transient(-32005, [])


def test_a_read_at_latest_that_races_the_next_block_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossdvp.chain.client import EvmClient

    client = EvmClient("http://127.0.0.1:1")
    answers = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32602, "message": "block height is 9 but requested was 8"},
        },
        {"jsonrpc": "2.0", "id": 2, "result": "0x2a"},
    ]
    sent: list[tuple[str, list[object]]] = []

    def make_request(method: str, params: list[object]) -> dict[str, object]:
        sent.append((method, params))
        return answers.pop(0)

    monkeypatch.setattr(client._provider, "make_request", make_request)
    assert client.request("eth_call", [{"to": "0x00"}, "latest"]) == "0x2a"
    assert len(sent) == 2

    answers[:] = [{"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad block"}}]
    with pytest.raises(RpcError) as raised:
        client.request("eth_call", [{"to": "0x00"}, "0x10"])
    assert raised.value.code == -32602 and not raised.value.retryable


def test_logs_of_a_long_range_are_read_in_parts_a_capped_provider_accepts(
    evm: EvmClient, dev_senders: tuple[Sender, ...], anvil: Anvil
) -> None:
    """A provider that refuses eth_getLogs over more than 5 blocks (the chaos RPC proxy's cap): the
    client's 7-block parts are refused, halved to 3, and the logs come back complete and in order."""
    owner = dev_senders[0]
    first = evm.latest_block().number + 1
    token = evm.deploy(owner, "PlainToken", "Logs", "LOG")
    mint = load_artifact("PlainToken").contract_abi.function("mint", 2)
    for i in range(12):  # anvil mines one block per transaction: 13 blocks with logs
        evm.transact(owner, Call(to=token, data=mint.encode_call([RECIPIENT, i + 1]), label="mint"))
    direct = evm.get_logs(token, [], first, "latest")
    assert len(direct) == 12
    with RpcFaultProxy(anvil.rpc_url, max_log_range=5) as proxy:
        with pytest.raises(RpcError, match="max block range 5"):
            EvmClient(proxy.url, max_log_range=10_000).request(
                "eth_getLogs", [{"address": token, "fromBlock": hex(first), "toBlock": "latest"}]
            )
        refused = proxy.stats().by_mode.get("log_range_refused", 0)
        capped = EvmClient(proxy.url, max_log_range=7)
        assert capped.get_logs(token, [], first, "latest") == direct
        assert proxy.stats().by_mode["log_range_refused"] == refused + 1  # the first 7 blocks only
    # A provider that refuses even one block: the refusal is raised, not looped on.
    with RpcFaultProxy(anvil.rpc_url, max_log_range=0) as proxy, pytest.raises(RpcError, match="range 0"):
        EvmClient(proxy.url).get_logs(token, [], first, "latest")


def test_logs_in_parts_of_one_block_are_the_logs_of_the_whole_range(
    evm: EvmClient, dev_senders: tuple[Sender, ...]
) -> None:
    owner = dev_senders[0]
    first = evm.latest_block().number + 1
    token = evm.deploy(owner, "PlainToken", "Logs", "LOG")
    mint = load_artifact("PlainToken").contract_abi.function("mint", 2)
    for i in range(4):
        evm.transact(owner, Call(to=token, data=mint.encode_call([RECIPIENT, i + 1]), label="mint"))
    last = evm.latest_block().number
    whole = evm.get_logs(token, [], first, last)
    one_by_one = EvmClient(evm.rpc_url, max_log_range=1).get_logs(token, [], first, last)
    assert one_by_one == whole and len(whole) == 4
    assert EvmClient(evm.rpc_url).get_logs(token, [], last + 1, last) == ()
    with pytest.raises(ValueError, match="max_log_range"):
        EvmClient(evm.rpc_url, max_log_range=0)


def test_latest_logs_reads_the_newest_parts_first_and_stops_at_the_first_match(
    evm: EvmClient, dev_senders: tuple[Sender, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = dev_senders[0]
    first = evm.latest_block().number + 1
    token = evm.deploy(owner, "PlainToken", "Logs", "LOG")
    abi = load_artifact("PlainToken").contract_abi
    mint = abi.function("mint", 2)
    recipients = [f"0x{i + 1:040x}" for i in range(12)]
    for recipient in recipients:  # one block each
        evm.transact(owner, Call(to=token, data=mint.encode_call([recipient, 5]), label="mint"))
    last = evm.latest_block().number
    transfer = abi.event("Transfer").topic0
    asked: list[tuple[int, int]] = []
    real = evm._request_once

    def counting(method: str, params: Sequence[Any]) -> Any:
        if method == "eth_getLogs":
            asked.append((int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)))
        return real(method, params)

    monkeypatch.setattr(evm, "_request_once", counting)
    monkeypatch.setattr(evm, "max_log_range", 3)
    newest = evm.latest_logs(token, [transfer], first, "latest")
    assert [log.block_number for log in newest] == [last - 2, last - 1, last]
    assert asked == [(last - 2, last)]
    asked.clear()
    # The second recipient's mint is in block first + 2, in the fourth part back; the fifth is not read.
    (only,) = evm.latest_logs(token, [transfer, None, topic_address(recipients[1])], first, "latest")
    assert only.block_number == first + 2
    assert asked == [(last - 2, last), (last - 5, last - 3), (last - 8, last - 6), (first + 1, last - 9)]
    asked.clear()
    assert evm.latest_logs(token, [transfer, None, topic_address(RECIPIENT)], first, last) == ()
    assert asked[-1] == (first, first)
    assert evm.get_logs(token, [transfer], first, "latest")[-3:] == newest
