"""The DvPEscrow binding: lock, claim, reclaim, read a lock, and the escrow's events as dataclasses.

The oracle observes the chain leg through these events (Locked at finality becomes a LockObservation);
tests use `events_in(receipt)` to see what one transaction did.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from crossdvp.chain._binding import Binding, EventPosition, topic_uint
from crossdvp.chain.client import LogEntry, Sender, TxReceipt

__all__ = [
    "AbortedEvent",
    "ClaimedEvent",
    "DvPEscrow",
    "EscrowEvent",
    "ItemSkippedEvent",
    "LockState",
    "LockView",
    "LockedEvent",
    "OwedEvent",
    "PermitSignature",
    "ReclaimedEvent",
    "SettledEvent",
    "SkipReason",
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
    """Why onReport skipped an item (the ItemSkipped event's `reason`)."""

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
    """DvPEscrow.getLock: a lock of (settlement_id, leg_index); state NONE if there is none."""

    token: str
    amount: int
    locker: str
    deadline_s: int
    state: LockState
    payee: str
    terms_hash: bytes


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SettledEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    payee: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    locker: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OwedEvent(_Positioned):
    """A SETTLE/ABORT transfer the token refused; `beneficiary` can `claim` it later."""

    settlement_id: bytes
    leg_index: int
    beneficiary: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    beneficiary: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReclaimedEvent(_Positioned):
    settlement_id: bytes
    leg_index: int
    locker: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSkippedEvent(_Positioned):
    settlement_id: bytes
    terms_hash: bytes
    decision: int
    reason: SkipReason


EscrowEvent = (
    LockedEvent | SettledEvent | AbortedEvent | OwedEvent | ClaimedEvent | ReclaimedEvent | ItemSkippedEvent
)


_EVENT_CLASSES: dict[str, type[_Positioned]] = {
    "Locked": LockedEvent,
    "Settled": SettledEvent,
    "Aborted": AbortedEvent,
    "Owed": OwedEvent,
    "Claimed": ClaimedEvent,
    "Reclaimed": ReclaimedEvent,
    "ItemSkipped": ItemSkippedEvent,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _decode_event(name: str, log: LogEntry, args: dict[str, Any]) -> Any:
    """The event dataclass for decoded log `args` (Solidity names, e.g. settlementId -> settlement_id)."""
    fields = {_snake(key): value for key, value in args.items()}
    if name == "ItemSkipped":
        fields["reason"] = SkipReason(fields["reason"])
    return _EVENT_CLASSES[name](**fields, **EventPosition.of(log))


class DvPEscrow(Binding):
    """The DvP escrow: a payer locks a leg; the forwarder's reports settle or abort it.

    Method names follow the Solidity functions in snake_case; `deadline_s`/`grace_s` are unix
    seconds; ids and hashes are 32-byte `bytes`; addresses lowercase strings.
    """

    artifact_name = "DvPEscrow"

    # -- writes ---------------------------------------------------------------------------------

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
        return self._write(
            sender, "lock", settlement_id, leg_index, token, amount, payee, deadline_s, terms_hash, gas=gas
        )

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
        """lockWithPermit(...): approve by EIP-2612 signature and lock in one transaction."""
        args = (settlement_id, leg_index, token, amount, payee, deadline_s, terms_hash)
        permit_args = (permit.deadline_s, permit.v, permit.r, permit.s)
        return self._write(sender, "lockWithPermit", *args, *permit_args, gas=gas)

    def claim(self, sender: Sender, settlement_id: bytes, leg_index: int) -> TxReceipt:
        """claim(...): pay an owed lock (SETTLE_OWED to the payee, ABORT_OWED to the locker)."""
        return self._write(sender, "claim", settlement_id, leg_index)

    def reclaim(self, sender: Sender, settlement_id: bytes, leg_index: int) -> TxReceipt:
        """reclaim(...): the locker takes back an unexecuted lock after deadline + grace."""
        return self._write(sender, "reclaim", settlement_id, leg_index)

    def on_report(
        self, sender: Sender, metadata: bytes, report: bytes, *, gas: int | None = None
    ) -> TxReceipt:
        """onReport(...) called directly; only the forwarder may (anyone else gets UnauthorizedForwarder)."""
        return self._write(sender, "onReport", metadata, report, gas=gas)

    # -- views ----------------------------------------------------------------------------------

    def get_lock(self, settlement_id: bytes, leg_index: int, *, block: int | str = "latest") -> LockView:
        token, amount, locker, deadline, state, payee, terms_hash = self._read_one(
            "getLock", settlement_id, leg_index, block=block
        )
        return LockView(
            token=token,
            amount=amount,
            locker=locker,
            deadline_s=deadline,
            state=LockState(state),
            payee=payee,
            terms_hash=terms_hash,
        )

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
        """The Locked event of one settlement leg in [from_block, to_block], or None. A leg is locked at
        most once (LockExists), so the range is read newest part first and the search stops at the
        event: a recent lock costs one or two eth_getLogs however old the escrow is."""
        events = self._events("Locked", from_block, to_block, settlement_id, leg_index, latest=True)
        return events[-1] if events else None

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

    def claimed_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[ClaimedEvent]:
        return self._events("Claimed", from_block, to_block, settlement_id, None)

    def reclaimed_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[ReclaimedEvent]:
        return self._events("Reclaimed", from_block, to_block, settlement_id, None)

    def item_skipped_events(
        self, from_block: int | str, to_block: int | str, *, settlement_id: bytes | None = None
    ) -> list[ItemSkippedEvent]:
        return self._events("ItemSkipped", from_block, to_block, settlement_id, None)

    def all_events(self, from_block: int | str, to_block: int | str) -> list[EscrowEvent]:
        """Every escrow event in the range, in chain order (one eth_getLogs for all kinds)."""
        topics = [self.abi.event(name).topic0 for name in _EVENT_CLASSES]
        logs = self.client.get_logs(self.address, [topics], from_block, to_block)
        return self._decode_all(logs)

    def events_in(self, receipt: TxReceipt) -> list[EscrowEvent]:
        """The escrow events one transaction emitted, in log order."""
        return self._decode_all([log for log in receipt.logs if log.address == self.address])

    def _decode_all(self, logs: Sequence[LogEntry]) -> list[EscrowEvent]:
        by_topic = {self.abi.event(name).topic0: name for name in _EVENT_CLASSES}
        decoded: list[EscrowEvent] = []
        for log in logs:
            name = by_topic.get(log.topics[0]) if log.topics else None
            if name is not None:
                args = self.abi.event(name).decode(log.topics, log.data)
                decoded.append(_decode_event(name, log, args))
        return decoded
