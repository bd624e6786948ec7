"""Typed bindings for the asset network's contracts: KYCRegistry, FundToken, DvPEscrow and Chainlink's
KeystoneForwarder.

Each binding holds (client, lowercase address, ABI) and exposes the Solidity functions the project
uses as snake_case methods (`setAllowedBatch` -> `set_allowed_batch`, `getTransmissionInfo` ->
`transmission_info`), with Python types in and out: ints, 32-byte `bytes`, lowercase `str`
addresses. Writes take the `sender` first and return the TxReceipt; a revert raises ContractRevert
with the decoded custom error. `call_data(name, *args)` builds any other call; `.contract` is the
web3 object for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account import Account

from crossdvp.chain._artifacts import Artifact, load_artifact
from crossdvp.chain._binding import Binding, EventPosition, topic_address
from crossdvp.chain._escrow import (
    CLOSED_FLAG,
    AbortedEvent,
    ClaimedEvent,
    DecisionPendingEvent,
    DvPEscrow,
    EscrowEvent,
    ItemRecords,
    ItemSkippedEvent,
    LockedEvent,
    LockEntry,
    LockRecord,
    LockState,
    LockView,
    OwedEvent,
    PermitSignature,
    ReclaimedEvent,
    SettledEvent,
    SkipReason,
    commit_head,
    decode_escrow_logs,
    lock_history,
    pack_delivery,
    pack_records,
    replay_records,
)
from crossdvp.chain.client import LogEntry, Sender, TxReceipt
from crossdvp.chain.errors import ContractRevert
from crossdvp.settlement.report import DonConfig

__all__ = [
    "CLOSED_FLAG",
    "AbortedEvent",
    "Artifact",
    "ClaimedEvent",
    "ConfigSetEvent",
    "DecisionPendingEvent",
    "DvPEscrow",
    "EscrowEvent",
    "ItemRecords",
    "FundToken",
    "ItemSkippedEvent",
    "KYCRegistry",
    "KeystoneForwarder",
    "LockEntry",
    "LockRecord",
    "LockState",
    "LockView",
    "LockedEvent",
    "OwedEvent",
    "PermitSignature",
    "ReclaimedEvent",
    "ReportProcessedEvent",
    "SettledEvent",
    "SkipReason",
    "TransmissionInfo",
    "TransmissionState",
    "commit_head",
    "decode_escrow_logs",
    "load_artifact",
    "lock_history",
    "pack_delivery",
    "pack_records",
    "replay_records",
]


class KYCRegistry(Binding):
    """Who may hold the fund: `is_allowed(a)` = allowed and not blocked. Writes need KYC_ADMIN_ROLE."""

    artifact_name = "KYCRegistry"

    def set_allowed(self, sender: Sender, account: str, allowed: bool = True) -> TxReceipt:
        return self._write(sender, "setAllowed", account, allowed)

    def set_allowed_batch(self, sender: Sender, accounts: Sequence[str], allowed: bool = True) -> TxReceipt:
        return self._write(sender, "setAllowedBatch", list(accounts), allowed)

    def set_blocked(self, sender: Sender, account: str, blocked: bool = True) -> TxReceipt:
        return self._write(sender, "setBlocked", account, blocked)

    def is_allowed(self, account: str) -> bool:
        return bool(self._read_one("isAllowed", account))

    def allowed(self, account: str) -> bool:
        return bool(self._read_one("allowed", account))

    def blocked(self, account: str) -> bool:
        return bool(self._read_one("blocked", account))

    def kyc_admin_role(self) -> bytes:
        return bytes(self._read_one("KYC_ADMIN_ROLE"))

    def has_role(self, role: bytes, account: str) -> bool:
        return bool(self._read_one("hasRole", role, account))

    def grant_role(self, sender: Sender, role: bytes, account: str) -> TxReceipt:
        return self._write(sender, "grantRole", role, account)

    def revoke_role(self, sender: Sender, role: bytes, account: str) -> TxReceipt:
        return self._write(sender, "revokeRole", role, account)


class FundToken(Binding):
    """The KYC-gated fund token (ERC-20 + EIP-2612 permit, pausable, role-managed). Amounts in minor
    units (18 decimals)."""

    artifact_name = "FundToken"

    # ERC-20
    def name(self) -> str:
        return str(self._read_one("name"))

    def symbol(self) -> str:
        return str(self._read_one("symbol"))

    def decimals(self) -> int:
        return int(self._read_one("decimals"))

    def total_supply(self) -> int:
        return int(self._read_one("totalSupply"))

    def balance_of(self, account: str, *, block: int | str = "latest") -> int:
        return int(self._read_one("balanceOf", account, block=block))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._read_one("allowance", owner, spender))

    def transfer(self, sender: Sender, to: str, amount: int) -> TxReceipt:
        return self._write(sender, "transfer", to, amount)

    def transfer_from(self, sender: Sender, from_: str, to: str, amount: int) -> TxReceipt:
        return self._write(sender, "transferFrom", from_, to, amount)

    def approve(self, sender: Sender, spender: str, amount: int) -> TxReceipt:
        return self._write(sender, "approve", spender, amount)

    # issuance, compliance, roles
    def mint(self, sender: Sender, to: str, amount: int) -> TxReceipt:
        return self._write(sender, "mint", to, amount)

    def burn(self, sender: Sender, from_: str, amount: int) -> TxReceipt:
        return self._write(sender, "burn", from_, amount)

    def pause(self, sender: Sender) -> TxReceipt:
        return self._write(sender, "pause")

    def unpause(self, sender: Sender) -> TxReceipt:
        return self._write(sender, "unpause")

    def paused(self) -> bool:
        return bool(self._read_one("paused"))

    def registry(self) -> str:
        return str(self._read_one("registry"))

    def set_registry(self, sender: Sender, registry: str) -> TxReceipt:
        return self._write(sender, "setRegistry", registry)

    def can_transfer(self, from_: str, to: str, amount: int) -> bool:
        return bool(self._read_one("canTransfer", from_, to, amount))

    def role(self, name: str) -> bytes:
        """A role id by its Solidity constant name: "MINTER_ROLE", "PAUSER_ROLE", "AGENT_ROLE", ..."""
        return bytes(self._read_one(name))

    def has_role(self, role: bytes, account: str) -> bool:
        return bool(self._read_one("hasRole", role, account))

    def grant_role(self, sender: Sender, role: bytes, account: str) -> TxReceipt:
        return self._write(sender, "grantRole", role, account)

    def revoke_role(self, sender: Sender, role: bytes, account: str) -> TxReceipt:
        return self._write(sender, "revokeRole", role, account)

    # EIP-2612
    def nonces(self, owner: str) -> int:
        return int(self._read_one("nonces", owner))

    def permit(
        self, sender: Sender, owner: str, spender: str, amount: int, signature: PermitSignature
    ) -> TxReceipt:
        args = (owner, spender, amount, signature.deadline_s, signature.v, signature.r, signature.s)
        return self._write(sender, "permit", *args)

    def sign_permit(self, owner_key: bytes, spender: str, amount: int, deadline_s: int) -> PermitSignature:
        """An EIP-2612 permit by `owner_key` for `spender`, over the token's own EIP-712 domain and the
        owner's current permit nonce (read from the chain)."""
        _, name, version, chain_id, verifying_contract, _, _ = self._read("eip712Domain")
        owner = str(Account.from_key(owner_key).address)
        message = {
            "owner": owner,
            "spender": spender,
            "value": amount,
            "nonce": self.nonces(owner),
            "deadline": deadline_s,
        }
        signed = Account.sign_typed_data(
            owner_key,
            domain_data={
                "name": name,
                "version": version,
                "chainId": chain_id,
                "verifyingContract": verifying_contract,
            },
            message_types={
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ]
            },
            message_data=message,
        )
        return PermitSignature(
            deadline_s=deadline_s,
            v=int(signed.v),
            r=int(signed.r).to_bytes(32, "big"),
            s=int(signed.s).to_bytes(32, "big"),
        )


class TransmissionState(IntEnum):
    """IRouter.TransmissionState."""

    NOT_ATTEMPTED = 0
    SUCCEEDED = 1
    INVALID_RECEIVER = 2
    FAILED = 3  # the receiver reverted or ran out of gas; may be retried with more gas


@dataclass(frozen=True, slots=True)
class TransmissionInfo:
    transmission_id: bytes
    state: TransmissionState
    transmitter: str
    invalid_receiver: bool
    success: bool
    gas_limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportProcessedEvent:
    receiver: str
    workflow_execution_id: bytes
    report_id: bytes
    result: bool  # whether the receiver's onReport succeeded
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int


def _report_processed(log: LogEntry, args: dict[str, Any]) -> ReportProcessedEvent:
    return ReportProcessedEvent(
        receiver=args["receiver"],
        workflow_execution_id=args["workflowExecutionId"],
        report_id=args["reportId"],
        result=args["result"],
        **EventPosition.of(log),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSetEvent:
    don_id: int
    config_version: int
    f: int
    signers: tuple[str, ...]
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int


# The forwarder keeps ~30k gas for itself after the receiver returns (INTERNAL_GAS_REQUIREMENTS) and
# the EVM passes on at most 63/64 of what is left; headroom on top of both.
_FORWARDER_OVERHEAD_GAS = 60_000


class KeystoneForwarder(Binding):
    """Chainlink's KeystoneForwarder: verifies f+1 DON signatures and routes a report to a receiver."""

    artifact_name = "KeystoneForwarder"

    def set_config(self, sender: Sender, don: DonConfig) -> TxReceipt:
        """setConfig(don_id, config_version, f, signers) — owner only."""
        return self._write(sender, "setConfig", don.don_id, don.config_version, don.f, list(don.signers))

    def clear_config(self, sender: Sender, don_id: int, config_version: int) -> TxReceipt:
        return self._write(sender, "clearConfig", don_id, config_version)

    def report(
        self,
        sender: Sender,
        receiver: str,
        raw_report: bytes,
        report_context: bytes,
        signatures: Sequence[bytes],
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """report(receiver, rawReport, reportContext, signatures): deliver a signed report.

        The forwarder does not revert when the receiver fails: it records the transmission as FAILED
        and emits ReportProcessed(result=false). So plain gas estimation would find the smallest gas at
        which the *forwarder* succeeds, starving the receiver; instead, with `gas=None`, the receiver's
        own onReport is estimated as if called by the forwarder and added to the forwarder's estimate.
        Raises ContractRevert for the forwarder's own rejections (InvalidConfig,
        InvalidSignatureCount, InvalidSigner, DuplicateSigner, InvalidSignature, InvalidReport,
        AlreadyAttempted, ...).
        """
        call = self.call_data("report", receiver, raw_report, report_context, list(signatures))
        if gas is None:
            outer = self.client.estimate_gas(call, sender=sender.address)
            inner = self._receiver_gas(receiver, raw_report)
            limit = self.client.latest_block().gas_limit
            gas = min(limit, outer + inner + inner // 5 + _FORWARDER_OVERHEAD_GAS)
        return self.client.transact(sender, call, gas=gas)

    def _receiver_gas(self, receiver: str, raw_report: bytes) -> int:
        """Gas of receiver.onReport(metadata, payload) called from this forwarder; 0 if it reverts
        (the report will then be recorded as failed whatever gas it gets)."""
        on_report = DvPEscrow(self.client, receiver).call_data(
            "onReport", raw_report[45:109], raw_report[109:]
        )
        try:
            return self.client.estimate_gas(on_report, sender=self.address)
        except ContractRevert:
            return 0

    def transmission_id(self, receiver: str, workflow_execution_id: bytes, report_id: bytes) -> bytes:
        return bytes(self._read_one("getTransmissionId", receiver, workflow_execution_id, report_id))

    def transmission_info(
        self, receiver: str, workflow_execution_id: bytes, report_id: bytes
    ) -> TransmissionInfo:
        tid, state, transmitter, invalid, success, gas_limit = self._read_one(
            "getTransmissionInfo", receiver, workflow_execution_id, report_id
        )
        return TransmissionInfo(
            transmission_id=tid,
            state=TransmissionState(state),
            transmitter=transmitter,
            invalid_receiver=invalid,
            success=success,
            gas_limit=gas_limit,
        )

    def owner(self) -> str:
        return str(self._read_one("owner"))

    def type_and_version(self) -> str:
        return str(self._read_one("typeAndVersion"))

    def report_processed_in(self, receipt: TxReceipt) -> list[ReportProcessedEvent]:
        """The ReportProcessed events of one transaction (one per `report` call)."""
        return [_report_processed(log, a) for log, a in self._receipt_logs(receipt, "ReportProcessed")]

    def report_processed_events(
        self,
        receiver: str,
        workflow_execution_id: bytes,
        from_block: int | str,
        to_block: int | str = "latest",
        *,
        latest: bool = False,
    ) -> list[ReportProcessedEvent]:
        """The ReportProcessed events of one report to one receiver (every attempt, in chain order).

        With `latest`, only those of the newest part of the range that has any (EvmClient.latest_logs):
        the forwarder refuses a report once it was processed successfully, so a successful attempt is
        always among the newest ones."""
        logs = self._logs(
            "ReportProcessed",
            from_block,
            to_block,
            topic_address(receiver),
            workflow_execution_id,
            latest=latest,
        )
        return [_report_processed(log, a) for log, a in logs]

    def config_set_events(self, from_block: int | str, to_block: int | str) -> list[ConfigSetEvent]:
        return [
            ConfigSetEvent(
                don_id=a["donId"],
                config_version=a["configVersion"],
                f=a["f"],
                signers=tuple(a["signers"]),
                **EventPosition.of(log),
            )
            for log, a in self._logs("ConfigSet", from_block, to_block)
        ]
