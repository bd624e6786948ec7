"""`crossdvp devnet status` and `crossdvp devnet down`: inspect and stop a devnet from its state file.

`down` stops exactly the processes the devnet recorded, by PID (crossdvp.process.stop_pid), nodes
first and anvil last, and only if the PID still belongs to the process that was started (same start
time), so a PID the OS has reused for something else is never signalled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crossdvp.chain.client import EvmClient
from crossdvp.devnet.keyfiles import read_secret
from crossdvp.devnet.state import DevnetState, load_state, save_state
from crossdvp.errors import CrossDvpError
from crossdvp.payments.client import PaymentsClient
from crossdvp.process import stop_pid

__all__ = ["DevnetStatus", "PartyBalances", "ProcessStatus", "devnet_down", "devnet_status"]


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    log_path: Path


@dataclass(frozen=True, slots=True)
class PartyBalances:
    name: str
    chain_address: str
    shares_minor: int | None  # None if the chain could not be read
    cash: dict[str, tuple[int, int] | None]  # currency -> (available, held) minor units


@dataclass(frozen=True, slots=True)
class DevnetStatus:
    directory: Path
    complete: bool
    running: bool
    processes: tuple[ProcessStatus, ...]
    block_number: int | None
    parties: tuple[PartyBalances, ...]
    errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "complete": self.complete,
            "running": self.running,
            "block_number": self.block_number,
            "processes": [
                {"name": p.name, "pid": p.pid, "alive": p.alive, "log": str(p.log_path)}
                for p in self.processes
            ],
            "parties": [
                {
                    "name": b.name,
                    "chain_address": b.chain_address,
                    "shares_minor": b.shares_minor,
                    "cash": {
                        c: None if v is None else {"available_minor": v[0], "held_minor": v[1]}
                        for c, v in b.cash.items()
                    },
                }
                for b in self.parties
            ],
            "errors": list(self.errors),
        }


def devnet_status(directory: Path) -> DevnetStatus:
    """Which recorded processes are alive, the chain height, and each party's balances.

    Raises ConfigError if there is no readable state file; unreachable services are reported in
    `errors` (the point of `status` is to show what is wrong)."""
    state = load_state(directory)
    processes = tuple(ProcessStatus(p.name, p.pid, p.alive(), p.log_path) for p in state.processes)
    errors: list[str] = []
    block: int | None = None
    balances: list[PartyBalances] = []
    anvil_alive = any(p.alive for p in processes if p.name == "anvil")
    payments_alive = any(p.alive for p in processes if p.name == "payments")
    evm = None
    if state.chain is not None and anvil_alive:
        try:
            evm = EvmClient(state.chain.rpc_url, timeout_s=2.0)
            block = evm.block_number()
        except CrossDvpError as exc:
            errors.append(f"chain: {exc}")
            evm = None
    ledger = None
    if state.payments is not None and payments_alive:
        with contextlib.suppress(CrossDvpError):
            ledger = PaymentsClient(
                state.payments.url, read_secret(state.payments.admin_key_file), timeout_s=2.0
            )
    try:
        for party in state.parties.values():
            shares: int | None = None
            if evm is not None and state.chain is not None:
                try:
                    shares = state.chain.asset.bind(evm).token.balance_of(party.chain_address)
                except CrossDvpError as exc:
                    errors.append(f"chain balance of {party.name}: {exc}")
            cash: dict[str, tuple[int, int] | None] = {}
            for currency, account_id in party.accounts.items():
                cash[currency] = None
                if ledger is not None:
                    try:
                        acct = ledger.account(account_id)
                        cash[currency] = (int(acct["available_minor"]), int(acct["held_minor"]))
                    except CrossDvpError as exc:
                        errors.append(f"ledger balance of {party.name}: {exc}")
            balances.append(PartyBalances(party.name, party.chain_address, shares, cash))
    finally:
        if ledger is not None:
            ledger.close()
    return DevnetStatus(
        directory=state.directory,
        complete=state.complete,
        running=any(p.alive for p in processes),
        processes=processes,
        block_number=block,
        parties=tuple(balances),
        errors=tuple(errors),
    )


def devnet_down(
    directory: Path,
    progress: Callable[[str], None] = lambda _line: None,
    *,
    clock: Callable[[], float] = time.time,
) -> DevnetState:
    """Stop every live process the devnet recorded (reverse start order) and mark the state stopped.

    Raises ConfigError if there is no readable state file. Stopping an already stopped devnet is a
    no-op that reports nothing running."""
    state = load_state(directory)
    for record in reversed(state.processes):
        if record.alive():
            stop_pid(record.pid)
            progress(f"stopped {record.name} (pid {record.pid})")
        else:
            progress(f"{record.name} (pid {record.pid}) was not running")
    stopped: DevnetState = replace(state, stopped_at_s=int(clock()))
    save_state(stopped)
    return stopped
