"""The compiled contracts in `crossdvp/chain/artifacts/*.json` (written by scripts/compile.js)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from crossdvp.chain._abi import AbiError, ContractAbi
from crossdvp.errors import ConfigError

__all__ = ["Artifact", "artifact_names", "known_errors", "load_artifact"]

_PACKAGE = "crossdvp.chain"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its JSON ABI and creation bytecode."""

    name: str
    abi: tuple[dict[str, Any], ...] = field(repr=False)
    bytecode: bytes = field(repr=False)

    @property
    def contract_abi(self) -> ContractAbi:
        return _contract_abi(self.name)


def _artifact_dir() -> Any:  # a Traversable; importlib.resources does not export the type usefully
    return resources.files(_PACKAGE).joinpath("artifacts")


def artifact_names() -> tuple[str, ...]:
    """The names of every compiled contract present, sorted."""
    directory = _artifact_dir()
    return tuple(sorted(p.name[: -len(".json")] for p in directory.iterdir() if p.name.endswith(".json")))


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Read `artifacts/<name>.json`.

    Raises ConfigError if the artifact is missing (run `make contracts`) or has no ABI/bytecode.
    """
    path = _artifact_dir().joinpath(f"{name}.json")
    if not path.is_file():
        raise ConfigError(
            f"no compiled artifact {name}.json in crossdvp/chain/artifacts; run `make contracts`"
        )
    raw = json.loads(path.read_text())
    abi, bytecode = raw.get("abi"), raw.get("bytecode")
    if not isinstance(abi, list) or not isinstance(bytecode, str):
        raise ConfigError(f"artifact {name}.json lacks 'abi' or 'bytecode'; run `make contracts`")
    return Artifact(name=name, abi=tuple(abi), bytecode=bytes.fromhex(bytecode.removeprefix("0x")))


@functools.cache
def _contract_abi(name: str) -> ContractAbi:
    return ContractAbi(name, load_artifact(name).abi)


def known_errors() -> dict[bytes, AbiError]:
    """Every custom error of every artifact, by 4-byte selector, for decoding reverts.

    Looked up on each call (the directory listing is cheap, the parsed ABIs are cached) so artifacts
    compiled while a process runs are picked up.
    """
    table: dict[bytes, AbiError] = {}
    for name in artifact_names():
        table.update(_contract_abi(name).errors)
    return table
