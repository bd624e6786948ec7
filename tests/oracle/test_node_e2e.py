"""Four `crossdvp node run` processes against a real anvil and a real payments service.

One DON (n = 4, f = 1) settles a DvP on both ledgers; aborts one whose cash never arrives (shares
refunded); and keeps settling while a node is killed with SIGKILL, which then restarts and catches up.
The wider fault suite (leader killed mid-round, RPC outages, Byzantine nodes) is in the integration
tests; the in-process twins in test_node.py cover the protocol paths.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossdvp.chain.anvil import start_anvil
from crossdvp.chain.client import EvmClient, Sender
from crossdvp.chain.deploy import AssetNetwork, BoundAssetNetwork, deploy_asset_network
from crossdvp.payments.client import PaymentsClient
from crossdvp.process import ManagedProcess, free_port, port_open, start_process
from crossdvp.settlement.report import DonConfig, WorkflowIdentity
from crossdvp.settlement.terms import Leg, Terms
from tests.oracle.harness import node_key

pytestmark = pytest.mark.integration

SHARES = 10**21
CASH = 1_000_000


def _ready(url: str) -> Callable[[], bool]:
    port = int(url.rsplit(":", 1)[1])

    def probe() -> bool:
        if not port_open("127.0.0.1", port):
            return False
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def _wait(what: str, check: Callable[[], Any], attempts: int = 240, interval_s: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; bounded by attempts, not asserted on time."""
    last: Any = None
    for _ in range(attempts):
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not reached (last: {last!r})")


@dataclass
class Dvp:
    tmp: Path
    client: EvmClient
    network: AssetNetwork
    contracts: BoundAssetNetwork
    seller: Sender
    buyer: Sender
    ledger_url: str
    ledger_network: str
    buyer_key: str
    admin: PaymentsClient
    node_urls: list[str]
    node_argv: list[list[str]]
    node_env: list[dict[str, str]]
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def terms(self, label: str, deadline_in_s: int) -> Terms:
        return Terms(
            settlement_id=hashlib.sha256(label.encode()).digest(),
            deadline_s=self.client.latest_block().timestamp + deadline_in_s,
            legs=(
                Leg(
                    network=f"eip155:{self.client.chain_id}",
                    asset=self.network.token,
                    amount_minor=SHARES,
                    payer=self.seller.address,
                    payee=self.buyer.address,
                ),
                Leg(
                    network=self.ledger_network,
                    asset="USD",
                    amount_minor=CASH,
                    payer="acct-buyer",
                    payee="acct-seller",
                ),
            ),
        )

    def lock_shares(self, terms: Terms) -> None:
        self.contracts.escrow.lock(
            self.seller,
            terms.settlement_id,
            0,
            self.network.token,
            SHARES,
            self.buyer.address,
            terms.deadline_s,
            terms.terms_hash,
        )

    def hold_cash(self, terms: Terms) -> None:
        with PaymentsClient(self.ledger_url, self.buyer_key) as buyer:
            buyer.place_hold(
                settlement_id=terms.settlement_id,
                leg_index=1,
                terms_hash=terms.terms_hash,
                payer_account="acct-buyer",
                payee_account="acct-seller",
                currency="USD",
                amount_minor=CASH,
                deadline_s=terms.deadline_s,
            )

    def view(self, node: int, terms: Terms) -> dict[str, Any] | None:
        response = httpx.get(
            f"{self.node_urls[node]}/v1/settlements/0x{terms.settlement_id.hex()}", timeout=5
        )
        return response.json() if response.status_code == 200 else None

    def delivered(self, node: int, terms: Terms) -> dict[str, Any] | None:
        view = self.view(node, terms)
        return view if view is not None and view["status"] == "delivered" else None

    def start_node(self, i: int, name: str) -> None:
        self.procs[f"node-{i}"] = start_process(
            name,
            self.node_argv[i],
            log_path=self.tmp / f"{name}.log",
            ready=_ready(self.node_urls[i]),
            env=self.node_env[i],
            timeout_s=120,
        )


def _node_toml(
    i: int, port: int, members: str, data: Path, workflow_owner: str, world: dict[str, Any]
) -> str:
    return f"""[node]
index = {i}
port = {port}
data_dir = "{data}"
poll_interval_ms = 250
round_ms = 1000
stagger_ms = 2000
delivery_recheck_ms = 1000

[key]
dev = false

[don]
don_id = 7
config_version = 1
f = 1
{members}
[workflow]
cid = "0x{"11" * 32}"
name = "crossdvp-settlement"
owner = "{workflow_owner}"
report_id = "0x0001"

[[networks]]
kind = "evm"
rpc_url = "{world["rpc_url"]}"
chain_id = {world["chain_id"]}
escrow = "{world["escrow"]}"
forwarder = "{world["forwarder"]}"
finality = 1
start_block = {world["start_block"]}
transmitter_key_env = "CROSSDVP_TEST_TRANSMITTER_KEY"

[[networks]]
kind = "payments"
url = "{world["ledger_url"]}"
api_key_env = "CROSSDVP_TEST_ORACLE_KEY"
"""


@pytest.fixture(scope="module")
def dvp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dvp]:
    tmp = tmp_path_factory.mktemp("node-e2e")
    procs: dict[str, ManagedProcess] = {}
    try:
        anvil = start_anvil(tmp, block_time_s=1)
        procs["anvil"] = anvil.process
        client = EvmClient(anvil.rpc_url)
        admin, seller, buyer = (client.account(k) for k in anvil.dev_keys[:3])
        keys = [node_key(i) for i in range(4)]
        don = DonConfig(don_id=7, config_version=1, f=1, signers=tuple(k.address for k in keys))
        workflow = WorkflowIdentity(
            workflow_cid=b"\x11" * 32,
            workflow_name="crossdvp-settlement",
            workflow_owner=admin.address,
            report_id=b"\x00\x01",
        )
        network = deploy_asset_network(client, admin, don=don, workflow=workflow, grace_s=3_600)
        contracts = network.bind(client)
        contracts.registry.set_allowed_batch(admin, [seller.address, buyer.address], True)
        contracts.token.mint(admin, seller.address, 100 * SHARES)
        contracts.token.approve(seller, network.escrow, 100 * SHARES)

        ledger_port = free_port()
        ledger_url = f"http://127.0.0.1:{ledger_port}"
        admin_key = "test-admin-" + "k" * 32
        procs["payments"] = start_process(
            "payments",
            [
                sys.executable,
                "-m",
                "crossdvp.cli",
                "payments",
                "serve",
                "--database-url",
                f"sqlite:///{tmp / 'payments.sqlite'}",
                "--port",
                str(ledger_port),
            ],
            log_path=tmp / "payments.log",
            ready=lambda: port_open("127.0.0.1", ledger_port),
            env={"CROSSDVP_PAYMENTS_ADMIN_KEY": admin_key},
        )
        ledger_admin = PaymentsClient(ledger_url, admin_key)
        for pid in ("buyer", "seller"):
            ledger_admin.create_participant(pid, pid.title())
            ledger_admin.open_account(f"acct-{pid}", pid, "USD")
        ledger_admin.cash_in("acct-buyer", 100 * CASH)
        ledger_admin.put_don_config(don)
        buyer_key = ledger_admin.create_credential("participant", "buyer")["api_key"]
        oracle_key = ledger_admin.create_credential("oracle")["api_key"]
        ledger_network = ledger_admin.info()["network"]

        ports = [free_port() for _ in range(4)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        members = "".join(
            f'[[don.members]]\nname = "node-{i}"\nurl = "{urls[i]}"\nsigner = "{keys[i].address}"\n'
            for i in range(4)
        )
        world = {
            "rpc_url": anvil.rpc_url,
            "chain_id": anvil.chain_id,
            "escrow": network.escrow,
            "forwarder": network.forwarder,
            "start_block": network.deployed_at_block,
            "ledger_url": ledger_url,
        }
        argv, env = [], []
        for i in range(4):
            config = tmp / f"node-{i}.toml"
            config.write_text(_node_toml(i, ports[i], members, tmp / f"node-{i}", admin.address, world))
            argv.append([sys.executable, "-m", "crossdvp.cli", "node", "run", "--config", str(config)])
            env.append(
                {
                    "CROSSDVP_NODE_KEY_PRIVATE_KEY": "0x" + keys[i].private_key.hex(),
                    "CROSSDVP_TEST_TRANSMITTER_KEY": "0x" + anvil.dev_keys[4 + i].hex(),
                    "CROSSDVP_TEST_ORACLE_KEY": oracle_key,
                }
            )
        world_ = Dvp(
            tmp,
            client,
            network,
            contracts,
            seller,
            buyer,
            ledger_url,
            ledger_network,
            buyer_key,
            ledger_admin,
            urls,
            argv,
            env,
            procs,
        )
        for i in range(4):
            world_.start_node(i, f"node-{i}")
        yield world_
        ledger_admin.close()
    finally:
        for name in reversed(list(procs)):
            procs[name].stop()


def test_a_dvp_settles_on_both_ledgers(dvp: Dvp) -> None:
    terms = dvp.terms("e2e-settle", deadline_in_s=300)
    assert (
        httpx.post(f"{dvp.node_urls[0]}/v1/settlements", json=terms.to_dict(), timeout=5).status_code == 201
    )
    before = dvp.contracts.token.balance_of(dvp.buyer.address)
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    for node in range(4):
        view = _wait(f"node {node} sees the settlement delivered", lambda n=node: dvp.delivered(n, terms))
        assert view["decision"]["decision"] == "SETTLE"
    assert dvp.contracts.token.balance_of(dvp.buyer.address) - before == SHARES
    assert dvp.admin.account("acct-seller")["available_minor"] >= CASH


def test_cash_never_arrives_aborts_and_refunds_the_shares(dvp: Dvp) -> None:
    terms = dvp.terms("e2e-abort", deadline_in_s=4)
    assert (
        httpx.post(f"{dvp.node_urls[1]}/v1/settlements", json=terms.to_dict(), timeout=5).status_code == 201
    )
    before = dvp.contracts.token.balance_of(dvp.seller.address)
    dvp.lock_shares(terms)
    view = _wait("abort delivered", lambda: dvp.delivered(2, terms))
    assert view["decision"]["decision"] == "ABORT"
    assert dvp.contracts.token.balance_of(dvp.seller.address) == before


def test_a_node_killed_with_sigkill_then_restarted_catches_up(dvp: Dvp) -> None:
    dvp.procs["node-3"].kill()
    terms = dvp.terms("e2e-kill", deadline_in_s=300)
    assert (
        httpx.post(f"{dvp.node_urls[0]}/v1/settlements", json=terms.to_dict(), timeout=5).status_code == 201
    )
    dvp.lock_shares(terms)
    dvp.hold_cash(terms)
    _wait("settled with node 3 down", lambda: dvp.delivered(0, terms))
    dvp.start_node(3, "node-3-restarted")
    view = _wait("restarted node 3 catches up", lambda: dvp.delivered(3, terms))
    assert view["decision"]["decision"] == "SETTLE"
    assert len(view["reports"]) == 1  # it learned the quorum's report; nobody made a second one
