"""`crossdvp chaos`: the fault-injection harness that proves atomicity (issue 6).

rpc_proxy   a JSON-RPC proxy between nodes and anvil that passes, delays, drops, errors or goes stale
invariants  the pure checker: atomicity, conservation, single execution, decisions, liveness
evidence    reads the ledgers' own state into the checker's snapshot
world       the harness's handle on a devnet: contracts, ledger admin, DON keys, extra parties
workload    the seeded trades and how each party behaves
faults      the node/payments process control and the fault scheduler
runner      a run end to end; report: its JSON object and text
"""

from __future__ import annotations

from crossdvp.chaos.invariants import InvariantReport, LedgerSnapshot, check_invariants
from crossdvp.chaos.report import ChaosReport
from crossdvp.chaos.rpc_proxy import ProxyMode, RpcFaultProxy
from crossdvp.chaos.runner import ChaosOptions, run_chaos

__all__ = [
    "ChaosOptions",
    "ChaosReport",
    "InvariantReport",
    "LedgerSnapshot",
    "ProxyMode",
    "RpcFaultProxy",
    "check_invariants",
    "run_chaos",
]
