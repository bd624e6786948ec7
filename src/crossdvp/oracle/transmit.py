"""The node's deliverers, one per kind of network (the `Deliverer` port of ports.py).

EvmDeliverer        KeystoneForwarder.report(...) on an EVM chain (transmit_evm.py)
PaymentsDeliverer   POST /v1/reports on the payment ledger (transmit_payments.py)
"""

from __future__ import annotations

from crossdvp.oracle.transmit_evm import EvmDeliverer
from crossdvp.oracle.transmit_payments import PaymentsDeliverer

__all__ = ["EvmDeliverer", "PaymentsDeliverer"]
