"""The chaos run's report: the issue's JSON object, and a readable rendering of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crossdvp.chaos.invariants import InvariantReport, ViolationKind

__all__ = ["ChaosReport"]


@dataclass(frozen=True, slots=True)
class ChaosReport:
    trades: int
    seed: int
    faults_injected: Mapping[str, int]
    invariants: InvariantReport
    fault_errors: tuple[str, ...] = ()
    trade_errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def atomicity_violations(self) -> int:
        return self.invariants.count(ViolationKind.ATOMICITY)

    @property
    def conservation_violations(self) -> int:
        return self.invariants.count(ViolationKind.CONSERVATION)

    @property
    def double_executions(self) -> int:
        return self.invariants.count(ViolationKind.DOUBLE_EXECUTION)

    @property
    def ok(self) -> bool:
        """No violation of any kind (a wrong decision included) and nothing unfinished."""
        return self.invariants.ok

    def to_json(self) -> dict[str, Any]:
        """Exactly the issue's object. `outcomes` counts settled / aborted / nothing_locked /
        unfinished / wrong_decision settlements, and harness_errors: trades where a step of the
        harness itself failed (still checked by every invariant)."""
        return {
            "trades": self.trades,
            "seed": self.seed,
            "faults_injected": dict(sorted(self.faults_injected.items())),
            "outcomes": {**self.invariants.outcomes, "harness_errors": len(self.trade_errors)},
            "atomicity_violations": self.atomicity_violations,
            "conservation_violations": self.conservation_violations,
            "double_executions": self.double_executions,
            "unfinished": len(self.invariants.unfinished),
            "max_finalize_s": self.invariants.max_finalize_s,
        }

    def render(self) -> str:
        data = self.to_json()
        lines = [
            f"chaos run: {self.trades} trades, seed {self.seed}",
            "faults injected: "
            + (", ".join(f"{k} {v}" for k, v in data["faults_injected"].items()) or "none"),
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in data["outcomes"].items()),
            f"atomicity violations: {self.atomicity_violations}",
            f"conservation violations: {self.conservation_violations}",
            f"double executions: {self.double_executions}",
            f"unfinished: {data['unfinished']}",
            f"max finalize time: {data['max_finalize_s']} s (from last lock to final for SETTLE, from the "
            "deadline for ABORT)",
        ]
        for violation in self.invariants.violations:
            lines.append(f"  VIOLATION {violation}")
        for sid in self.invariants.unfinished:
            lines.append(f"  UNFINISHED settlement 0x{sid.hex()}")
        for error in self.fault_errors:
            lines.append(f"  fault not injected: {error}")
        for error in self.trade_errors:
            lines.append(f"  trade error: {error}")
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(lines)
