"""The baselines the escrow's gas is compared with, measured on the same anvil and compiler:

- `htlc_gas_per_leg`: a classic ERC-20 hashed-timelock swap leg (contracts/HashedTimelock.sol):
  the sender's `approve`, its `newContract` (pulls the tokens in), the receiver's `withdraw` with
  the preimage — three transactions, all counted;
- `approve_transfer_from`: a bare `approve` + `transferFrom` (the cheapest possible delivery
  versus an allowance, with no atomicity at all).

Every figure is steady state in the same sense as crossdvp.chain.gas: the contract already holds
tokens (one warm-up swap first), the allowance is fresh (0 -> amount, as the previous swap used
it up), and the receiver held no tokens before (as the escrow's settle figures pay fresh buyers).
Each is measured on the fund token (KYC checks on every transfer, as the escrow pays) and on the
plain ERC-20 (PlainToken).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from eth_utils.crypto import keccak

from crossdvp.chain.client import Call, EvmClient, Sender
from crossdvp.chain.contracts import load_artifact
from crossdvp.chain.deploy import deploy_asset_network
from crossdvp.chain.errors import ChainError
from crossdvp.chain.gas import BENCH_DON, BENCH_WORKFLOW

__all__ = ["BaselineGas", "measure_baselines"]

_AMOUNT = 10**18
_ETH = 10**18
_TX_GAS = 300_000


@dataclass(frozen=True, slots=True)
class BaselineGas:
    """gasUsed of one leg, all transactions counted."""

    htlc_gas_per_leg: int
    htlc_gas_per_leg_plain_token: int
    approve_transfer_from: int
    approve_transfer_from_plain_token: int
    htlc_parts: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _call(artifact: str, address: str, function: str, *args: object) -> Call:
    fn = load_artifact(artifact).contract_abi.function(function, len(args))
    return Call(to=address, data=fn.encode_call(args), label=f"{artifact}.{function}")


class _Fixture:
    def __init__(self, client: EvmClient, admin: Sender, sender: Sender) -> None:
        self.client, self.admin, self.sender = client, admin, sender
        net = deploy_asset_network(client, admin, don=BENCH_DON, workflow=BENCH_WORKFLOW, grace_s=3600)
        self.fund = net.bind(client)
        self.fund_token = net.token
        self.plain_token = client.deploy(admin, "PlainToken", "Plain", "PLN")
        self.htlc = client.deploy(admin, "HashedTimelock")
        self.fund.registry.set_allowed_batch(admin, [sender.address, self.htlc])
        self.fund.token.mint(admin, sender.address, 10**6 * _AMOUNT)
        client.transact(admin, _call("PlainToken", self.plain_token, "mint", sender.address, 10**24))
        self._fresh = 0

    def fresh_account(self, token: str) -> Sender:
        """A new key with ether for gas, allowed by the KYC registry, holding no tokens."""
        self._fresh += 1
        account = self.client.account(keccak(text=f"crossdvp bench baseline account {self._fresh}"))
        self.client.transfer_eth(self.admin, account.address, _ETH)
        if token == self.fund_token:
            self.fund.registry.set_allowed(self.admin, account.address)
        return account

    def gas(self, sender: Sender, call: Call) -> int:
        return self.client.transact(sender, call, gas=_TX_GAS).gas_used

    def htlc_leg(self, token: str, artifact: str) -> dict[str, int]:
        receiver = self.fresh_account(token)
        preimage = keccak(text=f"preimage {self._fresh}")
        hashlock = hashlib.sha256(preimage).digest()
        timelock = self.client.latest_block().timestamp + 3600
        approve = self.gas(self.sender, _call(artifact, token, "approve", self.htlc, _AMOUNT))
        new = _call("HashedTimelock", self.htlc, "newContract", receiver.address, hashlock, timelock,
                    token, _AMOUNT)  # fmt: skip
        receipt = self.client.transact(self.sender, new, gas=_TX_GAS)
        (contract_id,) = (log.topics[1] for log in receipt.logs if log.address == self.htlc)
        withdraw = self.gas(receiver, _call("HashedTimelock", self.htlc, "withdraw", contract_id, preimage))
        return {"approve": approve, "new_contract": receipt.gas_used, "withdraw": withdraw}

    def bare_leg(self, token: str, artifact: str) -> int:
        spender = self.fresh_account(token)
        recipient = self.fresh_account(token)
        approve = self.gas(self.sender, _call(artifact, token, "approve", spender.address, _AMOUNT))
        pull = _call(artifact, token, "transferFrom", self.sender.address, recipient.address, _AMOUNT)
        return approve + self.gas(spender, pull)


def measure_baselines(client: EvmClient, dev_keys: Sequence[bytes]) -> BaselineGas:
    """Deploy the fund token's network, a PlainToken and the HTLC on `client` and measure.

    `dev_keys[0]` (deployer, pays gas for fresh accounts) and `dev_keys[1]` (the swapping sender) must
    hold ether. Raises ChainError if a swap's withdrawal did not deliver the tokens, ContractRevert /
    RpcError from the chain.
    """
    admin, sender = client.account(dev_keys[0]), client.account(dev_keys[1])
    fx = _Fixture(client, admin, sender)
    legs: dict[str, dict[str, int]] = {}
    bare: dict[str, int] = {}
    for token, artifact in ((fx.fund_token, "FundToken"), (fx.plain_token, "PlainToken")):
        fx.htlc_leg(token, artifact)  # warm-up: the HTLC's first balance slot of this token
        legs[artifact] = fx.htlc_leg(token, artifact)
        fx.bare_leg(token, artifact)  # warm-up, for symmetry (nothing global to create)
        bare[artifact] = fx.bare_leg(token, artifact)
    held = fx.fund.token.balance_of(fx.htlc)
    if held != 0:
        raise ChainError(f"the HTLC still holds {held} fund token units after every withdrawal")
    return BaselineGas(
        htlc_gas_per_leg=sum(legs["FundToken"].values()),
        htlc_gas_per_leg_plain_token=sum(legs["PlainToken"].values()),
        approve_transfer_from=bare["FundToken"],
        approve_transfer_from_plain_token=bare["PlainToken"],
        htlc_parts=legs["FundToken"],
    )
