"""Deliver a signed report to an EVM chain through the genuine KeystoneForwarder (a `Deliverer`).

Step 5 of the protocol (DESIGN.md "Execute"): `DvPEscrow.deliver(raw, context, sigs, records)` calls
`KeystoneForwarder.report(escrow, raw, context, sigs)`, which verifies the f+1 signatures and routes
the payload to `DvPEscrow.onReport`; the escrow then executes each item with the settlement's lock
records, which it keeps only as a hash (the records are rebuilt here from the escrow's events and
checked against it). The forwarder records one transmission per (receiver, workflow_execution_id,
report_id), which is what makes delivery idempotent for every node: whoever lands it first wins,
later attempts revert with `AlreadyAttempted`, and `getTransmissionInfo` tells anyone the outcome:

    SUCCEEDED         -> DELIVERED      (reference: the transaction that emitted ReportProcessed(.., true))
    NOT_ATTEMPTED     -> NOT_DELIVERED
    FAILED            -> NOT_DELIVERED  (the receiver call ran out of gas or reverted; retried with more gas)
    INVALID_RECEIVER  -> FAILED         (the escrow address is not an IReceiver; an operator must look)

A report that reached the escrow some other way (sent straight to the forwarder by anyone) or with
records that no longer matched (a lock appended in between) leaves its decisions pending in the
escrow (`DecisionPending`); the transmission is SUCCEEDED all the same. Such a report is DELIVERED
only once every pending decision has been executed: this deliverer sends `execute(sid, terms,
records)` for each one that still has a lock to act on, and says PENDING until then.

Gas: `deliver` reverts unless the forwarder handed the payload to the escrow, and a payout it cannot
afford reverts it too (InsufficientGas), so eth_estimateGas of `deliver` is the gas it needs; a
margin is added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from crossdvp.chain.client import LogEntry
from crossdvp.chain.contracts import (
    CLOSED_FLAG,
    DecisionPendingEvent,
    EscrowEvent,
    ItemRecords,
    LockRecord,
    LockState,
    commit_head,
    decode_escrow_logs,
    load_artifact,
    pack_delivery,
    pack_records,
    replay_records,
)
from crossdvp.chain.errors import ChainError
from crossdvp.errors import ConfigError
from crossdvp.oracle._rpc import JsonRpcClient, hex_int, selector, to_hex
from crossdvp.oracle.errors import LedgerUnavailable, NonceTaken, RpcReverted
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, SignedReport
from crossdvp.settlement.report import (
    FORWARDER_METADATA_LENGTH,
    REPORT_METADATA_LENGTH,
    ReportMetadata,
    decode_payload,
)

__all__ = ["EvmDeliverer", "TransmissionState"]

logger = logging.getLogger(__name__)

_ON_REPORT_SELECTOR = keccak(text="onReport(bytes,bytes)")[:4]
#: Sends of one transaction when the node says its nonce is taken (re-read between them).
_NONCE_ATTEMPTS = 3
#: Blocks per eth_getLogs when rebuilding records (the node's own poll range, which providers accept).
_RECORDS_LOG_RANGE = 2_000
#: The first, newest part is smaller: a report usually goes out a few blocks after its locks, and a
#: node scans a short range much faster than 2,000 blocks.
_RECORDS_FIRST_RANGE = 64
#: How old the head this node last read may be to anchor that first part (a few blocks at most).
_HEAD_FRESH_S = 5.0


class TransmissionState:
    """IRouter.TransmissionState, as the forwarder returns it."""

    NOT_ATTEMPTED = 0
    SUCCEEDED = 1
    INVALID_RECEIVER = 2
    FAILED = 3


@dataclass(frozen=True, slots=True)
class _Transmission:
    state: int
    transmitter: str
    gas_limit: int


@dataclass(frozen=True, slots=True)
class _Fees:
    base_fee: int
    tip: int
    block_gas_limit: int

    @classmethod
    def of(cls, block: object, tip_raw: object) -> _Fees:
        """From the latest block and eth_maxPriorityFeePerGas, as the RPC node returned them."""
        if not isinstance(block, Mapping):
            raise LedgerUnavailable(f"malformed latest block from the RPC node: {block!r:.200}")
        return cls(
            base_fee=hex_int(block.get("baseFeePerGas", "0x0"), "baseFeePerGas"),
            tip=hex_int(tip_raw, "eth_maxPriorityFeePerGas"),
            block_gas_limit=hex_int(block.get("gasLimit"), "gasLimit"),
        )


@dataclass(frozen=True, slots=True)
class _Sent:
    tx_hash: str
    gas: int


class _ForwarderAbi:
    """The few pieces of the KeystoneForwarder ABI the deliverer uses, from its compiled artifact, and
    the custom errors of it and of the receiver (to explain a refusal by name)."""

    def __init__(self, abi: Sequence[Mapping[str, Any]], receiver_abi: Sequence[Mapping[str, Any]]) -> None:
        by_name = {(e.get("type"), e.get("name")): dict(e) for e in abi}
        self.info = selector(by_name[("function", "getTransmissionInfo")])[:4]
        self.processed_topic = "0x" + selector(by_name[("event", "ReportProcessed")]).hex()
        escrow = load_artifact("DvPEscrow").contract_abi
        self.escrow = escrow
        self.deliver = escrow.function("deliver", 4)
        self.execute = escrow.function("execute", 3)
        self.head = escrow.function("settlementHead", 1)
        self.record_events = {
            "0x" + escrow.event(name).topic0.hex(): name
            for name in ("Locked", "Settled", "Aborted", "Owed", "Claimed", "Reclaimed")
        }
        self.pending_topic = "0x" + escrow.event("DecisionPending").topic0.hex()
        self.errors: dict[bytes, tuple[str, list[str]]] = {}
        for entry in (*receiver_abi, *abi):
            if entry.get("type") == "error":
                types = [str(i["type"]) for i in entry.get("inputs", [])]
                self.errors[selector(entry)[:4]] = (str(entry["name"]), types)

    def describe_revert(self, data: bytes) -> tuple[str, str]:
        """(error name, "Name(args)") of revert data; data of no known error is shown as hex."""
        known = self.errors.get(data[:4])
        if known is None:
            return "", f"revert data 0x{data.hex()}" if data else "revert without data"
        name, types = known
        try:
            args = abi_decode(types, data[4:])
        except Exception:  # eth_abi raises several unrelated types on malformed data
            return name, f"{name}(<undecodable 0x{data[4:].hex()}>)"
        shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
        return name, f"{name}({shown})"


def _tx_hash(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise LedgerUnavailable(f"malformed transaction hash from the RPC node: {value!r}")
    return value.lower()


class EvmDeliverer:
    """Delivers reports to one escrow through one KeystoneForwarder, from the node's transmitter key.

    The transmitter key pays gas only; it is not the DON signing key. `confirmations` is how deep the
    delivering block must be before `status` says DELIVERED (the same depth the node observes with;
    until then a landed delivery is PENDING). `records_from_block` is the oldest block the escrow's
    events are read from (its deployment block). Sends from one key are serialised so nonces never
    clash.
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        chain_id: int,
        forwarder: str,
        escrow: str,
        transmitter_key: bytes,
        confirmations: int = 0,
        records_from_block: int = 0,
        gas_margin: int = 60_000,
        receipt_timeout_s: float = 30.0,
        receipt_poll_s: float = 0.02,
        lookback_blocks: int = 10_000,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        for name, address in (("forwarder", forwarder), ("escrow", escrow)):
            if not (address.startswith("0x") and len(address) == 42):
                raise ConfigError(f"{name} must be a 0x-prefixed 20-byte address, got {address!r}")
        if confirmations < 0:
            raise ConfigError(f"confirmations must be >= 0, got {confirmations}")
        if lookback_blocks < confirmations:
            raise ConfigError(
                f"lookback_blocks ({lookback_blocks}) must be >= confirmations ({confirmations})"
            )
        try:
            self._account = Account.from_key(transmitter_key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"transmitter key is not a valid secp256k1 private key: {exc}") from None
        self.chain_id = chain_id
        self.forwarder = forwarder.lower()
        self.escrow = escrow.lower()
        self.transmitter = str(self._account.address).lower()
        self.confirmations = confirmations
        self.records_from_block = records_from_block
        self.gas_margin = gas_margin
        self.receipt_timeout_s = receipt_timeout_s
        self.receipt_poll_s = receipt_poll_s
        self.lookback_blocks = lookback_blocks
        self._network = f"eip155:{chain_id}"
        self._rpc = JsonRpcClient(rpc_url, timeout_s=timeout_s, transport=transport)
        self._abi = _ForwarderAbi(load_artifact("KeystoneForwarder").abi, load_artifact("DvPEscrow").abi)
        self._send_lock = asyncio.Lock()
        # The chain's head as last read, and when (loop time): shared by every receipt waiter.
        self._head: tuple[int, float] | None = None
        self._head_lock = asyncio.Lock()
        # Transactions this process sent and has not seen mined, by workflow execution id: a second
        # deliver() while one is in the mempool reports PENDING instead of paying for a duplicate.
        self._in_flight: dict[bytes, _Sent] = {}
        # The transmitter's next nonce, while this process knows it (see _send).
        self._nonce: int | None = None
        # Reports whose delivering transaction left no decision pending (or whose pending ones were
        # executed since): their SUCCEEDED transmission means DELIVERED.
        self._executed: set[bytes] = set()

    @property
    def network(self) -> str:
        return self._network

    async def aclose(self) -> None:
        await self._rpc.aclose()

    # --- reading the outcome -------------------------------------------------------------------

    def _info_call(self, report: SignedReport, block: str) -> tuple[str, Sequence[object]]:
        report_id = _report_id(report)
        data = self._abi.info + abi_encode(
            ["address", "bytes32", "bytes2"], [self.escrow, report.workflow_execution_id, report_id]
        )
        return ("eth_call", [{"to": self.forwarder, "data": "0x" + data.hex()}, block])

    @staticmethod
    def _transmission(raw: object) -> _Transmission:
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise LedgerUnavailable(f"malformed getTransmissionInfo result: {raw!r:.200}")
        try:
            (info,) = abi_decode(["(bytes32,uint8,address,bool,bool,uint80)"], bytes.fromhex(raw[2:]))
        except Exception as exc:  # eth_abi raises several unrelated types on malformed data
            raise LedgerUnavailable(f"undecodable getTransmissionInfo result {raw[:80]}...: {exc}") from exc
        return _Transmission(state=int(info[1]), transmitter=str(info[2]).lower(), gas_limit=int(info[5]))

    async def _read(self, report: SignedReport) -> tuple[_Transmission, int]:
        """The transmission as of the latest block, and that block's number."""
        info_raw, number_raw = await self._rpc.batch(
            [self._info_call(report, "latest"), ("eth_blockNumber", [])]
        )
        return self._transmission(info_raw), hex_int(number_raw, "eth_blockNumber")

    async def status(self, report: SignedReport) -> DeliveryStatus:
        """What the forwarder recorded for this report (by any transmitter).

        Raises LedgerUnavailable (retryable) on transport/RPC failures.
        """
        return await self._status(report, *await self._read(report))

    async def _status(self, report: SignedReport, latest: _Transmission, head: int) -> DeliveryStatus:
        exec_id = report.workflow_execution_id
        if latest.state == TransmissionState.SUCCEEDED:
            found = await self._find_delivery(report, head)
            # Not found within the lookback window means delivered longer ago than that: deep enough.
            if found is not None and head - found[1] < self.confirmations:
                detail = f"delivered in block {found[1]}; waiting for {self.confirmations} confirmations"
                return DeliveryStatus(self._network, DeliveryState.PENDING, found[0], detail)
            self._in_flight.pop(exec_id, None)
            if found is not None and exec_id not in self._executed:
                executing = await self._execute_pending(report, found[0])
                if executing is not None:
                    return executing
            return DeliveryStatus(self._network, DeliveryState.DELIVERED, found[0] if found else None)
        if latest.state == TransmissionState.INVALID_RECEIVER:
            self._in_flight.pop(exec_id, None)
            found = await self._find_delivery(report, head)
            return DeliveryStatus(
                self._network,
                DeliveryState.FAILED,
                found[0] if found else None,
                f"forwarder {self.forwarder} recorded {self.escrow} as an invalid receiver "
                "(not an IReceiver contract)",
            )
        if latest.state == TransmissionState.FAILED:
            return DeliveryStatus(
                self._network,
                DeliveryState.NOT_DELIVERED,
                None,
                f"the last attempt (by {latest.transmitter}, {latest.gas_limit} gas for the receiver) "
                "failed; retry with more gas",
            )
        return DeliveryStatus(self._network, DeliveryState.NOT_DELIVERED)

    async def _find_delivery(self, report: SignedReport, head: int) -> tuple[str, int] | None:
        """(transaction hash, block number) of the attempt that decided the transmission, from the
        forwarder's ReportProcessed logs of the last `lookback_blocks` blocks; None if older.

        Read from logs rather than by eth_call at an older block: pruned nodes (and anvil) serve
        state only at the head, while logs of canonical blocks are always available.
        """
        topics = [
            self._abi.processed_topic,
            "0x" + abi_encode(["address"], [self.escrow]).hex(),
            "0x" + report.workflow_execution_id.hex(),
            "0x" + _report_id(report).hex() + "00" * 30,  # bytes2 topics are left-aligned
        ]
        flt = {
            "address": self.forwarder,
            "topics": topics,
            "fromBlock": to_hex(max(head - self.lookback_blocks, 0)),
            "toBlock": to_hex(head),
        }
        logs = await self._rpc.call("eth_getLogs", [flt])
        if not isinstance(logs, list):
            raise LedgerUnavailable(f"malformed eth_getLogs response: {logs!r:.200}")
        entries = [log for log in logs if isinstance(log, Mapping)]
        # data = abi.encode(bool result): the successful attempt if there is one, else the last
        # (an invalid receiver is recorded by an attempt with result false).
        succeeded = [log for log in entries if int(str(log.get("data") or "0x0"), 16) == 1]
        candidates = succeeded or entries
        if not candidates:
            return None
        chosen = candidates[-1]
        return _tx_hash(chosen.get("transactionHash")), hex_int(chosen.get("blockNumber"), "log.blockNumber")

    # --- sending -------------------------------------------------------------------------------

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        """Send the report unless the forwarder already has its outcome; safe to call repeatedly.

        Returns DELIVERED/FAILED as recorded on chain, PENDING while our transaction is unmined (or not
        yet `confirmations` deep), NOT_DELIVERED if our attempt failed (call again: more gas).
        A forwarder refusal that no retry can fix (bad signatures, unknown DON config, the escrow
        refusing the metadata) is returned as FAILED with the decoded error in `detail`.
        Raises LedgerUnavailable (retryable) on transport/RPC failures.
        """
        exec_id = report.workflow_execution_id
        if exec_id in self._in_flight:
            # Ours may still be in the mempool: look before estimating again (two estimates against
            # a busy node's pending state are the dearest calls a node makes; a recheck of a pending
            # transaction that paid for them stalled a 10-node devnet's sends for seconds).
            latest, head = await self._read(report)
            if latest.state in (TransmissionState.SUCCEEDED, TransmissionState.INVALID_RECEIVER):
                return await self._status(report, latest, head)
            pending = await self._check_in_flight(exec_id)
            if pending is not None:
                return pending
        items = decode_payload(report.raw[REPORT_METADATA_LENGTH:])
        records = await self._records([item.settlement_id for item in items])
        calldata = self._deliver_calldata(report, [(i.terms_hash, records[i.settlement_id]) for i in items])
        # Otherwise one round trip for everything a send needs: the outcome so far, the gas estimate
        # and the fee inputs. The estimate is wasted when the report has landed already; a round
        # trip saved on every report is worth more (each costs a loaded node tens of ms).
        (info_raw, number_raw, estimate, block, tip_raw) = await self._rpc.batch_outcomes(
            [
                self._info_call(report, "latest"),
                ("eth_blockNumber", []),
                ("eth_estimateGas", [{"from": self.transmitter, "to": self.escrow, "data": calldata}]),
                ("eth_getBlockByNumber", ["latest", False]),
                ("eth_maxPriorityFeePerGas", []),
            ]
        )
        for outcome in (info_raw, number_raw, block, tip_raw):
            if isinstance(outcome, Exception):
                raise outcome
        latest = self._transmission(info_raw)
        if latest.state in (TransmissionState.SUCCEEDED, TransmissionState.INVALID_RECEIVER):
            return await self._status(report, latest, hex_int(number_raw, "eth_blockNumber"))

        if isinstance(estimate, RpcReverted):
            name, shown = self._abi.describe_revert(estimate.data)
            if name == "AlreadyAttempted":
                # Someone delivered between our read and the estimate: the forwarder has the outcome.
                return await self.status(report)
            if name == "ReportNotAccepted":
                # The forwarder routed the report but the escrow's onReport refused it (the forwarder
                # swallows that): ask onReport itself, as the forwarder calls it, for the reason.
                detail = f"escrow {self.escrow} refuses the report: {await self._receiver_refusal(report)}"
                logger.error("report 0x%s: %s", exec_id.hex(), detail)
            else:
                detail = f"forwarder refuses the report: {shown}"
                logger.error("forwarder refuses report 0x%s: %s", exec_id.hex(), shown)
            return DeliveryStatus(self._network, DeliveryState.FAILED, None, detail)
        if isinstance(estimate, Exception):
            raise estimate
        gas = hex_int(estimate, "eth_estimateGas") + self.gas_margin
        sent = await self._send(calldata, gas, _Fees.of(block, tip_raw))
        self._in_flight[exec_id] = sent
        logger.info(
            "report 0x%s sent through escrow %s in tx %s (gas %d)",
            exec_id.hex(),
            self.escrow,
            sent.tx_hash,
            gas,
            extra={"network": self._network, "tx_hash": sent.tx_hash},
        )
        receipt = await self._wait_receipt(sent.tx_hash)
        if receipt is None:
            self._nonce = None  # perhaps stuck behind a gap: ask the node next time
            return DeliveryStatus(
                self._network, DeliveryState.PENDING, sent.tx_hash, "transaction not yet mined"
            )
        self._in_flight.pop(exec_id, None)
        status = await self.status(report)
        if status.state == DeliveryState.NOT_DELIVERED:
            outcome = (
                "reverted" if receipt.get("status") != "0x1" else "was mined but the receiver call failed"
            )
            detail = f"transaction {sent.tx_hash} {outcome}"
            return DeliveryStatus(self._network, DeliveryState.NOT_DELIVERED, sent.tx_hash, detail)
        # Ours landed, or ours reverted because another node's landed first (AlreadyAttempted):
        # either way the reference is the transaction the forwarder's log names.
        return status

    def _deliver_calldata(self, report: SignedReport, records: Sequence[ItemRecords]) -> str:
        args = (report.raw, report.context, list(report.signatures), pack_delivery(records))
        return "0x" + self._abi.deliver.encode_call(args).hex()

    async def _receiver_refusal(self, report: SignedReport) -> str:
        """Why the escrow's onReport refuses the report, as the forwarder would call it."""
        call = {"from": self.forwarder, "to": self.escrow, "data": _on_report_calldata(report.raw)}
        try:
            await self._rpc.call("eth_estimateGas", [call])
        except RpcReverted as exc:
            return self._abi.describe_revert(exc.data)[1]
        return "onReport accepts it when called alone (the forwarder may have given it too little gas)"

    # --- lock records --------------------------------------------------------------------------

    async def _records(self, settlement_ids: Sequence[bytes]) -> dict[bytes, list[LockRecord]]:
        """Each settlement's open lock records, rebuilt from the escrow's events and checked against
        its head: the events are read newest part first, back to `records_from_block`, until every
        settlement's rebuild matches. The first part (from 64 blocks below the last head this node
        saw, to "latest") is read in the same round trip as the heads; older ones 2,000 blocks at a
        time. A settlement that does not match by then (a block mined between the reads, say) gets
        no records: the escrow then records its decision pending, and `execute` finishes it later."""
        sids = sorted(set(settlement_ids))
        if self._head is None or asyncio.get_running_loop().time() - self._head[1] > _HEAD_FRESH_S:
            await self._head_number()  # the first part's range must stay short for capped providers
        assert self._head is not None
        first_from = max(self.records_from_block, self._head[0] - _RECORDS_FIRST_RANGE + 1)
        calls: list[tuple[str, Sequence[object]]] = [
            (
                "eth_call",
                [{"to": self.escrow, "data": "0x" + self._abi.head.encode_call((sid,)).hex()}, "latest"],
            )
            for sid in sids
        ]
        logs_call = ("eth_getLogs", [self._events_filter(sids, first_from, "latest")])
        *raw_heads, number_raw, first_logs = await self._rpc.batch(
            [*calls, ("eth_blockNumber", []), logs_call]
        )
        heads = {
            sid: _word(raw, "settlementHead") & ~CLOSED_FLAG for sid, raw in zip(sids, raw_heads, strict=True)
        }
        found: dict[bytes, list[LockRecord]] = {sid: [] for sid in sids}
        unresolved = {sid for sid in sids if heads[sid] != 0}
        events: dict[bytes, list[EscrowEvent]] = {sid: [] for sid in unresolved}
        part_events: list[EscrowEvent] | None = self._decode_logs(first_logs)
        from_block, to_block = first_from, hex_int(number_raw, "eth_blockNumber")
        while unresolved:
            if part_events is None:
                part_events = await self._escrow_events(sorted(unresolved), from_block, to_block)
            part: dict[bytes, list[EscrowEvent]] = {sid: [] for sid in unresolved}
            for event in part_events:
                if event.settlement_id in part:
                    part[event.settlement_id].append(event)
            part_events = None
            for sid in list(unresolved):
                events[sid] = part[sid] + events[sid]  # this part is older than what was read before
                try:
                    rebuilt = replay_records(events[sid])
                except ChainError:
                    continue  # a record's Locked event is older still
                if commit_head(rebuilt) == heads[sid]:
                    found[sid] = rebuilt
                    unresolved.discard(sid)
            to_block = from_block - 1
            if to_block < self.records_from_block:
                break
            from_block = max(self.records_from_block, to_block - _RECORDS_LOG_RANGE + 1)
        for sid in sorted(unresolved):
            logger.warning(
                "escrow events since block %d do not rebuild settlement 0x%s's open records; "
                "delivering without them leaves its decision pending",
                self.records_from_block,
                sid.hex(),
            )
        return found

    def _events_filter(self, sids: Sequence[bytes], from_block: int, to_block: int | str) -> dict[str, Any]:
        return {
            "address": self.escrow,
            "topics": [list(self._abi.record_events), ["0x" + sid.hex() for sid in sids]],
            "fromBlock": to_hex(from_block),
            "toBlock": to_block if isinstance(to_block, str) else to_hex(to_block),
        }

    async def _escrow_events(
        self, sids: Sequence[bytes], from_block: int, to_block: int
    ) -> list[EscrowEvent]:
        logs = await self._rpc.call("eth_getLogs", [self._events_filter(sids, from_block, to_block)])
        return self._decode_logs(logs)

    def _decode_logs(self, logs: object) -> list[EscrowEvent]:
        if not isinstance(logs, list):
            raise LedgerUnavailable(f"malformed eth_getLogs response: {logs!r:.200}")
        try:
            entries = [LogEntry.from_rpc(log) for log in logs]
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerUnavailable(f"malformed log in eth_getLogs response: {exc}") from exc
        return decode_escrow_logs(self._abi.escrow, entries)

    async def _execute_pending(self, report: SignedReport, tx_hash: str) -> DeliveryStatus | None:
        """If the transaction that delivered `report` left decisions pending in the escrow (a report
        sent straight to the forwarder, or records that no longer matched), execute each that still
        has a lock to act on and say PENDING; None once nothing is left to execute."""
        receipt = await self._rpc.call("eth_getTransactionReceipt", [tx_hash])
        if not isinstance(receipt, Mapping):
            raise LedgerUnavailable(f"no receipt for delivering transaction {tx_hash}")
        pending: list[tuple[bytes, bytes]] = []
        for log in receipt.get("logs") or []:
            topics = log.get("topics") or []
            if (
                str(log.get("address", "")).lower() == self.escrow
                and topics
                and str(topics[0]).lower() == self._abi.pending_topic
            ):
                for event in decode_escrow_logs(self._abi.escrow, [LogEntry.from_rpc(log)]):
                    if isinstance(event, DecisionPendingEvent):
                        pending.append((event.settlement_id, event.terms_hash))
        todo: list[tuple[bytes, bytes, list[LockRecord]]] = []
        if pending:
            records = await self._records([sid for sid, _ in pending])
            for sid, terms_hash in pending:
                if any(r.state is LockState.LOCKED and r.terms_hash == terms_hash for r in records[sid]):
                    todo.append((sid, terms_hash, records[sid]))
        if not todo:
            self._executed.add(report.workflow_execution_id)
            return None
        sent_tx = ""
        for sid, terms_hash, recs in todo:
            calldata = "0x" + self._abi.execute.encode_call((sid, terms_hash, pack_records(recs))).hex()
            estimate, block, tip_raw = await self._rpc.batch_outcomes(
                [
                    ("eth_estimateGas", [{"from": self.transmitter, "to": self.escrow, "data": calldata}]),
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("eth_maxPriorityFeePerGas", []),
                ]
            )
            for outcome in (block, tip_raw):
                if isinstance(outcome, Exception):
                    raise outcome
            if isinstance(estimate, RpcReverted):
                # Another node executed it first (or a lock changed the records since they were
                # read: StaleRecords): the next status check reads the records again.
                logger.info(
                    "report 0x%s: execute for 0x%s refused (%s); reading again at the next check",
                    report.workflow_execution_id.hex(),
                    sid.hex(),
                    self._abi.describe_revert(estimate.data)[1],
                )
                continue
            if isinstance(estimate, Exception):
                raise estimate
            gas = hex_int(estimate, "eth_estimateGas") + self.gas_margin
            sent = await self._send(calldata, gas, _Fees.of(block, tip_raw))
            logger.info(
                "report 0x%s: executing the decision the escrow recorded pending for 0x%s in tx %s",
                report.workflow_execution_id.hex(),
                sid.hex(),
                sent.tx_hash,
                extra={"network": self._network, "tx_hash": sent.tx_hash},
            )
            await self._wait_receipt(sent.tx_hash)
            sent_tx = sent.tx_hash
        detail = f"executing {len(todo)} decision(s) the escrow recorded pending"
        return DeliveryStatus(self._network, DeliveryState.PENDING, sent_tx, detail)

    async def _check_in_flight(self, exec_id: bytes) -> DeliveryStatus | None:
        """PENDING if our earlier transaction for this report is still in the mempool, else None."""
        sent = self._in_flight.get(exec_id)
        if sent is None:
            return None
        receipt, tx = await self._rpc.batch(
            [("eth_getTransactionReceipt", [sent.tx_hash]), ("eth_getTransactionByHash", [sent.tx_hash])]
        )
        if receipt is None and tx is not None:
            return DeliveryStatus(
                self._network, DeliveryState.PENDING, sent.tx_hash, "transaction not yet mined"
            )
        # Mined without delivering (the state read before said so), or dropped: send again.
        if receipt is None:
            self._nonce = None  # dropped: its nonce is free again
        self._in_flight.pop(exec_id, None)
        return None

    async def _send(self, calldata: str, gas: int, fees: _Fees) -> _Sent:
        """Sign and send from the transmitter key. Sends are serialised, and the next nonce is kept
        here between them (one round trip per send instead of two). It is read from the node again
        after anything unusual: a nonce the node says is taken (then the send is tried again), a
        failed send, a receipt that never came, a transaction that was dropped."""
        gas = min(gas, fees.block_gas_limit)
        async with self._send_lock:
            for attempt in range(_NONCE_ATTEMPTS):
                try:
                    if self._nonce is None:
                        self._nonce = hex_int(
                            await self._rpc.call("eth_getTransactionCount", [self.transmitter, "pending"]),
                            "eth_getTransactionCount",
                        )
                    tx = {
                        "type": 2,
                        "chainId": self.chain_id,
                        "nonce": self._nonce,
                        "to": to_checksum_address(self.escrow),  # eth_account insists on checksums
                        "value": 0,
                        "data": calldata,
                        "gas": gas,
                        # Twice the base fee survives several full blocks of base-fee growth.
                        "maxFeePerGas": 2 * fees.base_fee + fees.tip,
                        "maxPriorityFeePerGas": fees.tip,
                    }
                    signed = self._account.sign_transaction(tx)
                    tx_hash = _tx_hash(
                        await self._rpc.call(
                            "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]
                        )
                    )
                except NonceTaken:
                    self._nonce = None
                    if attempt + 1 < _NONCE_ATTEMPTS:
                        continue
                    raise
                except BaseException:
                    self._nonce = None
                    raise
                self._nonce += 1
                return _Sent(tx_hash=tx_hash, gas=gas)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _wait_receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        """The transaction's receipt, or None after receipt_timeout_s. The receipt is asked for again
        only when the head has moved: many deliveries waiting at once share one eth_blockNumber per
        receipt_poll_s instead of each polling its receipt that often."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.receipt_timeout_s
        while True:
            seen = await self._head_number()
            receipt = await self._rpc.call("eth_getTransactionReceipt", [tx_hash])
            if isinstance(receipt, Mapping):
                return receipt
            while True:
                if loop.time() >= give_up:
                    return None
                await asyncio.sleep(self.receipt_poll_s)
                if await self._head_number() != seen:
                    break

    async def _head_number(self) -> int:
        """eth_blockNumber, read at most once per receipt_poll_s by all callers together."""
        loop = asyncio.get_running_loop()
        async with self._head_lock:
            if self._head is None or loop.time() - self._head[1] >= self.receipt_poll_s:
                number = hex_int(await self._rpc.call("eth_blockNumber", []), "eth_blockNumber")
                self._head = (number, loop.time())
            return self._head[0]


def _word(raw: object, what: str) -> int:
    if not isinstance(raw, str) or not raw.startswith("0x") or len(raw) != 66:
        raise LedgerUnavailable(f"malformed {what} result: {raw!r:.200}")
    return int(raw, 16)


def _report_id(report: SignedReport) -> bytes:
    return ReportMetadata.decode(report.raw).report_id


def _on_report_calldata(raw: bytes) -> str:
    """onReport(metadata, payload) exactly as the forwarder calls it (rawReport[45:109], rawReport[109:])."""
    args = abi_encode(
        ["bytes", "bytes"],
        [raw[FORWARDER_METADATA_LENGTH:REPORT_METADATA_LENGTH], raw[REPORT_METADATA_LENGTH:]],
    )
    return "0x" + (_ON_REPORT_SELECTOR + args).hex()
