"""The devnet's state file, `<dir>/devnet.json`: every endpoint, address, PID and key path of one local
network, written by `crossdvp devnet up` and read by `devnet status`/`down`, the SDK and the demo.

The file holds no secret: keys live in encrypted keystores and API keys in 0600 files under
`<dir>/keys/`, and the state file only names their paths. A process is recorded with its start time
(from /proc where available) so that `down` never signals a PID that the OS has since given to
another program.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crossdvp.chain.deploy import AssetNetwork
from crossdvp.errors import ConfigError
from crossdvp.process import pid_alive
from crossdvp.settlement.report import DonConfig, WorkflowIdentity

__all__ = [
    "STATE_FILE",
    "STATE_VERSION",
    "ChainState",
    "DevnetState",
    "NodeState",
    "PartyState",
    "PaymentsState",
    "ProcessRecord",
    "load_state",
    "process_start_ticks",
    "receipt_timeout_s",
    "remove_state",
    "save_state",
    "state_path",
]

STATE_FILE = "devnet.json"
STATE_VERSION = 1


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None where
    /proc is not available. Together with the PID it identifies one process for its whole life."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] here is field 3
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process the devnet started: enough to find it again and to stop exactly it."""

    name: str
    pid: int
    start_ticks: int | None
    log_path: Path

    def alive(self) -> bool:
        """Whether this very process still runs (same PID and, where known, same start time)."""
        if not pid_alive(self.pid):
            return False
        if self.start_ticks is None:
            return True
        return process_start_ticks(self.pid) == self.start_ticks

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "log": str(self.log_path),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(d["name"]),
            pid=int(d["pid"]),
            start_ticks=None if d.get("start_ticks") is None else int(d["start_ticks"]),
            log_path=Path(d["log"]),
        )


def receipt_timeout_s(block_time_s: float) -> float:
    """How long a client of a devnet's chain waits for a receipt: a receipt takes up to a block, so
    several blocks on long block times, and at least 10 s."""
    return max(10.0, 5 * block_time_s)


@dataclass(frozen=True, slots=True)
class ChainState:
    """The devnet's anvil and what is deployed on it. `block_time_s` is the seconds between blocks,
    possibly fractional (a state file written when it was a whole number, as an int, loads the
    same). `block_gas_limit` is the limit anvil was started with, None for anvil's default
    (30,000,000; also what a state file written before the option existed loads as)."""

    rpc_url: str
    block_time_s: float
    finality_depth: int
    asset: AssetNetwork
    admin_address: str
    admin_keystore: Path
    token_symbol: str
    token_decimals: int
    block_gas_limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "network": self.asset.network,
            "block_time_s": self.block_time_s,
            "finality_depth": self.finality_depth,
            "block_gas_limit": self.block_gas_limit,
            "contracts": self.asset.to_dict(),
            "admin_address": self.admin_address,
            "admin_keystore": str(self.admin_keystore),
            "token_symbol": self.token_symbol,
            "token_decimals": self.token_decimals,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChainState:
        return cls(
            rpc_url=str(d["rpc_url"]),
            block_time_s=float(d["block_time_s"]),
            finality_depth=int(d["finality_depth"]),
            asset=AssetNetwork.from_dict(d["contracts"]),
            admin_address=str(d["admin_address"]),
            admin_keystore=Path(d["admin_keystore"]),
            token_symbol=str(d["token_symbol"]),
            token_decimals=int(d["token_decimals"]),
            block_gas_limit=None if d.get("block_gas_limit") is None else int(d["block_gas_limit"]),
        )


@dataclass(frozen=True, slots=True)
class PaymentsState:
    url: str
    ledger_id: str
    database_url: str
    admin_key_file: Path
    grace_s: int

    @property
    def network(self) -> str:
        return f"payments:{self.ledger_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ledger_id": self.ledger_id,
            "network": self.network,
            "database_url": self.database_url,
            "admin_key_file": str(self.admin_key_file),
            "grace_s": self.grace_s,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PaymentsState:
        return cls(
            url=str(d["url"]),
            ledger_id=str(d["ledger_id"]),
            database_url=str(d["database_url"]),
            admin_key_file=Path(d["admin_key_file"]),
            grace_s=int(d["grace_s"]),
        )


@dataclass(frozen=True, slots=True)
class NodeState:
    index: int
    name: str
    url: str
    signer: str
    transmitter: str
    keystore: Path
    config: Path
    payments_key_file: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "url": self.url,
            "signer": self.signer,
            "transmitter": self.transmitter,
            "keystore": str(self.keystore),
            "config": str(self.config),
            "payments_key_file": str(self.payments_key_file),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeState:
        return cls(
            index=int(d["index"]),
            name=str(d["name"]),
            url=str(d["url"]),
            signer=str(d["signer"]),
            transmitter=str(d["transmitter"]),
            keystore=Path(d["keystore"]),
            config=Path(d["config"]),
            payments_key_file=Path(d["payments_key_file"]),
        )


@dataclass(frozen=True, slots=True)
class PartyState:
    """A trading party: a KYC'd chain address (key in a keystore) and a ledger participant with
    accounts per currency (API key in a 0600 file)."""

    name: str
    description: str
    chain_address: str
    chain_keystore: Path
    participant_id: str
    accounts: Mapping[str, str]  # currency -> ledger account id
    payments_key_file: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "chain_address": self.chain_address,
            "chain_keystore": str(self.chain_keystore),
            "participant_id": self.participant_id,
            "accounts": dict(self.accounts),
            "payments_key_file": str(self.payments_key_file),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartyState:
        return cls(
            name=str(d["name"]),
            description=str(d.get("description", "")),
            chain_address=str(d["chain_address"]),
            chain_keystore=Path(d["chain_keystore"]),
            participant_id=str(d["participant_id"]),
            accounts={str(k): str(v) for k, v in d["accounts"].items()},
            payments_key_file=Path(d["payments_key_file"]),
        )


def _don_to_dict(don: DonConfig) -> dict[str, Any]:
    return {
        "don_id": don.don_id,
        "config_version": don.config_version,
        "f": don.f,
        "signers": list(don.signers),
    }


def _workflow_to_dict(w: WorkflowIdentity) -> dict[str, Any]:
    return {
        "cid": "0x" + w.workflow_cid.hex(),
        "name": w.workflow_name,
        "owner": w.workflow_owner,
        "report_id": "0x" + w.report_id.hex(),
    }


@dataclass(frozen=True, slots=True)
class DevnetState:
    """One devnet. `complete` is false while `up` is still starting it (processes may already run)."""

    directory: Path
    created_at_s: int
    password_file: Path
    processes: tuple[ProcessRecord, ...] = ()
    chain: ChainState | None = None
    payments: PaymentsState | None = None
    don: DonConfig | None = None
    workflow: WorkflowIdentity | None = None
    nodes: tuple[NodeState, ...] = ()
    parties: Mapping[str, PartyState] = field(default_factory=dict)
    complete: bool = False
    stopped_at_s: int | None = None

    def with_process(self, record: ProcessRecord) -> DevnetState:
        return replace(self, processes=(*self.processes, record))

    def live_processes(self) -> tuple[ProcessRecord, ...]:
        return tuple(p for p in self.processes if p.alive())

    def process(self, name: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.name == name), None)

    def require_complete(self) -> tuple[ChainState, PaymentsState, DonConfig]:
        """The parts a client needs. Raises ConfigError if `up` did not finish."""
        if not self.complete or self.chain is None or self.payments is None or self.don is None:
            raise ConfigError(
                f"the devnet in {self.directory} is not complete (its `devnet up` failed or is still "
                "running); run `crossdvp devnet up` again"
            )
        return self.chain, self.payments, self.don

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "directory": str(self.directory),
            "created_at_s": self.created_at_s,
            "complete": self.complete,
            "stopped_at_s": self.stopped_at_s,
            "password_file": str(self.password_file),
            "chain": None if self.chain is None else self.chain.to_dict(),
            "payments": None if self.payments is None else self.payments.to_dict(),
            "don": None if self.don is None else _don_to_dict(self.don),
            "workflow": None if self.workflow is None else _workflow_to_dict(self.workflow),
            "nodes": [n.to_dict() for n in self.nodes],
            "parties": {name: p.to_dict() for name, p in self.parties.items()},
            "processes": [p.to_dict() for p in self.processes],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DevnetState:
        """Raises ConfigError if the file is of another version or lacks a field."""
        if d.get("version") != STATE_VERSION:
            raise ConfigError(f"devnet state version {d.get('version')!r} is not {STATE_VERSION}")
        try:
            don = d.get("don")
            workflow = d.get("workflow")
            return cls(
                directory=Path(d["directory"]),
                created_at_s=int(d["created_at_s"]),
                password_file=Path(d["password_file"]),
                complete=bool(d["complete"]),
                stopped_at_s=None if d.get("stopped_at_s") is None else int(d["stopped_at_s"]),
                chain=None if d.get("chain") is None else ChainState.from_dict(d["chain"]),
                payments=None if d.get("payments") is None else PaymentsState.from_dict(d["payments"]),
                don=None
                if don is None
                else DonConfig(
                    don_id=int(don["don_id"]),
                    config_version=int(don["config_version"]),
                    f=int(don["f"]),
                    signers=tuple(str(s) for s in don["signers"]),
                ),
                workflow=None
                if workflow is None
                else WorkflowIdentity(
                    workflow_cid=bytes.fromhex(str(workflow["cid"])[2:]),
                    workflow_name=str(workflow["name"]),
                    workflow_owner=str(workflow["owner"]),
                    report_id=bytes.fromhex(str(workflow["report_id"])[2:]),
                ),
                nodes=tuple(NodeState.from_dict(n) for n in d.get("nodes", [])),
                parties={str(k): PartyState.from_dict(v) for k, v in d.get("parties", {}).items()},
                processes=tuple(ProcessRecord.from_dict(p) for p in d.get("processes", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"devnet state file is malformed: {type(exc).__name__}: {exc}") from None


def save_state(state: DevnetState) -> Path:
    """Write the state file atomically (write a temporary file, then rename), mode 0600."""
    path = state_path(state.directory)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state.to_dict(), handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def load_state(directory: Path) -> DevnetState:
    """Read `<directory>/devnet.json`. Raises ConfigError if there is none or it is unreadable."""
    path = state_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"no devnet in {directory} (no {STATE_FILE}); "
            f"start one with `crossdvp devnet up --dir {directory}`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return DevnetState.from_dict(data)


def remove_state(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(directory).unlink()
