"""The DvPEscrow binding: locks, report delivery with the settlements' lock records, claims, reclaims,
and the escrow's events as dataclasses.

The escrow keeps one word per settlement: a hash chain over its open lock records (see the
contract's NatSpec). Everything that pays out is given the records and checks them against it, so
this module is the off-chain half of that bargain:

- `LockRecord`: a record as the chain commits to it, packed as `deliver`, `execute`, `claim` and
  `reclaim` take it, and its `digest` (how the escrow's events name it);
- `replay_records`: a settlement's open record list rebuilt from its events, in the escrow's order;
  `lock_history`: every record of a settlement with its state now;
- `commit_head`: the head the escrow should hold for a record list (to check a rebuild);
- `DvPEscrow`: the binding, whose `open_records` reads the events and checks the result against the
  chain before anything is sent with it.

The oracle observes the chain leg through the Locked events (at finality they become
LockObservations); tests use `events_in(receipt)` to see what one transaction did.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from crossdvp.chain._abi import ContractAbi
from crossdvp.chain._binding import Binding, EventPosition, topic_uint
from crossdvp.chain.client import LogEntry, Sender, TxReceipt
from crossdvp.chain.errors import ChainError

__all__ = [
    "CLOSED_FLAG",
    "AbortedEvent",
    "ClaimedEvent",
    "DecisionPendingEvent",
    "DvPEscrow",
    "EscrowEvent",
    "ItemRecords",
    "ItemSkippedEvent",
    "LockEntry",
    "LockRecord",
    "LockState",
    "LockView",
    "LockedEvent",
    "OwedEvent",
    "PermitSignature",
    "ReclaimedEvent",
    "SettledEvent",
    "SkipReason",
    "commit_head",
    "decode_escrow_logs",
    "lock_history",
    "pack_delivery",
    "pack_records",
    "replay_records",
]


class LockState(IntEnum):
    """DvPEscrow.LockState, in the Solidity enum's order."""

    NONE = 0
    LOCKED = 1
    SETTLED = 2
    ABORTED = 3
    RECLAIMED = 4
    SETTLE_OWED = 5  # SETTLE applied but the token refused the payee: claimable by the payee
    ABORT_OWED = 6  # ABORT applied but the token refused the locker: claimable by the locker


class SkipReason(IntEnum):
    """Why a report item did not apply (the ItemSkipped event's `reason`)."""

    UNKNOWN_SETTLEMENT = 1
    ALREADY_FINAL = 2
    TERMS_HASH_MISMATCH = 3
    INVALID_DECISION = 4


@dataclass(frozen=True, slots=True)
class PermitSignature:
    """An EIP-2612 permit signed by the token holder, as lockWithPermit takes it."""

    deadline_s: int
    v: int
    r: bytes
    s: bytes


@dataclass(frozen=True, slots=True)
class LockView:
    """A leg's lock as its events tell it (`DvPEscrow.get_lock`); state NONE if it was never locked."""

    token: str
    amount: int
    locker: str
    deadline_s: int
    state: LockState
    payee: str
    terms_hash: bytes


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
class LockedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    token: str
    locker: str
    payee: str
    amount: int
    deadline: int
    terms_hash: bytes

    @property
    def lock_record(self) -> LockRecord:
        """The record this lock appended."""
        return LockRecord(
            token=self.token,
            amount=self.amount,
            locker=self.locker,
            deadline_s=self.deadline,
            leg_index=self.leg_index,
            state=LockState.LOCKED,
            payee=self.payee,
            terms_hash=self.terms_hash,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SettledEvent(_Positioned):
    """Record `record` (its digest) was paid to its payee."""

    settlement_id: bytes
    leg_index: int
    payee: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortedEvent(_Positioned):
    """Record `record` was refunded to its locker."""

    settlement_id: bytes
    leg_index: int
    locker: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OwedEvent(_Positioned):
    """A SETTLE/ABORT transfer the token refused; `beneficiary` can `claim` it later. `record` is the
    Locked record's digest; it stays open as `state` (SETTLE_OWED or ABORT_OWED)."""

    settlement_id: bytes
    leg_index: int
    beneficiary: str
    amount: int
    state: LockState
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedEvent(_Positioned):
    """The owed record `record` (its owed digest) was paid."""

    settlement_id: bytes
    leg_index: int
    beneficiary: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReclaimedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    locker: str
    amount: int
    record: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSkippedEvent(_Positioned):
    settlement_id: bytes
    terms_hash: bytes
    decision: int
    reason: SkipReason


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionPendingEvent(_Positioned):
    """A decision recorded without matching records; `execute` finishes it."""

    settlement_id: bytes
    terms_hash: bytes
    decision: int


EscrowEvent = (
    LockedEvent
    | SettledEvent
    | AbortedEvent
    | OwedEvent
    | ClaimedEvent
    | ReclaimedEvent
    | ItemSkippedEvent
    | DecisionPendingEvent
)

_EVENT_CLASSES: dict[str, type[_Positioned]] = {
    "Locked": LockedEvent,
    "Settled": SettledEvent,
    "Aborted": AbortedEvent,
    "Owed": OwedEvent,
    "Claimed": ClaimedEvent,
    "Reclaimed": ReclaimedEvent,
    "ItemSkipped": ItemSkippedEvent,
    "DecisionPending": DecisionPendingEvent,
}
_RECORD_EVENTS = (SettledEvent, AbortedEvent, OwedEvent, ClaimedEvent, ReclaimedEvent)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _decode_event(name: str, log: LogEntry, args: dict[str, Any]) -> Any:
    """The event dataclass for decoded log `args` (Solidity names, e.g. settlementId -> settlement_id)."""
    fields = {_snake(key): value for key, value in args.items()}
    if name == "ItemSkipped":
        fields["reason"] = SkipReason(fields["reason"])
    if name == "Owed":
        fields["state"] = LockState(fields["state"])
    return _EVENT_CLASSES[name](**fields, **EventPosition.of(log))


def decode_escrow_logs(abi: ContractAbi, logs: Sequence[LogEntry]) -> list[EscrowEvent]:
    """The escrow events among `logs` (others are skipped), decoded with the escrow's ABI."""
    by_topic = {abi.event(name).topic0: name for name in _EVENT_CLASSES}
    decoded: list[EscrowEvent] = []
    for log in logs:
        name = by_topic.get(log.topics[0]) if log.topics else None
        if name is not None:
            decoded.append(_decode_event(name, log, abi.event(name).decode(log.topics, log.data)))
    return decoded


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One lock of a settlement as its events tell it: the record as locked, its state now, and the
    transaction that locked it."""

    record: LockRecord
    state: LockState
    lock_tx: bytes
    lock_block: int


_FINAL_BY_EVENT: dict[type, LockState] = {
    SettledEvent: LockState.SETTLED,
    AbortedEvent: LockState.ABORTED,
    ReclaimedEvent: LockState.RECLAIMED,
}


def _replay(events: Iterable[EscrowEvent]) -> tuple[list[LockEntry], list[int]]:
    """Every lock in lock order with its state after `events` (chain order), and the escrow's open
    list as indices into them. Locked appends a record; Settled, Aborted, Reclaimed and Claimed
    remove the first open record with the event's digest (records with the same digest are
    identical, so which one is the same); Owed removes it and appends it again in its owed state,
    as the escrow does. Raises ChainError if an event names a record that is not open (events
    missing, or read from too late a block)."""
    entries: list[LockEntry] = []
    open_: list[tuple[int, bytes]] = []  # (index into entries, digest of its current record)
    for event in events:
        if isinstance(event, LockedEvent):
            record = event.lock_record
            open_.append((len(entries), record.digest))
            entries.append(LockEntry(record, LockState.LOCKED, event.tx_hash, event.block_number))
            continue
        if not isinstance(event, _RECORD_EVENTS):
            continue
        position = next((i for i, (_, digest) in enumerate(open_) if digest == event.record), None)
        if position is None:
            raise ChainError(
                f"escrow event {type(event).__name__} of settlement 0x{event.settlement_id.hex()} names "
                f"record 0x{event.record.hex()}, which is not open in the events read (read from an "
                "earlier block)"
            )
        index = open_.pop(position)[0]
        entry = entries[index]
        if isinstance(event, OwedEvent):
            entries[index] = replace(entry, state=event.state)
            open_.append((index, entry.record.owed(event.state).digest))
        elif isinstance(event, ClaimedEvent):
            settled = entry.state is LockState.SETTLE_OWED
            entries[index] = replace(entry, state=LockState.SETTLED if settled else LockState.ABORTED)
        else:
            entries[index] = replace(entry, state=_FINAL_BY_EVENT[type(event)])
    return entries, [index for index, _ in open_]


def replay_records(events: Iterable[EscrowEvent]) -> list[LockRecord]:
    """A settlement's open records after its events (in chain order), in the escrow's list order
    (see `_replay`). Raises ChainError if the events do not replay."""
    entries, open_list = _replay(events)
    return [entries[i].record.owed(entries[i].state) for i in open_list]


def lock_history(events: Iterable[EscrowEvent]) -> list[LockEntry]:
    """Every lock of a settlement in lock order, with its state after `events` (chain order).
    Raises ChainError as `replay_records` does."""
    return _replay(events)[0]


class DvPEscrow(Binding):
    """The DvP escrow: a payer locks a leg; `deliver` executes the DON's reports with the records.

    Method names follow the Solidity functions in snake_case; ids and hashes are 32-byte `bytes`;
    addresses lowercase strings; `deadline_s` unix seconds.
    """

    artifact_name = "DvPEscrow"

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

    def workflow_owner(self) -> str:
        return str(self._read_one("workflowOwner"))

    def workflow_name(self) -> bytes:
        return bytes(self._read_one("workflowName"))

    def workflow_id(self) -> bytes:
        return bytes(self._read_one("workflowId"))

    def grace_s(self) -> int:
        return int(self._read_one("grace"))

    def supports_interface(self, interface_id: bytes) -> bool:
        return bool(self._read_one("supportsInterface", interface_id))

    def lock_history(
        self, settlement_id: bytes, from_block: int | str, to_block: int | str = "latest"
    ) -> list[LockEntry]:
        """Every lock of the settlement since `from_block`, in lock order, with its state now."""
        return lock_history(self.settlement_events(settlement_id, from_block, to_block))

    def get_lock(
        self,
        settlement_id: bytes,
        leg_index: int,
        *,
        from_block: int | str = 0,
        terms_hash: bytes | None = None,
    ) -> LockView:
        """The leg's lock as the escrow pays it and the oracle counts it: its first record (under
        `terms_hash`, if given), from the events since `from_block`; state NONE if there is none."""
        for entry in self.lock_history(settlement_id, from_block):
            r = entry.record
            if r.leg_index == leg_index and (terms_hash is None or r.terms_hash == terms_hash):
                return LockView(r.token, r.amount, r.locker, r.deadline_s, entry.state, r.payee, r.terms_hash)
        return LockView("0x" + "00" * 20, 0, "0x" + "00" * 20, 0, LockState.NONE, "0x" + "00" * 20, bytes(32))

    def claim_owed(self, sender: Sender, settlement_id: bytes, leg_index: int, from_block: int | str) -> int:
        """Claim every owed record of the leg (anyone may; the tokens go to each beneficiary);
        returns how many were claimed. Each claim re-reads the records, as the last one changed them."""
        claimed = 0
        while True:
            records = self.open_records(settlement_id, from_block)
            owed = [
                i
                for i, r in enumerate(records)
                if r.leg_index == leg_index and r.state in (LockState.SETTLE_OWED, LockState.ABORT_OWED)
            ]
            if not owed:
                return claimed
            self.claim(sender, settlement_id, records, owed[0])
            claimed += 1

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

    def on_report(
        self, sender: Sender, metadata: bytes, report: bytes, *, gas: int | None = None
    ) -> TxReceipt:
        """onReport(...) called directly; only the forwarder may (anyone else gets UnauthorizedForwarder)."""
        return self._write(sender, "onReport", metadata, report, gas=gas)

    # -- events ---------------------------------------------------------------------------------

    def _events(
        self,
        name: str,
        from_block: int | str,
        to_block: int | str,
        settlement_id: bytes | None,
        leg: int | None,
        *,
        latest: bool = False,
    ) -> list[Any]:
        indexed: list[bytes | None] = [settlement_id]
        if leg is not None:
            indexed.append(topic_uint(leg))
        while indexed and indexed[-1] is None:
            indexed.pop()  # trailing wildcards are implied
        return [
            _decode_event(name, log, args)
            for log, args in self._logs(name, from_block, to_block, *indexed, latest=latest)
        ]

    def locked_events(
        self,
        from_block: int | str,
        to_block: int | str,
        *,
        settlement_id: bytes | None = None,
        leg_index: int | None = None,
    ) -> list[LockedEvent]:
        """Locked events in [from_block, to_block] (inclusive), in chain order, optionally filtered."""
        return self._events("Locked", from_block, to_block, settlement_id, leg_index)

    def lock_event(
        self, settlement_id: bytes, leg_index: int, from_block: int | str, to_block: int | str = "latest"
    ) -> LockedEvent | None:
        """The first Locked event of one settlement leg in [from_block, to_block], or None (a leg is
        usually locked once; the first record is the one the escrow pays)."""
        events = self._events("Locked", from_block, to_block, settlement_id, leg_index)
        return events[0] if events else None

    def settled_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[SettledEvent]:
        return self._events("Settled", from_block, to_block, settlement_id, None)

    def aborted_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[AbortedEvent]:
        return self._events("Aborted", from_block, to_block, settlement_id, None)

    def owed_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[OwedEvent]:
        return self._events("Owed", from_block, to_block, settlement_id, None)

    def item_skipped_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[ItemSkippedEvent]:
        return self._events("ItemSkipped", from_block, to_block, settlement_id, None)

    def settlement_events(
        self, settlement_id: bytes, from_block: int | str, to_block: int | str
    ) -> list[EscrowEvent]:
        """Every escrow event of one settlement in the range, in chain order (one eth_getLogs)."""
        topics = [self.abi.event(name).topic0 for name in _EVENT_CLASSES]
        logs = self.client.get_logs(self.address, [topics, settlement_id], from_block, to_block)
        return self._decode_all(logs)

    def all_events(self, from_block: int | str, to_block: int | str) -> list[EscrowEvent]:
        """Every escrow event in the range, in chain order."""
        topics = [self.abi.event(name).topic0 for name in _EVENT_CLASSES]
        return self._decode_all(self.client.get_logs(self.address, [topics], from_block, to_block))

    def events_in(self, receipt: TxReceipt) -> list[EscrowEvent]:
        """The escrow events one transaction emitted, in log order."""
        return self._decode_all([log for log in receipt.logs if log.address == self.address])

    def _decode_all(self, logs: Sequence[LogEntry]) -> list[EscrowEvent]:
        return decode_escrow_logs(self.abi, logs)
