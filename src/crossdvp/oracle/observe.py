"""The node's observers, one per kind of network (the `Observer` port of ports.py).

EvmObserver        an EVM chain: the escrow's final `Locked` events (observe_evm.py)
PaymentsObserver   the payment ledger: its event feed's `hold_placed` events (observe_payments.py)
"""

from __future__ import annotations

from crossdvp.oracle.observe_evm import FINALIZED, EvmObserver, Finality
from crossdvp.oracle.observe_payments import PaymentsObserver

__all__ = ["FINALIZED", "EvmObserver", "Finality", "PaymentsObserver"]
