"""One oracle node: observe every network, decide, take part in rounds, deliver, share with peers.

The node is a set of small steps over its store — poll, decide, share (outbox), lead a round, deliver —
each safe to interrupt at any point (kill -9) and to run again. `step()` runs each once (tests drive
several nodes in one process with a manual clock); `run()` loops them concurrently for a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crossdvp.clock import Clock, SystemClock
from crossdvp.errors import CrossDvpError
from crossdvp.oracle.config import NodeConfig
from crossdvp.oracle.consensus import Consensus, RoundOutcome, leader_of, slot_of
from crossdvp.oracle.delivery import DeliveryScheduler
from crossdvp.oracle.errors import FinalityViolation, PeerMessageRejected, TermsConflict
from crossdvp.oracle.keys import NodeKey
from crossdvp.oracle.metrics import NodeMetrics
from crossdvp.oracle.peers import MAX_TERMS_PER_BATCH, PeerSigner, PeerTransport
from crossdvp.oracle.ports import Deliverer, Observer
from crossdvp.oracle.store import NodeStore, OutboxMessage, hex32
from crossdvp.oracle.wire import report_from_wire
from crossdvp.settlement.decision import LedgerView, decide
from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.report import DonConfig, ReportItem, WorkflowIdentity
from crossdvp.settlement.terms import Decision, Terms

__all__ = ["Node", "NodeSettings"]

log = logging.getLogger(__name__)

MAX_POLL_BACKOFF_MS = 30_000
OUTBOX_BACKOFF_MS = 500
MAX_OUTBOX_BACKOFF_MS = 30_000
OUTBOX_SINGLES_PER_TICK = 10  # unbatched shares (reports) sent to one peer per tick, one at a time
ACKED = frozenset({"ok", "duplicate", "conflict"})  # a conflict is final too: resending cannot fix it
# Between full decision passes, a pass evaluates only the settlements the store saw touched and those
# whose deadline a final time has reached; the full pass also retries any that could not be decided.
FULL_DECIDE_PASS_MS = 30_000
# Rounds a leader runs back to back while each completes a report (a backlog of decisions is reported
# at the rate rounds complete, not one report per consensus tick).
MAX_ROUNDS_PER_TICK = 20
# The run loop's decision passes start when a poll brings a lock or moves a final time, or when terms
# arrive; this tick only catches anything else (e.g. the periodic full pass) now and then.
DECIDE_TICK_MS = 1_000
# New terms and new reports start the outbox at once; the tick serves retries, which back off from
# OUTBOX_BACKOFF_MS.
OUTBOX_TICK_MS = OUTBOX_BACKOFF_MS


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything a node needs besides its ports, key and store (see config.py for meanings)."""

    index: int
    name: str
    don: DonConfig
    workflow: WorkflowIdentity
    poll_interval_ms: int = 500
    round_ms: int = 1000
    stagger_ms: int = 3000
    delivery_recheck_ms: int = 2000
    max_batch: int = 100
    peer_timeout_ms: int = 800
    byzantine: str | None = None  # TEST ONLY, see config.TestingSection

    @classmethod
    def from_config(cls, config: NodeConfig) -> NodeSettings:
        return cls(
            index=config.node.index,
            name=config.node_name,
            don=config.don_config(),
            workflow=config.workflow_identity(),
            poll_interval_ms=config.node.poll_interval_ms,
            round_ms=config.node.round_ms,
            stagger_ms=config.node.stagger_ms,
            delivery_recheck_ms=config.node.delivery_recheck_ms,
            max_batch=config.node.max_batch,
            peer_timeout_ms=config.node.peer_timeout_ms,
            byzantine=config.testing.byzantine,
        )


@dataclass
class _PollState:
    next_poll_ms: int = 0
    failures: int = 0
    last_ok_ms: int | None = None
    last_error: str | None = None
    halted: str | None = None  # a non-retryable observer error (e.g. a reorg deeper than finality)


class Node:
    """One DON member. Ports are injected: real adapters in a process, in-memory twins in tests."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        key: NodeKey,
        store: NodeStore,
        observers: Sequence[Observer],
        deliverers: Sequence[Deliverer],
        transport: PeerTransport,
        clock: Clock | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        if key.address != settings.don.signers[settings.index]:
            raise ValueError(f"key {key.address} is not DON signer {settings.index}")
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.metrics = metrics or NodeMetrics()
        self._observers = {o.network: o for o in observers}
        self._deliverers = {d.network: d for d in deliverers}
        self._transport = transport
        self._polls = {network: _PollState() for network in self._observers}
        # Wake-ups between the run loop's activities (see run()): each loop also runs on its own tick,
        # but work one activity makes for the next (an observation to decide on, a decision to report,
        # a report to share and deliver) starts it at once instead of at that tick.
        self._wake = {name: asyncio.Event() for name in ("decide", "consensus", "outbox", "delivery")}
        self._wake_poll = {network: asyncio.Event() for network in self._observers}
        self._lead_again_ms = 0
        self._next_full_decide_ms = 0
        self.signer = PeerSigner(
            key=key,
            index=settings.index,
            don_id=settings.don.don_id,
            config_version=settings.don.config_version,
            signers=settings.don.signers,
        )
        self.consensus = Consensus(
            index=settings.index,
            key=key,
            don=settings.don,
            workflow=settings.workflow,
            store=store,
            signer=self.signer,
            transport=transport,
            metrics=self.metrics,
            now_ms=self.clock.now_ms,
            report_networks=self._report_networks,
            max_batch=settings.max_batch,
            peer_timeout_ms=settings.peer_timeout_ms,
            byzantine=settings.byzantine,
            on_new_report=functools.partial(self._wake_up, "outbox", "delivery"),
        )
        self.delivery = DeliveryScheduler(
            index=settings.index,
            n=len(settings.don.signers),
            store=store,
            deliverers=self._deliverers,
            metrics=self.metrics,
            now_ms=self.clock.now_ms,
            stagger_ms=settings.stagger_ms,
            recheck_ms=settings.delivery_recheck_ms,
        )

    @property
    def index(self) -> int:
        return self.settings.index

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(sorted(self._observers))

    def _report_networks(self, items: Sequence[ReportItem]) -> set[str]:
        """The networks a report must reach: those of its items' legs (all networks if none is known)."""
        networks: set[str] = set()
        for terms in self.store.terms_many(i.settlement_id for i in items).values():
            networks |= set(terms.networks())
        return networks or set(self._deliverers)

    # -- terms -------------------------------------------------------------------------------------

    def register_terms(self, terms: Terms) -> bool:
        """Store terms and queue them for every peer (retried until acknowledged); True if new.

        Raises TermsConflict when the id already holds different terms.
        """
        (result,) = self.register_terms_many([terms])
        if isinstance(result, TermsConflict):
            raise result
        return result

    def register_terms_many(self, batch: Sequence[Terms]) -> list[bool | TermsConflict]:
        """register_terms for each of `batch` in one store transaction; per item True (new), False
        (the identical terms were known) or the TermsConflict register_terms would raise."""
        others = [m for m in range(len(self.settings.don.signers)) if m != self.index]
        results = self.store.add_terms_many(batch, self.clock.now_ms(), share_with=others)
        if any(result is True for result in results):
            self._wake_up("outbox", "decide")
        for terms, result in zip(batch, results, strict=True):
            if result is True:
                sid = hex32(terms.settlement_id)
                log.info(
                    "settlement %s registered (%d legs, deadline %d)",
                    sid,
                    len(terms.legs),
                    terms.deadline_s,
                    extra={"settlement_id": sid},
                )
        return results

    # -- observe and decide ------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Poll every network whose next poll is due; failures back off and never lose the cursor."""
        await asyncio.gather(*(self._poll(network) for network in self._observers))

    async def _poll(self, network: str) -> bool:
        """Poll `network` if it is due; True if it brought a new lock or moved the final time (what
        a decision can change on)."""
        state = self._polls[network]
        now = self.clock.now_ms()
        if state.halted is not None or now < state.next_poll_ms:
            return False
        stored = self.store.network_state(network)
        try:
            observed = await self._observers[network].poll(stored.cursor if stored else None)
            if observed.network != network:
                raise CrossDvpError(f"observer for {network} answered for {observed.network}")
        except FinalityViolation as exc:
            # A reorg deeper than the configured finality: our observations may be wrong. Stop reading
            # this network (decisions that need it stay PENDING) until an operator fixes the depth.
            state.halted = str(exc)
            self.metrics.polls.labels(network=network, outcome="error").inc()
            self.metrics.errors.labels(kind="finality_violation").inc()
            log.error("network %s halted: %s", network, exc, extra={"network": network})
            return False
        except Exception as exc:  # transport errors are retryable; anything else is retried too, slower
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"[:300]
            retryable = isinstance(exc, CrossDvpError) and exc.retryable
            self.metrics.polls.labels(network=network, outcome="error").inc()
            self.metrics.errors.labels(kind="observe_retryable" if retryable else "observe_error").inc()
            delay = min(MAX_POLL_BACKOFF_MS, self.settings.poll_interval_ms << min(state.failures, 8))
            if not retryable:
                delay = MAX_POLL_BACKOFF_MS
            state.next_poll_ms = now + delay
            log.warning(
                "poll of %s failed (%s); retrying in %d ms",
                network,
                state.last_error,
                delay,
                extra={"network": network},
            )
            return False
        new = self.store.record_poll(observed, self.clock.now_ms())
        moved = stored is None or observed.final_time_s != stored.final_time_s
        state.failures = 0
        state.last_error = None
        state.last_ok_ms = self.clock.now_ms()
        state.next_poll_ms = now + self.settings.poll_interval_ms
        self.metrics.polls.labels(network=network, outcome="ok").inc()
        self.metrics.observations.labels(network=network).inc(new)
        self.metrics.final_time.labels(network=network).set(observed.final_time_s)
        return new > 0 or moved

    def decide_pending(self) -> int:
        """Run the decision rule for registered, undecided settlements; returns how many decided.

        The rule's inputs for a settlement are its terms, its locks and the final times of its
        networks. So a pass evaluates only the settlements whose terms or locks were stored since the
        last pass (`NodeStore.take_touched`) and those whose deadline some network's final time has
        reached; every FULL_DECIDE_PASS_MS (and on the store's first pass, or after a network's first
        poll) it evaluates all of them. The locks of the evaluated settlements are
        read in one query, and the decisions of the pass are persisted in one transaction (before
        any of them can be signed)."""
        now = self.clock.now_ms()
        touched = self.store.take_touched()  # before any read: a write after this is in the next pass
        states = {s.network: s for s in self.store.network_states()}
        if touched is None or now >= self._next_full_decide_ms:
            self._next_full_decide_ms = now + FULL_DECIDE_PASS_MS
            undecided = self.store.undecided_terms()
            self.metrics.decide_passes.labels(kind="full").inc()
        else:
            latest_final = max((state.final_time_s for state in states.values()), default=None)
            undecided = self.store.undecided_terms(only=touched, deadline_by_s=latest_final)
            self.metrics.decide_passes.labels(kind="incremental").inc()
        self.metrics.decide_evaluated.inc(len(undecided))
        locks_by_settlement = self.store.locks_for_many(t.settlement_id for t in undecided)
        verdicts: list[tuple[Terms, Decision, int, str]] = []
        for terms in undecided:
            locks = locks_by_settlement.get(terms.settlement_id, ())
            views: dict[str, LedgerView] = {}
            for network in terms.networks():
                state = states.get(network)
                if state is not None:
                    views[network] = LedgerView(
                        network=network,
                        final_time_s=state.final_time_s,
                        locks=tuple(lock for lock in locks if lock.network == network),
                    )
            try:
                verdict = decide(terms, views)
            except SettlementError as exc:  # one bad observation must not block every other settlement
                self.metrics.errors.labels(kind="decide_error").inc()
                log.error(
                    "settlement %s: cannot decide: %s",
                    hex32(terms.settlement_id),
                    exc,
                    extra={"settlement_id": hex32(terms.settlement_id)},
                )
                continue
            if verdict.decided and verdict.decided_at_s is not None:
                verdicts.append((terms, verdict.decision, verdict.decided_at_s, verdict.reason))
        decided = 0
        for stored, new in self.store.record_decisions(verdicts, self.clock.now_ms()):
            if new:
                decided += 1
                sid = hex32(stored.settlement_id)
                self.metrics.decisions.labels(decision=stored.decision.name.lower()).inc()
                log.info(
                    "settlement %s decided %s at ledger time %d: %s",
                    sid,
                    stored.decision.name,
                    stored.decided_at_s,
                    stored.reason,
                    extra={"settlement_id": sid, "decision": stored.decision.name},
                )
        return decided

    # -- rounds, sharing, delivery -----------------------------------------------------------------

    def is_leader(self) -> bool:
        slot = slot_of(self.clock.now_ms(), self.settings.round_ms)
        return leader_of(slot, len(self.settings.don.signers)) == self.index

    async def consensus_tick(self) -> RoundOutcome | None:
        """Lead a round if this node leads the current slot; None otherwise."""
        if not self.is_leader():
            return None
        now = self.clock.now_ms()
        if now < self._lead_again_ms:
            return None
        outcome = await self.consensus.lead_round()
        if outcome.outcome == "no_quorum":
            # Followers may not have polled the lock yet (a leader proposes as soon as it decides, and
            # a follower that could not agree polls at once); ask again after about one poll, not in a
            # tight loop.
            self._lead_again_ms = now + min(self.settings.round_ms // 2, self.settings.poll_interval_ms)
        return outcome

    async def outbox_tick(self) -> None:
        """Share due terms/reports with every peer; acknowledged ones are done, others back off.

        Per peer, all due terms go as ONE "terms_batch" envelope (up to MAX_TERMS_PER_BATCH), then each
        due report, one request at a time: one envelope per (terms, peer) made hundreds of concurrent
        POSTs and signatures per tick, peers timed out, and the retries snowballed. A failed request
        ends that peer's turn, so a peer that is down gets one request per tick, not its backlog.
        """
        due = self.store.due_outbox(
            self.clock.now_ms(),
            per_kind={"terms": MAX_TERMS_PER_BATCH},
            default_limit=OUTBOX_SINGLES_PER_TICK,
        )
        by_member: dict[int, list[OutboxMessage]] = defaultdict(list)
        for message in due:
            by_member[message.member].append(message)
        await asyncio.gather(*(self._share_with(member, messages) for member, messages in by_member.items()))

    async def _share_with(self, member: int, messages: Sequence[OutboxMessage]) -> None:
        terms = [m for m in messages if m.kind == "terms"]
        requests = [(m.kind, m.body, [m]) for m in messages if m.kind != "terms"]
        if terms:
            requests.insert(0, ("terms_batch", {"terms": [m.body["terms"] for m in terms]}, terms))
        for kind, body, batch in requests:
            try:
                reply = await self._transport.send(
                    member,
                    self.signer.seal(member, kind, body),
                    timeout_s=self.settings.peer_timeout_ms / 1000,
                )
            except CrossDvpError:
                reply = None
            statuses = self._reply_statuses(kind, reply, len(batch))
            self.store.ack_outbox(m.id for m, status in zip(batch, statuses, strict=True) if status in ACKED)
            retry = [m for m, status in zip(batch, statuses, strict=True) if status not in ACKED]
            now = self.clock.now_ms()
            self.store.retry_outbox(
                {
                    m.id: now + min(MAX_OUTBOX_BACKOFF_MS, OUTBOX_BACKOFF_MS << min(m.attempts, 8))
                    for m in retry
                }
            )
            if any(m.attempts in (5, 20, 100) for m in retry):  # an operator should know a peer is stuck
                log.warning(
                    "node %d has not acknowledged %d %s share(s) after up to %d attempts",
                    member,
                    len(retry),
                    kind,
                    max(m.attempts for m in retry),
                )
            if reply is None:
                return

    @staticmethod
    def _reply_statuses(kind: str, reply: dict[str, Any] | None, count: int) -> list[object]:
        """One status per item sent; anything but a well-formed reply leaves every item unacknowledged."""
        if reply is None:
            return [None] * count
        if kind != "terms_batch":
            return [reply.get("status")]
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != count:
            return [None] * count
        return [r.get("status") if isinstance(r, dict) else None for r in results]

    async def delivery_tick(self) -> int:
        """Work on every due delivery and wait for all of them (step(); a process uses start_deliveries)."""
        if self.settings.byzantine is not None:
            await self._deliver_forged()
        return await self.delivery.tick()

    async def start_deliveries(self) -> None:
        """Start due deliveries as tasks of their own (the run loop's delivery step)."""
        if self.settings.byzantine is not None:
            await self._deliver_forged()
        self.delivery.start_due()

    async def _deliver_forged(self) -> None:
        """TEST ONLY: a Byzantine node tries to push its forged reports straight to the networks."""
        while self.consensus.forged_reports:
            forged = self.consensus.forged_reports.pop()
            for deliverer in self._deliverers.values():
                with contextlib.suppress(Exception):
                    await deliverer.deliver(forged)

    async def step(self) -> None:
        """One pass of every activity (tests; a process uses run())."""
        await self.poll_once()
        self.decide_pending()
        await self.outbox_tick()
        await self.consensus_tick()
        await self.delivery_tick()

    async def lead_while_complete(self) -> int:
        """consensus_tick, again at once while it completes a report (the run loop's consensus step);
        returns how many reports it completed. Stops at MAX_ROUNDS_PER_TICK, when this node's slot
        ends, or when a round does not complete (nothing left to report, or no quorum)."""
        completed = 0
        while completed < MAX_ROUNDS_PER_TICK:
            outcome = await self.consensus_tick()
            if outcome is None or outcome.outcome != "complete":
                break
            completed += 1
        return completed

    # -- peer messages -----------------------------------------------------------------------------

    async def handle_peer_message(self, envelope: object) -> tuple[int, dict[str, Any]]:
        """Authenticate and dispatch a peer message; returns (HTTP status, JSON reply).

        Drops (and counts by reason) anything PeerSigner.open rejects, malformed bodies, invalid terms
        and reports that fail verification; those answer 403 (authentication) or 422 (content).
        """
        try:
            message = self.signer.open(envelope)
        except PeerMessageRejected as exc:
            self.metrics.peer_dropped.labels(reason=exc.reason).inc()
            log.warning("peer message dropped (%s): %s", exc.reason, exc)
            return 403, {"status": "rejected", "reason": exc.reason}
        try:
            reply = self._dispatch(message.sender, message.kind, message.body)
        except PeerMessageRejected as exc:
            self.metrics.peer_dropped.labels(reason=exc.reason).inc()
            log.warning("peer message from node %d dropped (%s): %s", message.sender, exc.reason, exc)
            return 422, {"status": "rejected", "reason": exc.reason, "detail": str(exc)}
        except CrossDvpError as exc:  # e.g. a proposal whose report cannot be built; never fatal
            self.metrics.errors.labels(kind="peer_refused").inc()
            log.warning("peer %s from node %d refused: %s", message.kind, message.sender, exc)
            return 422, {"status": "rejected", "reason": "refused", "detail": str(exc)}
        self.metrics.peer_received.labels(kind=message.kind).inc()
        return 200, reply

    def _dispatch(self, sender: int, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        if kind == "terms":
            return self._register_shared(sender, [_parse_terms(body.get("terms", {}))])[0]
        if kind == "terms_batch":
            return {"status": "ok", "results": self._register_batch(sender, body.get("terms"))}
        if kind == "propose":
            reply = self.consensus.handle_propose(sender, body)
            if reply.get("status") == "partial":
                # The leader has decided what we have not: our last poll may be just behind its own.
                self._poll_soon()
            return reply
        new = self.consensus.accept_report(report_from_wire(body), source="peer")
        return {"status": "ok" if new else "duplicate"}

    def _register_batch(self, sender: int, raw: object) -> list[dict[str, Any]]:
        """One reply per item, in order: an invalid item is refused alone, never the items around it.

        Raises PeerMessageRejected ("malformed") only when `raw` is not a list of 1..MAX_TERMS_PER_BATCH.
        """
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TERMS_PER_BATCH:
            raise PeerMessageRejected(
                f"a terms batch is a list of 1 to {MAX_TERMS_PER_BATCH} terms", reason="malformed"
            )
        replies: list[dict[str, Any] | None] = []
        valid: list[Terms] = []
        for item in raw:
            # Every peer shares the terms every client registered with it too: most shares are terms
            # this node already holds. Identical JSON to the stored terms is a duplicate, unparsed.
            known = self.store.cached_terms(item.get("settlement_id")) if isinstance(item, dict) else None
            if known is not None and known.to_dict() == item:
                replies.append({"status": "duplicate"})
                continue
            try:
                valid.append(_parse_terms(item))
                replies.append(None)
            except PeerMessageRejected as exc:
                self.metrics.peer_dropped.labels(reason=exc.reason).inc()
                log.warning("terms from node %d dropped (%s): %s", sender, exc.reason, exc)
                replies.append({"status": "rejected", "reason": exc.reason, "detail": str(exc)})
        registered = iter(self._register_shared(sender, valid))
        return [reply if reply is not None else next(registered) for reply in replies]

    def _register_shared(self, sender: int, batch: Sequence[Terms]) -> list[dict[str, Any]]:
        """Store terms a peer shared (one transaction); per terms "ok", "duplicate" or "conflict"."""
        replies: list[dict[str, Any]] = []
        for terms, result in zip(batch, self.store.add_terms_many(batch, self.clock.now_ms()), strict=True):
            if isinstance(result, TermsConflict):
                log.error("node %d shared conflicting terms: %s", sender, result)
                replies.append({"status": "conflict", "detail": str(result)})
                continue
            if result:
                self._wake_up("decide")
                sid = hex32(terms.settlement_id)
                log.info("settlement %s registered (from node %d)", sid, sender, extra={"settlement_id": sid})
            replies.append({"status": "ok" if result else "duplicate"})
        return replies

    # -- status ------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        states = {s.network: s for s in self.store.network_states()}
        networks = {}
        for network, poll in sorted(self._polls.items()):
            stored = states.get(network)
            networks[network] = {
                "cursor": stored.cursor if stored else None,
                "final_time_s": stored.final_time_s if stored else None,
                "last_poll_ms": poll.last_ok_ms,
                "consecutive_failures": poll.failures,
                "last_error": poll.last_error,
                "halted": poll.halted,
            }
        return {
            "status": "ok",
            "node": self.settings.name,
            "index": self.index,
            "signer": self.settings.don.signers[self.index],
            "is_leader": self.is_leader(),
            "networks": networks,
            "deliverers": sorted(self._deliverers),
        }

    async def aclose(self) -> None:
        """Stop the proposals a round stopped waiting for; close the ports' connections."""
        await self.consensus.cancel_stragglers()
        for port in [*self._observers.values(), *self._deliverers.values()]:
            close = getattr(port, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # -- the process loop --------------------------------------------------------------------------

    def _wake_up(self, *names: str) -> None:
        for name in names:
            self._wake[name].set()

    def _poll_soon(self) -> None:
        """Poll every healthy network now rather than at its next interval."""
        for network, state in self._polls.items():
            if state.failures == 0 and state.halted is None:
                state.next_poll_ms = 0
                self._wake_poll[network].set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run every activity in its own loop until `stop` is set; errors are logged, never fatal.

        One observe loop per network: a ledger that holds its poll open (a long-poll while it has
        nothing new) must not hold up the other networks' polls, nor the decisions they allow. Each
        activity runs on its own tick and also as soon as the one before it made work for it: a poll
        that brought a lock or moved a final time starts a decision pass, a new decision starts the
        leader's round, a new complete report starts its sharing and delivery. So the time from a
        final lock to the report being sent is a few local steps, not a sum of ticks."""
        round_tick_ms = max(20, self.settings.round_ms // 5)
        observe_tick_ms = max(10, self.settings.poll_interval_ms // 4)
        loops: list[tuple[str, Callable[[], Awaitable[object]], int, asyncio.Event]] = [
            (
                "observe",
                functools.partial(self._observe, network),
                observe_tick_ms,
                self._wake_poll[network],
            )
            for network in self._observers
        ]
        loops += [
            # Polls that bring something, and new terms, start a pass; the tick is a backstop.
            ("decide", self._decide, DECIDE_TICK_MS, self._wake["decide"]),
            ("outbox", self.outbox_tick, OUTBOX_TICK_MS, self._wake["outbox"]),
            ("consensus", self._lead, round_tick_ms, self._wake["consensus"]),
            ("delivery", self.start_deliveries, 100, self._wake["delivery"]),
        ]
        tasks = [
            asyncio.create_task(self._loop(name, work, every_ms, stop, wake))
            for name, work, every_ms, wake in loops
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.delivery.stop()

    async def _observe(self, network: str) -> None:
        if await self._poll(network):
            self._wake_up("decide")

    async def _decide(self) -> None:
        if self.decide_pending():
            self._wake_up("consensus")

    async def _lead(self) -> None:
        paused_until = self._lead_again_ms
        await self.lead_while_complete()
        if self._lead_again_ms != paused_until:
            # A round found no quorum: lead again when its pause ends (at once if the round outlasted
            # it), not at a later tick.
            pause_ms = max(0, self._lead_again_ms - self.clock.now_ms())
            asyncio.get_running_loop().call_later(pause_ms / 1000, self._wake_up, "consensus")

    async def _loop(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        every_ms: int,
        stop: asyncio.Event,
        wake: asyncio.Event,
    ) -> None:
        """`work` every `every_ms`, and at once when `wake` is set (run() cancels the loops on stop)."""
        while not stop.is_set():
            wake.clear()  # what set it before now is covered by this run of `work`
            try:
                await work()
            except Exception as exc:  # a bug or an unexpected library error must not stop the node
                self.metrics.errors.labels(kind=f"{name}_unexpected").inc()
                log.exception("%s loop error: %s", name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=every_ms / 1000)


def _parse_terms(raw: Any) -> Terms:
    """Terms from a peer's JSON. Raises PeerMessageRejected ("invalid_terms") for anything invalid."""
    try:
        return Terms.from_dict(raw)  # rejects a non-mapping itself
    except (SettlementError, TypeError, ValueError, KeyError) as exc:
        raise PeerMessageRejected(f"invalid terms: {exc}", reason="invalid_terms") from exc
