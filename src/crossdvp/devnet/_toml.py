"""A minimal TOML writer for the node configs the devnet and `crossdvp deploy` write (the standard
library reads TOML but does not write it). Supports what those configs use: tables, arrays of tables,
strings, integers, booleans, and lists of scalars or of inline tables."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["dumps"]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        # A JSON string of printable text is a valid TOML basic string.
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_scalar(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _table(lines: list[str], header: str, body: Mapping[str, Any]) -> None:
    lines.append(header)
    for key, value in body.items():
        if value is None:
            continue  # TOML has no null: an absent key means the default
        if (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and value
            and isinstance(value[0], Mapping)
        ):
            lines.append(f"{key} = [")
            lines.extend(f"  {_scalar(item)}," for item in value)
            lines.append("]")
        else:
            lines.append(f"{key} = {_scalar(value)}")
    lines.append("")


def dumps(data: Mapping[str, Any], *, comment: str = "") -> str:
    """`data` as TOML: each top-level mapping a [table], each top-level list of mappings [[tables]]."""
    lines = [f"# {line}" for line in comment.splitlines()]
    if lines:
        lines.append("")
    for name, value in data.items():
        if isinstance(value, Mapping):
            _table(lines, f"[{name}]", value)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for item in value:
                _table(lines, f"[[{name}]]", item)
        else:
            raise TypeError(f"top-level key {name!r} must be a table or an array of tables")
    return "\n".join(lines)
