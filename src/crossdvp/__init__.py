"""crossdvp: atomic cross-network Delivery-versus-Payment.

Packages, one per role (DESIGN.md):
- `crossdvp.settlement` — the pure core: terms, the decision rule, Keystone report encoding/signing.
- `crossdvp.chain` — the EVM side: contracts (FundToken, KYCRegistry, DvPEscrow, KeystoneForwarder).
- `crossdvp.payments` — the bank deposit-account ledger service and its client.
- `crossdvp.oracle` — an oracle node of the DON.
"""

__version__ = "0.1.0"
