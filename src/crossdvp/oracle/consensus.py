"""Rounds: a rotating leader batches decided items, f+1 nodes sign identical bytes, the report is shared.

Leader rotation is by time slot: slot = floor(now_ms / round_ms), leader = slot mod n. A leader that
is down or silent is thus replaced after one slot, with no view-change messages.

The leader proposes its decided, not-yet-reported items (by settlement id, at most max_batch). Every
byte of the report is derived (DESIGN.md): the payload from the items, the execution id from the
payload, the timestamp from the items' decision times. A follower rebuilds the report from ITS OWN
stored decisions and signs only if it decided every item the same way and the bytes come out
identical; otherwise it answers with the settlement ids it agrees with, and the leader re-proposes
the intersection with the f most agreeing followers. Nobody is asked to sign an item it has not
decided, and a node's signature always passes its store's non-equivocation check first.

A report with f+1 valid signatures (exactly f+1 are included) is verified with verify_report by every
node that accepts it, stored, and broadcast through the outbox until every peer acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from crossdvp.errors import CrossDvpError
from crossdvp.oracle.errors import EquivocationRefused, PeerMessageRejected
from crossdvp.oracle.keys import NodeKey
from crossdvp.oracle.metrics import NodeMetrics
from crossdvp.oracle.peers import PeerSigner, PeerTransport
from crossdvp.oracle.ports import SignedReport
from crossdvp.oracle.store import NodeStore, StoredDecision, hex32
from crossdvp.oracle.wire import (
    hex_to_bytes,
    items_from_wire,
    items_to_wire,
    report_from_wire,
    report_to_wire,
)
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import (
    DonConfig,
    ReportItem,
    WorkflowIdentity,
    build_report,
    decode_report,
    recover_signer,
    report_context,
    report_timestamp,
    sign_report,
    verify_report,
)
from crossdvp.settlement.terms import Decision

__all__ = ["Consensus", "RoundOutcome", "leader_of", "slot_of"]

log = logging.getLogger(__name__)

#: Re-proposals within one round (each narrows the batch); more cannot help within one slot.
MAX_PROPOSALS_PER_ROUND = 3
MAX_REPORT_TIMESTAMP = 2**32 - 1
#: Complete reports a follower sends back with its answer to a proposal (and a leader reads).
_MAX_REPORTS_SHARED = 8


def slot_of(now_ms: int, round_ms: int) -> int:
    return now_ms // round_ms


def leader_of(slot: int, n: int) -> int:
    return slot % n


def _flip(decision: Decision) -> Decision:
    return Decision.ABORT if decision is Decision.SETTLE else Decision.SETTLE


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What one led round did: "idle" (nothing to report), "complete", or "no_quorum"."""

    outcome: str
    report: SignedReport | None = None
    proposals: int = 0


class Consensus:
    """One node's side of the rounds: leading, answering proposals, accepting complete reports."""

    def __init__(
        self,
        *,
        index: int,
        key: NodeKey,
        don: DonConfig,
        workflow: WorkflowIdentity,
        store: NodeStore,
        signer: PeerSigner,
        transport: PeerTransport,
        metrics: NodeMetrics,
        now_ms: Callable[[], int],
        report_networks: Callable[[Sequence[ReportItem]], set[str]],
        max_batch: int,
        peer_timeout_ms: int,
        byzantine: str | None = None,
        on_new_report: Callable[[], None] | None = None,
    ) -> None:
        self.index = index
        self._key = key
        self.don = don
        self.workflow = workflow
        self.context = report_context(don)
        self._store = store
        self._signer = signer
        self._transport = transport
        self._metrics = metrics
        self._now_ms = now_ms
        self._report_networks = report_networks
        self._max_batch = max_batch
        self._peer_timeout_s = peer_timeout_ms / 1000
        self._byzantine = byzantine
        # Called after a new complete report is stored (led, learned or shared): the node sends it on
        # at once rather than at its next delivery and outbox ticks.
        self._on_new_report = on_new_report
        # Proposal requests a round stopped waiting for (see _broadcast_propose).
        self._stragglers: set[asyncio.Task[dict[str, Any] | None]] = set()
        #: TEST ONLY: reports a Byzantine node forged, which the node also tries to deliver itself.
        self.forged_reports: list[SignedReport] = []

    @property
    def n(self) -> int:
        return len(self.don.signers)

    # -- building and signing ----------------------------------------------------------------------

    def _build(self, decisions: Sequence[StoredDecision]) -> tuple[tuple[ReportItem, ...], bytes]:
        ordered = sorted(decisions, key=lambda d: d.settlement_id)
        items = tuple(d.item() for d in ordered)
        raw = build_report(
            items,
            timestamp_s=report_timestamp([d.decided_at_s for d in ordered]),
            don=self.don,
            workflow=self.workflow,
        )
        return items, raw

    def _sign_checked(self, raw: bytes, items: Sequence[ReportItem], role: str) -> bytes:
        """Sign after the store confirmed (and recorded) that every item is this node's decision."""
        metadata, decoded = decode_report(raw)
        if tuple(decoded) != tuple(items):
            raise EquivocationRefused("the report bytes do not carry the items being signed")
        self._store.record_signature(metadata.workflow_execution_id, items, role, self._now_ms())
        self._metrics.signatures.labels(role=role).inc()
        return sign_report(raw, self.context, self._key.private_key)

    # -- follower ----------------------------------------------------------------------------------

    def handle_propose(self, sender: int, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a proposal: {"status": "signed", "signature"} or {"status": "partial", "agreed": [...]},
        both with "reports": complete reports this node already holds for any proposed item.

        Raises PeerMessageRejected for a malformed proposal.
        """
        items = items_from_wire(body.get("items"))
        raw = hex_to_bytes(body.get("raw"), "raw")
        if self._byzantine is not None:
            return self._byzantine_answer(items)
        decisions = self._store.decisions_for(i.settlement_id for i in items)
        agreed = [
            i
            for i in items
            if (d := decisions.get(i.settlement_id)) is not None
            and d.decision is i.decision
            and d.terms_hash == i.terms_hash
        ]
        known = self._known_reports(items)
        if len(agreed) == len(items):
            _, mine = self._build([decisions[i.settlement_id] for i in items])
            if mine == raw:
                signature = self._sign_checked(raw, items, role="follower")
                return {"status": "signed", "signature": "0x" + signature.hex(), "reports": known}
            log.warning(
                "proposal from node %d: same decisions but different report bytes; not signing", sender
            )
        return {
            "status": "partial",
            "agreed": ["0x" + i.settlement_id.hex() for i in agreed],
            "reports": known,
        }

    def _known_reports(self, items: Sequence[ReportItem]) -> list[dict[str, Any]]:
        known = self._store.reports_for_many((i.settlement_id for i in items), limit=_MAX_REPORTS_SHARED)
        return [report_to_wire(stored.report) for stored in known]

    def _byzantine_answer(self, items: Sequence[ReportItem]) -> dict[str, Any]:
        """TEST ONLY ([testing] byzantine): sign the opposite decisions, or random bytes."""
        if self._byzantine == "garbage":
            signature = secrets.token_bytes(64) + bytes([secrets.randbelow(2)])
        else:
            flipped = [ReportItem(i.settlement_id, i.terms_hash, _flip(i.decision)) for i in items]
            raw = build_report(flipped, timestamp_s=0, don=self.don, workflow=self.workflow)
            signature = sign_report(raw, self.context, self._key.private_key)
        return {"status": "signed", "signature": "0x" + signature.hex(), "reports": []}

    # -- complete reports --------------------------------------------------------------------------

    def accept_report(self, report: SignedReport, source: str) -> bool:
        """Verify and store a complete report; True if it was new.

        Rejects (PeerMessageRejected reason "bad_report"): signatures that do not satisfy
        verify_report for this DON, or metadata of another workflow.
        """
        try:
            signers = verify_report(report.raw, report.context, report.signatures, self.don)
            metadata, items = decode_report(report.raw)
        except SettlementError as exc:
            raise PeerMessageRejected(f"report rejected: {exc}", reason="bad_report") from exc
        if (metadata.workflow_cid, metadata.workflow_name, metadata.workflow_owner, metadata.report_id) != (
            self.workflow.workflow_cid,
            self.workflow.encoded_name,
            self.workflow.workflow_owner,
            self.workflow.report_id,
        ):
            raise PeerMessageRejected("report is for another workflow", reason="bad_report")
        decisions = self._store.decisions_for(i.settlement_id for i in items)
        for item in items:
            mine = decisions.get(item.settlement_id)
            if mine is not None and mine.decision is not item.decision:
                # f+1 signers include an honest node, so this means our own observations are wrong
                # (e.g. a finality assumption broke). Keep the quorum's report; an operator must look.
                self._metrics.errors.labels(kind="quorum_disagrees").inc()
                log.error(
                    "settlement %s: a quorum reported %s but this node decided %s",
                    hex32(item.settlement_id),
                    item.decision.name,
                    mine.decision.name,
                    extra={"settlement_id": hex32(item.settlement_id)},
                )
        now = self._now_ms()
        new = self._store.add_report(report, signers, self._report_networks(items), now)
        if new:
            if self._on_new_report is not None:
                self._on_new_report()
            self._metrics.reports.labels(source=source).inc()
            registered_ms = self._store.terms_registered_ms_many(i.settlement_id for i in items)
            for item in items:
                sid = hex32(item.settlement_id)
                registered = registered_ms.get(item.settlement_id)
                if registered is not None:
                    self._metrics.decision_latency.observe(max(0, now - registered) / 1000)
                log.info(
                    "settlement %s reported %s in report %s (signed by %d nodes)",
                    sid,
                    item.decision.name,
                    hex32(report.workflow_execution_id),
                    len(signers),
                    extra={"settlement_id": sid, "execution_id": hex32(report.workflow_execution_id)},
                )
        return new

    def _learn(self, wire_reports: object) -> None:
        if not isinstance(wire_reports, list):
            return
        for wire in wire_reports[:_MAX_REPORTS_SHARED]:
            try:
                self.accept_report(report_from_wire(wire), source="learned")
            except PeerMessageRejected as exc:
                self._metrics.peer_dropped.labels(reason=exc.reason).inc()

    # -- leader ------------------------------------------------------------------------------------

    async def lead_round(self) -> RoundOutcome:
        """Propose this node's unreported decisions until f+1 sign identical bytes (or give up)."""
        if self._byzantine is not None:
            return await self._byzantine_lead()
        candidate = [
            # The report timestamp is a uint32 (Keystone); a decision time beyond it cannot be reported,
            # and one such item must not block every batch. (Unreachable before 2106 in practice.)
            d
            for d in self._store.unreported_decisions(self._max_batch)
            if d.decided_at_s <= MAX_REPORT_TIMESTAMP
        ]
        proposals = 0
        while candidate and proposals < MAX_PROPOSALS_PER_ROUND:
            proposals += 1
            items, raw = self._build(candidate)
            signatures: dict[int, bytes] = {self.index: self._sign_checked(raw, items, role="leader")}
            replies, signed = await self._broadcast_propose(items, raw)
            signatures.update(signed)
            agreed: dict[int, set[bytes]] = {}
            all_ids = {i.settlement_id for i in items}
            for member, reply in replies.items():
                self._learn(reply.get("reports"))
                if member in signed:
                    agreed[member] = set(all_ids)
                else:
                    ids = self._agreed_ids(reply) & all_ids
                    # Agreeing with every item yet not signing means different bytes (or a lie): narrowing
                    # to that member's set cannot help, so it must not steer the intersection.
                    agreed[member] = ids if ids != all_ids else set()
            if len(signatures) >= self.don.f + 1:
                report = self._complete(raw, items, signatures)
                self._metrics.rounds.labels(outcome="complete").inc()
                return RoundOutcome("complete", report, proposals)
            # Items a peer already holds in a complete report are done; drop them (learned above).
            still_open = {d.settlement_id for d in self._store.unreported_decisions(self._max_batch)}
            if len(agreed) < self.don.f:
                break
            best = sorted(agreed.items(), key=lambda kv: (-len(kv[1]), kv[0]))[: self.don.f]
            keep = set(all_ids) & still_open
            for _, ids in best:
                keep &= ids
            narrowed = [d for d in candidate if d.settlement_id in keep]
            if not narrowed or len(narrowed) == len(candidate):
                break
            candidate = narrowed
        if not candidate:
            return RoundOutcome("idle", None, proposals)  # not counted: a leader with nothing to do
        self._metrics.rounds.labels(outcome="no_quorum").inc()
        return RoundOutcome("no_quorum", None, proposals)

    async def _broadcast_propose(
        self, items: Sequence[ReportItem], raw: bytes
    ) -> tuple[dict[int, dict[str, Any]], dict[int, bytes]]:
        """Ask every other member to sign `raw`; returns the replies and the valid signatures among
        them as soon as f members signed (with the leader's own, a quorum), else once all answered.

        Members still answering then are not waited for: their requests run to the end on their own
        and the replies are dropped. Waiting for every member made each report as slow as the
        slowest node of the DON, where only the f fastest are needed.
        """
        body = {"items": items_to_wire(items), "raw": "0x" + raw.hex()}

        async def ask(member: int) -> dict[str, Any] | None:
            try:
                return await self._transport.send(
                    member, self._signer.seal(member, "propose", body), timeout_s=self._peer_timeout_s
                )
            except CrossDvpError:
                return None

        asking = {
            asyncio.create_task(ask(m), name=f"propose to {m}"): m for m in range(self.n) if m != self.index
        }
        pending: set[asyncio.Task[dict[str, Any] | None]] = set(asking)
        replies: dict[int, dict[str, Any]] = {}
        signed: dict[int, bytes] = {}
        try:
            while pending and len(signed) < self.don.f:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    member, reply = asking[task], task.result()
                    if reply is None:
                        continue
                    replies[member] = reply
                    signature = self._valid_signature(member, raw, reply)
                    if signature is not None:
                        signed[member] = signature
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        for task in pending:  # keep a reference until it ends (the loop holds tasks weakly)
            self._stragglers.add(task)
            task.add_done_callback(self._stragglers.discard)
        return replies, signed

    async def cancel_stragglers(self) -> None:
        """Cancel the proposal requests no round waits for any more, and wait for them to end."""
        tasks = list(self._stragglers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _valid_signature(self, member: int, raw: bytes, reply: dict[str, Any]) -> bytes | None:
        if reply.get("status") != "signed":
            return None
        try:
            signature = hex_to_bytes(reply.get("signature"), "signature", 65)
            if recover_signer(raw, self.context, signature) == self.don.signers[member]:
                return signature
        except (PeerMessageRejected, SettlementError):
            pass
        self._metrics.peer_dropped.labels(reason="bad_report_signature").inc()
        log.warning("node %d answered a proposal with a signature that does not verify", member)
        return None

    @staticmethod
    def _agreed_ids(reply: dict[str, Any]) -> set[bytes]:
        ids = reply.get("agreed")
        if not isinstance(ids, list):
            return set()
        out: set[bytes] = set()
        for value in ids:
            try:
                out.add(hex_to_bytes(value, "agreed", 32))
            except PeerMessageRejected:
                continue
        return out

    def _complete(
        self, raw: bytes, items: Sequence[ReportItem], signatures: dict[int, bytes]
    ) -> SignedReport:
        # Exactly f+1: our own first, then the lowest member indices (deterministic, easy to audit).
        chosen = [signatures[self.index]] + [signatures[m] for m in sorted(signatures) if m != self.index]
        metadata, _ = decode_report(raw)
        report = SignedReport(
            raw=raw,
            context=self.context,
            signatures=tuple(chosen[: self.don.f + 1]),
            workflow_execution_id=metadata.workflow_execution_id,
            items=tuple(items),
        )
        self.accept_report(report, source="led")
        self._store.enqueue(
            (m for m in range(self.n) if m != self.index), "report", report_to_wire(report), self._now_ms()
        )
        return report

    async def _byzantine_lead(self) -> RoundOutcome:
        """TEST ONLY: propose flipped decisions; broadcast and deliver whatever report that yields."""
        # Everything it ever decided, reported or not: an attacker replays old settlements too.
        terms = self._store.list_terms(limit=self._max_batch)
        decisions = list(self._store.decisions_for(t.settlement_id for t in terms).values())
        if not decisions:
            return RoundOutcome("idle")
        flipped = [
            StoredDecision(
                d.settlement_id, _flip(d.decision), d.decided_at_s, d.terms_hash, d.reason, d.recorded_ms
            )
            for d in decisions
        ]
        items, raw = self._build(flipped)
        if self._byzantine == "garbage":
            raw = raw[:109] + secrets.token_bytes(32)
        own = sign_report(raw, self.context, self._key.private_key)
        _, signed = await self._broadcast_propose(items, raw)
        # Collect whatever honest nodes would sign for the flipped batch (nothing, if they check), and
        # otherwise pad with our own signature, which verify_report must refuse as a duplicate.
        signatures = [own] + [sig for _, sig in sorted(signed.items())]
        if len(signatures) < self.don.f + 1:
            signatures = [own] * (self.don.f + 1)
        forged = SignedReport(
            raw, self.context, tuple(signatures[: self.don.f + 1]), keccak(raw[109:]), tuple(items)
        )
        self.forged_reports.append(forged)
        for member in range(self.n):
            if member != self.index:
                with contextlib.suppress(CrossDvpError):
                    await self._transport.send(
                        member,
                        self._signer.seal(member, "report", report_to_wire(forged)),
                        timeout_s=self._peer_timeout_s,
                    )
        return RoundOutcome("no_quorum", forged, 1)
