"""Start a local anvil node: the EVM chain of tests, the devnet and the gas benchmark.

anvil is started like every other crossdvp process (crossdvp.process): its own log file, a free port on
127.0.0.1, readiness probed over JSON-RPC, stopped only by the PID we started. `--prune-history` keeps
it from writing state to disk, so a stopped anvil leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from crossdvp.paths import anvil_binary
from crossdvp.process import ManagedProcess, ProcessStartError, free_port, port_open, start_process

__all__ = ["DEV_MNEMONIC", "Anvil", "dev_keys", "running_anvil", "start_anvil"]

#: anvil's (and hardhat's) well-known development mnemonic; its accounts are funded at genesis.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
_DEV_ACCOUNT_COUNT = 10


@functools.cache
def dev_keys(count: int = _DEV_ACCOUNT_COUNT) -> tuple[bytes, ...]:
    """The private keys anvil funds by default: BIP-44 paths m/44'/60'/0'/0/i of DEV_MNEMONIC.

    Derived rather than pasted so a reader can check where they come from; cached because the
    BIP-39 seed derivation is deliberately slow.
    """
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key)
        for i in range(count)
    )


def _rpc_chain_id(rpc_url: str, timeout_s: float = 0.5) -> int | None:
    """eth_chainId over plain HTTP, or None if the node does not answer (yet)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    # S310: rpc_url is the http://127.0.0.1 URL start_anvil built, never user input.
    request = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            payload = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    result = payload.get("result") if isinstance(payload, dict) else None
    return int(result, 16) if isinstance(result, str) else None


@dataclass
class Anvil:
    """A running anvil: where to reach it, its chain id, its funded dev keys, and how to stop it."""

    process: ManagedProcess
    rpc_url: str
    chain_id: int
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def dev_keys(self) -> tuple[bytes, ...]:
        return dev_keys()

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM then SIGKILL by PID; returns once the process is gone."""
        self.process.stop(grace_s)

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would."""
        self.process.kill()


def start_anvil(
    log_dir: Path,
    *,
    port: int | None = None,
    chain_id: int = 31337,
    block_time_s: float | None = None,
    extra_args: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> Anvil:
    """Start anvil on 127.0.0.1 and return once it answers eth_chainId with `chain_id`.

    Without `block_time_s` anvil mines one block per transaction (automine), which is what most tests
    want; with it, blocks are mined on that interval.

    Raises ProcessStartError if `port` is already in use (anvil would start anyway and the readiness
    probe would reach the other process), or, with the log tail, if anvil exits or is not ready
    within `timeout_s`; a failed start leaves no process behind.
    """
    if port is not None and port_open("127.0.0.1", port):
        raise ProcessStartError(f"cannot start anvil: 127.0.0.1:{port} is already in use")
    chosen_port = port if port is not None else free_port()
    rpc_url = f"http://127.0.0.1:{chosen_port}"
    argv = [
        str(anvil_binary()),
        "--host",
        "127.0.0.1",
        "--port",
        str(chosen_port),
        "--chain-id",
        str(chain_id),
        "--prune-history",
    ]
    if block_time_s is not None:
        argv += ["--block-time", f"{block_time_s:g}"]
    argv += list(extra_args)
    process = start_process(
        "anvil",
        argv,
        log_path=log_dir / f"anvil-{chosen_port}.log",
        ready=lambda: _rpc_chain_id(rpc_url) == chain_id,
        timeout_s=timeout_s,
    )
    return Anvil(process=process, rpc_url=rpc_url, chain_id=chain_id, port=chosen_port)


@contextlib.contextmanager
def running_anvil(
    log_dir: Path,
    *,
    port: int | None = None,
    chain_id: int = 31337,
    block_time_s: float | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Anvil]:
    """start_anvil for the length of a `with` block; stopped by PID however the block ends."""
    node = start_anvil(
        log_dir, port=port, chain_id=chain_id, block_time_s=block_time_s, extra_args=extra_args
    )
    try:
        yield node
    finally:
        node.stop()
