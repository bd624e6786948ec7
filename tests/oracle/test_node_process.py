"""`crossdvp node run` as real processes: four nodes on 127.0.0.1 share registered terms over HTTP.

The full protocol against anvil and the payments service is the integration suite's job; this proves
the command starts, answers /health, authenticates peers over HTTP and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crossdvp.cli import app
from crossdvp.oracle.keys import load_keystore
from crossdvp.oracle.store import hex32
from crossdvp.process import ManagedProcess, free_port, start_process
from tests.oracle.harness import dvp_terms, node_key


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def four_nodes(tmp_path: Path) -> Iterator[list[str]]:
    ports = [free_port() for _ in range(4)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    members = "\n".join(
        f'[[don.members]]\nname = "node-{i}"\nurl = "{urls[i]}"\nsigner = "{node_key(i).address}"\n'
        for i in range(4)
    )
    procs: list[ManagedProcess] = []
    try:
        for i in range(4):
            config = tmp_path / f"node-{i}.toml"
            config.write_text(
                f'[node]\nindex = {i}\nport = {ports[i]}\ndata_dir = "{tmp_path / f"data-{i}"}"\n'
                "round_ms = 500\npoll_interval_ms = 200\n\n"
                "[don]\ndon_id = 7\nconfig_version = 1\nf = 1\n"
                f"{members}\n"
                f'[workflow]\ncid = "0x{"ab" * 32}"\nname = "crossdvp-settlement"\nowner = "0x{"44" * 20}"\n'
            )
            procs.append(
                start_process(
                    f"node-{i}",
                    [sys.executable, "-m", "crossdvp.cli", "node", "run", "--config", str(config)],
                    log_path=tmp_path / f"node-{i}.log",
                    ready=lambda url=urls[i]: _healthy(url),  # type: ignore[misc]
                    env={"CROSSDVP_NODE_KEY_PRIVATE_KEY": "0x" + node_key(i).private_key.hex()},
                    timeout_s=120,
                )
            )
        yield urls
    finally:
        for proc in procs:
            proc.stop()


@pytest.mark.integration
def test_four_node_processes_share_terms_over_http(four_nodes: list[str]) -> None:
    terms = dvp_terms("processes", deadline_s=2_000_000_000)
    response = httpx.post(f"{four_nodes[0]}/v1/settlements", json=terms.to_dict(), timeout=5)
    assert response.status_code == 201
    path = f"/v1/settlements/{hex32(terms.settlement_id)}"
    seen: set[int] = set()
    for _ in range(200):  # bounded wait: the outbox retries until every peer acknowledged
        seen = {i for i, url in enumerate(four_nodes) if httpx.get(url + path, timeout=5).status_code == 200}
        if seen == {0, 1, 2, 3}:
            break
        time.sleep(0.05)
    assert seen == {0, 1, 2, 3}
    view = httpx.get(four_nodes[3] + path, timeout=5).json()
    assert view["status"] == "pending" and view["terms_hash"] == hex32(terms.terms_hash)
    metrics = httpx.get(f"{four_nodes[3]}/metrics", timeout=5).text
    # Node 0 shared the terms as one batch envelope (see Node.outbox_tick).
    assert 'crossdvp_node_peer_messages_received_total{kind="terms_batch"} 1.0' in metrics


def test_keygen_writes_an_encrypted_keystore(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "node.json"
    runner = CliRunner()
    result = runner.invoke(
        app, ["node", "keygen", "--out", str(out)], env={"CROSSDVP_NODE_KEY_PASSWORD": "pw"}
    )
    assert result.exit_code == 0, result.output
    address = result.stdout.strip()
    assert load_keystore(out, "pw").address == address
    again = runner.invoke(
        app, ["node", "keygen", "--out", str(out)], env={"CROSSDVP_NODE_KEY_PASSWORD": "pw"}
    )
    assert again.exit_code == 2


def test_run_rejects_a_bad_config_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[node]\nindex = 0\n")
    result = CliRunner().invoke(app, ["node", "run", "--config", str(config)])
    assert result.exit_code == 2
    assert "don" in result.output
