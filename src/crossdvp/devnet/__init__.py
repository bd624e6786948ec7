"""A whole crossdvp network on one machine: anvil with the asset network deployed, the payments
ledger, a DON of oracle nodes, and two onboarded parties (a fund seller and a cash buyer).

    devnet_up(DevnetOptions(dir))   -> DevnetState   (also written to <dir>/devnet.json)
    devnet_status(dir)              -> DevnetStatus  (processes alive, block height, balances)
    devnet_down(dir)                                 (stops exactly the recorded PIDs)

The SDK (`crossdvp.client.Desk.from_devnet(dir)`) and the demo read the same state file.
"""

from __future__ import annotations

from crossdvp.devnet.control import DevnetStatus, PartyBalances, ProcessStatus, devnet_down, devnet_status
from crossdvp.devnet.errors import DevnetError, DevnetRunningError
from crossdvp.devnet.state import (
    ChainState,
    DevnetState,
    NodeState,
    PartyState,
    PaymentsState,
    ProcessRecord,
    load_state,
)
from crossdvp.devnet.up import DevnetOptions, devnet_up

__all__ = [
    "ChainState",
    "DevnetRunningError",
    "DevnetError",
    "DevnetOptions",
    "DevnetState",
    "DevnetStatus",
    "NodeState",
    "PartyBalances",
    "PartyState",
    "PaymentsState",
    "ProcessRecord",
    "ProcessStatus",
    "devnet_down",
    "devnet_status",
    "devnet_up",
    "load_state",
]
