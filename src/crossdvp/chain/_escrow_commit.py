"""The DvPEscrowCommit binding: one storage word per settlement, lock records supplied at execution.

The escrow keeps only a hash chain over each settlement's open lock records (see the contract's
NatSpec); everything that pays out is given the records and checks them against it. This module is
the off-chain half of that bargain:

- `LockRecord`: a record as the chain commits to it, packed as `deliver`, `execute`, `claim` and
  `reclaim` take it, and its `digest` (how the escrow's events name it);
- `replay_records`: a settlement's open record list rebuilt from its events, in the escrow's order;
- `commit_head`: the head the escrow should hold for a record list (to check a rebuild);
- `DvPEscrowCommit`: the binding, whose `open_records` reads the events and checks the result
  against the chain before anything is sent with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from crossdvp.chain._binding import Binding, EventPosition
from crossdvp.chain._escrow import ItemSkippedEvent, LockedEvent, LockState, PermitSignature, SkipReason
from crossdvp.chain.client import LogEntry, Sender, TxReceipt
from crossdvp.chain.errors import ChainError

__all__ = [
    "CLOSED_FLAG",
    "DecisionPendingEvent",
    "DvPEscrowCommit",
    "ItemRecords",
    "LockRecord",
    "RecordAbortedEvent",
    "RecordClaimedEvent",
    "RecordEvent",
    "RecordOwedEvent",
    "RecordReclaimedEvent",
    "RecordSettledEvent",
    "commit_head",
    "pack_delivery",
    "pack_records",
    "replay_records",
]

#: The head's lowest bit: the settlement is closed (a decision was executed; no more locks).
CLOSED_FLAG = 1
_ADDRESS_MASK = (1 << 160) - 1
_MAX_UINT96 = (1 << 96) - 1
_MAX_UINT40 = (1 << 40) - 1


@dataclass(frozen=True, slots=True)
class LockRecord:
    """One lock record of a settlement as the escrow's hash chain commits to it."""

    token: str
    amount: int
    locker: str
    deadline_s: int
    leg_index: int
    state: LockState
    payee: str
    terms_hash: bytes

    @property
    def w0(self) -> int:
        return int(self.token, 16) | (self.amount << 160)

    @property
    def w1(self) -> int:
        return int(self.locker, 16) | (self.deadline_s << 160) | (self.leg_index << 224) | (self.state << 232)

    @property
    def words(self) -> tuple[int, int, int, bytes]:
        return self.w0, self.w1, int(self.payee, 16), self.terms_hash

    @property
    def digest(self) -> bytes:
        """keccak256(w0, w1, payee, termsHash): the `record` field of the escrow's events."""
        return _digest(self.words)

    def owed(self, state: LockState) -> LockRecord:
        return replace(self, state=state)

    def packed(self, item_terms: bytes | None = None) -> bytes:
        """The record as `deliver` reads it: amount(12) token(20) | state(1) leg(1) deadline(8)
        locker(20) | payee(20) | f(1) [termsHash(32)], the terms hash left out (f = 1) when it equals
        `item_terms`."""
        head = (
            self.amount.to_bytes(12, "big")
            + bytes.fromhex(self.token[2:])
            + bytes((self.state, self.leg_index))
            + self.deadline_s.to_bytes(8, "big")
            + bytes.fromhex(self.locker[2:])
            + bytes.fromhex(self.payee[2:])
        )
        if item_terms is not None and self.terms_hash == item_terms:
            return head + b"\x01"
        return head + b"\x00" + self.terms_hash

    @classmethod
    def from_words(cls, w0: int, w1: int, payee: str, terms_hash: bytes) -> LockRecord:
        return cls(
            token=f"0x{w0 & _ADDRESS_MASK:040x}",
            amount=w0 >> 160,
            locker=f"0x{w1 & _ADDRESS_MASK:040x}",
            deadline_s=(w1 >> 160) & ((1 << 64) - 1),
            leg_index=(w1 >> 224) & 0xFF,
            state=LockState((w1 >> 232) & 0xFF),
            payee=payee.lower(),
            terms_hash=terms_hash,
        )


@functools.lru_cache(maxsize=4096)
def _digest(words: tuple[int, int, int, bytes]) -> bytes:
    return keccak(abi_encode(["uint256", "uint256", "uint256", "bytes32"], list(words)))


def _link(h: int, record: LockRecord) -> int:
    preimage = abi_encode(
        ["uint256", "uint256", "uint256", "uint256", "bytes32"], [h & ~CLOSED_FLAG, *record.words]
    )
    return int.from_bytes(keccak(preimage), "big") & ~CLOSED_FLAG


def commit_head(records: Iterable[LockRecord], *, closed: bool = False) -> int:
    """The head the escrow holds for this open record list (and closed flag)."""
    h = 0
    for record in records:
        h = _link(h, record)
    return h | (CLOSED_FLAG if closed else 0)


def pack_records(records: Sequence[LockRecord], item_terms: bytes | None = None) -> bytes:
    """The records packed back to back, as `execute`, `claim` and `reclaim` take them."""
    return b"".join(r.packed(item_terms) for r in records)


#: One report item's (terms hash, the settlement's open records), as `deliver` needs them.
ItemRecords = tuple[bytes, Sequence[LockRecord]]


def pack_delivery(items: Sequence[ItemRecords]) -> bytes:
    """`deliver`'s `records` argument: per report item, in order, a count byte and its records."""
    parts: list[bytes] = []
    for terms_hash, records in items:
        if len(records) > 255:
            raise ValueError(f"a settlement has {len(records)} open records; deliver takes at most 255")
        parts.append(bytes((len(records),)) + pack_records(records, terms_hash))
    return b"".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Positioned:
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSettledEvent(_Positioned):
    """The record was paid to its payee (amount and payee: the token's Transfer in the same call)."""

    settlement_id: bytes
    leg_index: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordAbortedEvent(_Positioned):
    """The record was refunded to its locker."""

    settlement_id: bytes
    leg_index: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOwedEvent(_Positioned):
    """The token refused the payout; the record stays open as `state` for `beneficiary` to claim."""

    settlement_id: bytes
    leg_index: int
    state: LockState
    beneficiary: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordClaimedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    beneficiary: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordReclaimedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    locker: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionPendingEvent(_Positioned):
    """A decision recorded without matching records; `execute` finishes it."""

    settlement_id: bytes
    terms_hash: bytes
    decision: int


RecordEvent = (
    LockedEvent
    | RecordSettledEvent
    | RecordAbortedEvent
    | RecordOwedEvent
    | RecordClaimedEvent
    | RecordReclaimedEvent
    | ItemSkippedEvent
    | DecisionPendingEvent
)

_EVENT_CLASSES: dict[str, type[Any]] = {
    "Locked": LockedEvent,
    "Settled": RecordSettledEvent,
    "Aborted": RecordAbortedEvent,
    "Owed": RecordOwedEvent,
    "Claimed": RecordClaimedEvent,
    "Reclaimed": RecordReclaimedEvent,
    "ItemSkipped": ItemSkippedEvent,
    "DecisionPending": DecisionPendingEvent,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _decode_event(name: str, log: LogEntry, args: dict[str, Any]) -> RecordEvent:
    position = EventPosition.of(log)
    if name == "Locked":
        record = LockRecord.from_words(args["w0"], args["w1"], args["payee"], args["termsHash"])
        return LockedEvent(
            settlement_id=args["settlementId"],
            leg_index=record.leg_index,
            token=record.token,
            locker=record.locker,
            payee=record.payee,
            amount=record.amount,
            deadline=record.deadline_s,
            terms_hash=record.terms_hash,
            **position,
        )
    fields = {_snake(key): value for key, value in args.items()}
    if name == "ItemSkipped":
        fields["reason"] = SkipReason(fields["reason"])
    if name == "Owed":
        fields["state"] = LockState(fields["state"])
    event: RecordEvent = _EVENT_CLASSES[name](**fields, **position)
    return event


def _locked_record(event: LockedEvent) -> LockRecord:
    return LockRecord(
        token=event.token,
        amount=event.amount,
        locker=event.locker,
        deadline_s=event.deadline,
        leg_index=event.leg_index,
        state=LockState.LOCKED,
        payee=event.payee,
        terms_hash=event.terms_hash,
    )


def replay_records(events: Iterable[RecordEvent]) -> list[LockRecord]:
    """A settlement's open records after its events (in chain order), as the escrow orders them.

    Locked appends a record; Settled, Aborted, Reclaimed and Claimed remove the first open record
    with the event's digest (records with the same digest are identical, so which one is the same);
    Owed removes it and appends it again in its owed state, as the escrow does. Raises ChainError
    if an event names a record that is not open (events missing or out of order).
    """
    records: list[LockRecord] = []
    for event in events:
        if isinstance(event, LockedEvent):
            records.append(_locked_record(event))
            continue
        if isinstance(event, ItemSkippedEvent | DecisionPendingEvent):
            continue
        digest = event.record
        index = next((i for i, r in enumerate(records) if r.digest == digest), None)
        if index is None:
            raise ChainError(
                f"escrow event {type(event).__name__} of settlement 0x{event.settlement_id.hex()} names "
                f"record 0x{digest.hex()}, which is not open in the events read"
            )
        record = records.pop(index)
        if isinstance(event, RecordOwedEvent):
            records.append(record.owed(event.state))
    return records


class DvPEscrowCommit(Binding):
    """DvPEscrowCommit: locks as in DvPEscrow; execution, claims and reclaims carry the records.

    Method names follow the Solidity functions in snake_case; ids and hashes are 32-byte `bytes`;
    addresses lowercase strings; `deadline_s` unix seconds.
    """

    artifact_name = "DvPEscrowCommit"

    # -- locks ----------------------------------------------------------------------------------

    def lock(
        self,
        sender: Sender,
        settlement_id: bytes,
        leg_index: int,
        token: str,
        amount: int,
        payee: str,
        deadline_s: int,
        terms_hash: bytes,
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """lock(...): pulls `amount` of `token` from `sender` (needs an allowance) into escrow."""
        args = (settlement_id, leg_index, token, amount, payee, deadline_s, terms_hash)
        return self._write(sender, "lock", *args, gas=gas)

    def lock_with_permit(
        self,
        sender: Sender,
        settlement_id: bytes,
        leg_index: int,
        token: str,
        amount: int,
        payee: str,
        deadline_s: int,
        terms_hash: bytes,
        permit: PermitSignature,
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """lockWithPermit(...); with a permit signed for the lock's own deadline, the packed entry
        point (`lockWithPermitPacked`, less calldata) is used."""
        if permit.deadline_s == deadline_s and 0 <= deadline_s <= _MAX_UINT40 and amount <= _MAX_UINT96:
            w0 = int(token, 16) | (amount << 160)
            packed = int(payee, 16) | (deadline_s << 160) | (leg_index << 200) | (permit.v << 208)
            args: tuple[object, ...] = (settlement_id, terms_hash, w0, packed, permit.r, permit.s)
            return self._write(sender, "lockWithPermitPacked", *args, gas=gas)
        args = (settlement_id, leg_index, token, amount, payee, deadline_s, terms_hash)
        permit_args = (permit.deadline_s, permit.v, permit.r, permit.s)
        return self._write(sender, "lockWithPermit", *args, *permit_args, gas=gas)

    # -- execution ------------------------------------------------------------------------------

    def deliver(
        self,
        sender: Sender,
        raw_report: bytes,
        report_context: bytes,
        signatures: Sequence[bytes],
        items: Sequence[ItemRecords],
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """deliver(...): transmit a signed report through the forwarder and execute it with each
        item's open records (`items`, in the report's item order). Raises ContractRevert with
        ReportNotAccepted (or the forwarder's own error, e.g. AlreadyAttempted) if the forwarder did
        not pass the report on; nothing is consumed then."""
        records = pack_delivery(items)
        return self._write(sender, "deliver", raw_report, report_context, list(signatures), records, gas=gas)

    def execute(
        self, sender: Sender, settlement_id: bytes, terms_hash: bytes, records: Sequence[LockRecord]
    ) -> TxReceipt:
        """execute(...): finish a decision recorded pending, with the settlement's open records."""
        return self._write(sender, "execute", settlement_id, terms_hash, pack_records(records))

    def claim(
        self, sender: Sender, settlement_id: bytes, records: Sequence[LockRecord], index: int
    ) -> TxReceipt:
        """claim(...): pay owed record `index` of the open `records` to its beneficiary."""
        return self._write(sender, "claim", settlement_id, pack_records(records), index)

    def reclaim(
        self, sender: Sender, settlement_id: bytes, records: Sequence[LockRecord], index: int
    ) -> TxReceipt:
        """reclaim(...): the locker takes back Locked record `index` after deadline + grace."""
        return self._write(sender, "reclaim", settlement_id, pack_records(records), index)

    # -- views ----------------------------------------------------------------------------------

    def settlement_head(self, settlement_id: bytes, *, block: int | str = "latest") -> int:
        return int(self._read_one("settlementHead", settlement_id, block=block))

    def records_match(self, settlement_id: bytes, records: Sequence[LockRecord]) -> bool:
        return bool(self._read_one("recordsMatch", settlement_id, pack_records(records)))

    def record_digest(self, record: LockRecord) -> bytes:
        return bytes(self._read_one("recordDigest", record.w0, record.w1, record.payee, record.terms_hash))

    def pending_decision(self, settlement_id: bytes, terms_hash: bytes) -> int:
        """0 none, 1 SETTLE, 2 ABORT."""
        return int(self._read_one("pendingDecision", settlement_id, terms_hash))

    def forwarder(self) -> str:
        return str(self._read_one("forwarder"))

    def grace_s(self) -> int:
        return int(self._read_one("grace"))

    def open_records(
        self, settlement_id: bytes, from_block: int | str, *, block: int | str = "latest"
    ) -> list[LockRecord]:
        """The settlement's open records, rebuilt from its events in [from_block, block] and
        checked against its head at `block`. Raises ChainError if they do not match (events older
        than `from_block`, or a provider that dropped logs)."""
        at = block if isinstance(block, int) else self.client.block_number()
        records = replay_records(self.settlement_events(settlement_id, from_block, at))
        head = self.settlement_head(settlement_id, block=at)
        if commit_head(records) != head & ~CLOSED_FLAG:
            raise ChainError(
                f"the escrow's events from block {from_block} to {at} do not rebuild settlement "
                f"0x{settlement_id.hex()}'s open records ({len(records)} read); read from an earlier block"
            )
        return records

    # -- events ---------------------------------------------------------------------------------

    def settlement_events(
        self, settlement_id: bytes, from_block: int | str, to_block: int | str
    ) -> list[RecordEvent]:
        """Every escrow event of one settlement in the range, in chain order (one eth_getLogs)."""
        topics = [self.abi.event(name).topic0 for name in _EVENT_CLASSES]
        logs = self.client.get_logs(self.address, [topics, settlement_id], from_block, to_block)
        return self._decode_all(logs)

    def all_events(self, from_block: int | str, to_block: int | str) -> list[RecordEvent]:
        """Every escrow event in the range, in chain order."""
        topics = [self.abi.event(name).topic0 for name in _EVENT_CLASSES]
        return self._decode_all(self.client.get_logs(self.address, [topics], from_block, to_block))

    def events_in(self, receipt: TxReceipt) -> list[RecordEvent]:
        """The escrow events one transaction emitted, in log order."""
        return self._decode_all([log for log in receipt.logs if log.address == self.address])

    def _decode_all(self, logs: Sequence[LogEntry]) -> list[RecordEvent]:
        by_topic = {self.abi.event(name).topic0: name for name in _EVENT_CLASSES}
        decoded: list[RecordEvent] = []
        for log in logs:
            name = by_topic.get(log.topics[0]) if log.topics else None
            if name is not None:
                decoded.append(_decode_event(name, log, self.abi.event(name).decode(log.topics, log.data)))
        return decoded
