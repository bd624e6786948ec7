"""The settlement pages' views, from facts: merge what the nodes say with what each ledger shows.

The nodes know the terms, their decisions and the report; the ledgers are the truth about locks and
outcomes (an escrow event, a hold's state). A settlement is SETTLED or ABORTED here only when the
ledgers show every leg final, not when a node says it delivered. Pure functions; `now_s` and every
fact are arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crossdvp.console._lookups import Lookups
from crossdvp.console.config import ConsoleConfig
from crossdvp.console.facts import ChainFacts, LedgerFacts, NodeProbe
from crossdvp.console.format import short_hex, short_hold_id
from crossdvp.console.views import (
    DeliveryView,
    Evidence,
    LegView,
    Movement,
    NodeDecision,
    PartyRef,
    SettlementDetail,
    SettlementRow,
    SignerRef,
    TimelineStep,
)

__all__ = [
    "build_detail",
    "build_rows",
    "filter_rows",
    "merge_node_views",
    "settlement_status",
]

_DELIVERY_RANK = {"delivered": 3, "pending": 2, "failed": 1, "not_delivered": 0}
# Leg states after which nothing more happens to the leg (under the decision the ledgers applied).
_SETTLED_STATES = frozenset({"settled", "owed to payee", "claimed by payee"})
_REFUNDED_STATES = frozenset({"refunded", "owed to payer", "claimed by payer", "not locked"})
_FINAL_STATES = _SETTLED_STATES | _REFUNDED_STATES | {"reclaimed"}

# -- merging the nodes' views ------------------------------------------------------------------------


def merge_node_views(probes: Sequence[NodeProbe]) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    """Settlement id -> [(node name, that node's view)] over the nodes that answered."""
    merged: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for probe in probes:
        for view in probe.settlements:
            merged.setdefault(str(view["settlement_id"]).lower(), []).append((probe.endpoint.name, view))
    return merged


def _report(views: Sequence[tuple[str, Mapping[str, Any]]]) -> Mapping[str, Any] | None:
    reports = [view["report"] for _, view in views if view.get("report")]
    return reports[0] if reports else None


def _deliveries(views: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[DeliveryView, ...]:
    """Per network, the furthest delivery state any node reached (each node tracks its own attempts)."""
    best: dict[str, Mapping[str, Any]] = {}
    for _, view in views:
        for report in view.get("reports") or ([view["report"]] if view.get("report") else []):
            for d in report.get("deliveries", []):
                current = best.get(d["network"])
                if current is None or _DELIVERY_RANK.get(d["state"], 0) > _DELIVERY_RANK.get(
                    current["state"], 0
                ):
                    best[d["network"]] = d
    return tuple(
        DeliveryView(
            network=net,
            state=str(d["state"]),
            reference=d.get("reference"),
            attempts=int(d.get("attempts", 0)),
            detail=d.get("detail"),
        )
        for net, d in sorted(best.items())
    )


def _decisions(views: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[NodeDecision, ...]:
    return tuple(
        NodeDecision(
            node=name,
            decision=str(view["decision"]["decision"]),
            decided_at_s=view["decision"].get("decided_at_s"),
            reason=str(view["decision"].get("reason", "")),
        )
        for name, view in views
        if view.get("decision")
    )


# -- legs -----------------------------------------------------------------------------------------


def _chain_leg(
    ctx: Lookups, sid: str, terms_hash: str, deadline_s: int, index: int, leg: Mapping[str, Any]
) -> LegView:
    events = ctx.events.get((sid, index), [])
    locked = next((e for e in events if e.kind == "locked"), None)
    outcome = next(
        (e for e in reversed(events) if e.kind in ("settled", "aborted", "owed", "claimed", "reclaimed")),
        None,
    )
    amount = ctx.money(leg["network"], leg["asset"], int(leg["amount_minor"]))
    base = {
        "index": index,
        "network": leg["network"],
        "kind": "chain",
        "asset": leg["asset"],
        "amount": amount,
        "payer": ctx.party(leg["payer"]),
        "payee": ctx.party(leg["payee"]),
    }
    if locked is None:
        return LegView(**base, state="awaiting lock")
    matches = (
        locked.token == str(leg["asset"]).lower()
        and locked.amount == int(leg["amount_minor"])
        and locked.party == str(leg["payer"]).lower()
        and locked.payee == str(leg["payee"]).lower()
        and locked.terms_hash == terms_hash
        and locked.deadline_s == deadline_s
    )
    lock = Evidence(time_s=locked.block_time_s, tx_hash=locked.tx_hash, block_number=locked.block_number)
    if outcome is None:
        return LegView(
            **base, state="locked" if matches else "lock mismatch", lock=lock, lock_matches=matches
        )
    state = {"settled": "settled", "aborted": "refunded", "reclaimed": "reclaimed"}.get(outcome.kind)
    if state is None:  # owed / claimed: whom the escrow owes (or paid) says which decision applied
        towards = "payee" if outcome.party == locked.payee else "payer"
        state = f"{'owed to' if outcome.kind == 'owed' else 'claimed by'} {towards}"
    evidence = Evidence(
        time_s=outcome.block_time_s, tx_hash=outcome.tx_hash, block_number=outcome.block_number
    )
    return LegView(**base, state=state, lock=lock, lock_matches=matches, outcome=evidence, final=True)


def _ledger_leg(
    ctx: Lookups, sid: str, terms_hash: str, deadline_s: int, index: int, leg: Mapping[str, Any]
) -> LegView:
    hold = ctx.holds.get((sid, index))
    base = {
        "index": index,
        "network": leg["network"],
        "kind": "ledger",
        "asset": leg["asset"],
        "amount": ctx.money(leg["network"], leg["asset"], int(leg["amount_minor"])),
        "payer": ctx.party(leg["payer"]),
        "payee": ctx.party(leg["payee"]),
    }
    if hold is None:
        return LegView(**base, state="awaiting lock")
    matches = (
        hold.amount_minor == int(leg["amount_minor"])
        and hold.currency == leg["asset"]
        and hold.payer_account == leg["payer"]
        and hold.payee_account == leg["payee"]
        and hold.terms_hash == terms_hash
        and hold.deadline_s == deadline_s
    )
    lock = Evidence(time_s=hold.placed_at_s, hold_id=hold.hold_id)
    if hold.state == "held":
        return LegView(
            **base, state="locked" if matches else "lock mismatch", lock=lock, lock_matches=matches
        )
    state = {"settled": "settled", "released": "refunded", "reclaimed": "reclaimed"}.get(
        hold.state, hold.state
    )
    report = hold.workflow_execution_id
    evidence = Evidence(
        time_s=hold.final_at_s, hold_id=hold.hold_id, note=f"report {short_hex(report)}" if report else ""
    )
    return LegView(**base, state=state, lock=lock, lock_matches=matches, outcome=evidence, final=True)


def _other_leg(ctx: Lookups, index: int, leg: Mapping[str, Any]) -> LegView:
    return LegView(
        index=index,
        network=leg["network"],
        kind="other",
        asset=leg["asset"],
        amount=ctx.money(leg["network"], leg["asset"], int(leg["amount_minor"])),
        payer=ctx.party(leg["payer"]),
        payee=ctx.party(leg["payee"]),
        state="locked" if leg.get("locked") else "awaiting lock",
    )


def _legs(ctx: Lookups, view: Mapping[str, Any], decision: str | None) -> tuple[LegView, ...]:
    sid, terms_hash, deadline_s = (
        str(view["settlement_id"]).lower(),
        str(view["terms_hash"]),
        int(view["deadline_s"]),
    )
    legs: list[LegView] = []
    for index, leg in enumerate(view["legs"]):
        kind = ctx.kind(leg["network"])
        if kind == "chain":
            built = _chain_leg(ctx, sid, terms_hash, deadline_s, index, leg)
        elif kind == "ledger":
            built = _ledger_leg(ctx, sid, terms_hash, deadline_s, index, leg)
        else:
            built = _other_leg(ctx, index, leg)
        if decision == "ABORT" and built.state == "awaiting lock":
            # Nothing was locked on this leg, so the abort has nothing to refund there: it is final.
            built = dataclasses.replace(built, state="not locked", final=True)
        legs.append(built)
    return tuple(legs)


def settlement_status(legs: Sequence[LegView], decision: str | None, has_report: bool) -> str:
    """The console's status: final states come from the ledgers, earlier ones from the nodes.

    settled: every leg paid to its payee; aborted: every leg refunded or never locked under ABORT;
    reclaimed: a locker took a lock back after the grace period; mixed: final legs that disagree
    (should never happen; shown rather than hidden). Before that: signed (a report with f+1
    signatures exists), decided, locked (every leg has a matching lock), locking, registered.
    """
    if legs and all(leg.final for leg in legs):
        states = {leg.state for leg in legs}
        if states <= _SETTLED_STATES:
            return "settled"
        if states <= _REFUNDED_STATES and decision == "ABORT":
            return "aborted"
        return "reclaimed" if "reclaimed" in states and states <= _FINAL_STATES else "mixed"
    if has_report:
        return "signed"
    if decision is not None:
        return "decided"
    if legs and all(leg.state == "locked" or leg.final for leg in legs):
        return "locked"
    if any(leg.lock is not None for leg in legs):
        return "locking"
    return "registered"


def _row(ctx: Lookups, sid: str, views: Sequence[tuple[str, Mapping[str, Any]]]) -> SettlementRow:
    view = views[0][1]
    decisions = _decisions(views)
    decision = decisions[0].decision if decisions else None
    legs = _legs(ctx, view, decision)
    return SettlementRow(
        settlement_id=sid,
        status=settlement_status(legs, decision, _report(views) is not None),
        decision=decision,
        deadline_s=int(view["deadline_s"]),
        legs=legs,
        known_by=len(views),
        node_count=len(ctx.config.nodes),
    )


def build_rows(
    config: ConsoleConfig, probes: Sequence[NodeProbe], chain: ChainFacts, ledger: LedgerFacts
) -> tuple[SettlementRow, ...]:
    """Every settlement any node knows, latest deadline first."""
    ctx = Lookups(config, chain, ledger)
    rows = [_row(ctx, sid, views) for sid, views in merge_node_views(probes).items()]
    rows.sort(key=lambda r: (-r.deadline_s, r.settlement_id))
    return tuple(rows)


def filter_rows(
    rows: Iterable[SettlementRow], *, status: str | None, party: str | None
) -> tuple[SettlementRow, ...]:
    """Rows with exactly `status` (if given) and a leg whose payer or payee matches `party`: its name,
    its chain address or account id, case-insensitively, as a substring."""
    needle = (party or "").strip().lower()
    out = []
    for row in rows:
        if status and row.status != status:
            continue
        if needle:
            refs = [ref for leg in row.legs for ref in (leg.payer, leg.payee)]
            if not any(needle in ref.id.lower() or needle in (ref.name or "").lower() for ref in refs):
                continue
        out.append(row)
    return tuple(out)


# -- one settlement ---------------------------------------------------------------------------------


def _signers(ctx: Lookups, report: Mapping[str, Any] | None) -> tuple[SignerRef, ...]:
    if report is None:
        return ()
    return tuple(
        SignerRef(str(s).lower(), ctx.signer_names.get(str(s).lower())) for s in report.get("signers", [])
    )


def _movements(ctx: Lookups, legs: Sequence[LegView]) -> tuple[Movement, ...]:
    """Per locked leg: paid (payer -> payee), refunded/reclaimed (escrow or hold -> payer), or still
    held (payer -> escrow or hold)."""
    out: list[Movement] = []
    for leg in legs:
        if leg.lock is None:
            continue
        custody = (
            ctx.party(ctx.config.chain.asset.escrow)
            if leg.kind == "chain"
            else PartyRef(leg.lock.hold_id or "", "ledger hold")
        )
        if leg.state in ("settled", "owed to payee", "claimed by payee"):
            outcome = "paid" if leg.state != "owed to payee" else "owed to payee"
            out.append(
                Movement(leg.index, leg.network, leg.amount, leg.payer, leg.payee, outcome, leg.outcome)
            )
        elif leg.state in ("refunded", "owed to payer", "claimed by payer", "reclaimed"):
            out.append(
                Movement(leg.index, leg.network, leg.amount, custody, leg.payer, leg.state, leg.outcome)
            )
        else:
            out.append(Movement(leg.index, leg.network, leg.amount, leg.payer, custody, "held", leg.lock))
    return tuple(out)


def _evidence_text(evidence: Evidence | None) -> str:
    if evidence is None:
        return ""
    if evidence.tx_hash:
        return f"tx {short_hex(evidence.tx_hash)} in block {evidence.block_number}"
    if evidence.hold_id:
        return f"hold {short_hold_id(evidence.hold_id)}" + (f", {evidence.note}" if evidence.note else "")
    return evidence.note


def _timeline(
    ctx: Lookups,
    row: SettlementRow,
    decisions: Sequence[NodeDecision],
    signers: Sequence[SignerRef],
    deliveries: Sequence[DeliveryView],
) -> tuple[TimelineStep, ...]:
    f = ctx.config.f
    steps = [
        TimelineStep(
            "Registered",
            done=row.known_by > 0,
            detail=f"known to {row.known_by} of {row.node_count} nodes (at least {f + 1} needed to decide)",
        )
    ]
    for leg in row.legs:
        label = f"Leg {leg.index} locked on {leg.network}"
        if leg.lock is None:
            steps.append(
                TimelineStep(
                    label,
                    done=False,
                    detail=f"{leg.state}: {leg.payer.label} has not locked yet"
                    if leg.state == "awaiting lock"
                    else leg.state,
                    failed=leg.state == "not locked",
                )
            )
        else:
            mismatch = leg.lock_matches is False
            detail = _evidence_text(leg.lock) + (" — does not match the terms" if mismatch else "")
            steps.append(
                TimelineStep(label, done=not mismatch, time_s=leg.lock.time_s, detail=detail, failed=mismatch)
            )
    if decisions:
        first = decisions[0]
        agreeing = [d.node for d in decisions if d.decision == first.decision]
        steps.append(
            TimelineStep(
                f"Decided {first.decision}",
                done=True,
                time_s=first.decided_at_s,
                detail=f"by {', '.join(agreeing)}" + (f" — {first.reason}" if first.reason else ""),
            )
        )
    else:
        steps.append(
            TimelineStep("Decided", done=False, detail="waiting for every lock, or for the deadline")
        )
    if signers:
        names = ", ".join(s.node or short_hex(s.address) for s in signers)
        steps.append(
            TimelineStep(
                "Report signed", done=True, detail=f"by {names} ({len(signers)} signatures, f+1 = {f + 1})"
            )
        )
    else:
        steps.append(TimelineStep("Report signed", done=False, detail=f"needs {f + 1} signatures"))
    by_network = {d.network: d for d in deliveries}
    for network in dict.fromkeys(leg.network for leg in row.legs):
        legs = [leg for leg in row.legs if leg.network == network]
        outcomes = [leg.outcome for leg in legs if leg.outcome is not None]
        delivery = by_network.get(network)
        applied = all(leg.final for leg in legs)
        if applied and outcomes:
            ev = outcomes[0]
            steps.append(
                TimelineStep(
                    f"Delivered to {network}", done=True, time_s=ev.time_s, detail=_evidence_text(ev)
                )
            )
        elif delivery is not None:
            steps.append(
                TimelineStep(
                    f"Delivered to {network}",
                    done=delivery.state == "delivered",
                    detail=f"{delivery.state.replace('_', ' ')} after {delivery.attempts} attempt(s)"
                    + (f": {delivery.detail}" if delivery.detail else ""),
                    failed=delivery.state == "failed",
                )
            )
        else:
            steps.append(
                TimelineStep(
                    f"Delivered to {network}", done=applied, detail="nothing to apply" if applied else ""
                )
            )
    final_times = [
        leg.outcome.time_s for leg in row.legs if leg.outcome is not None and leg.outcome.time_s is not None
    ]
    final = row.status in ("settled", "aborted", "reclaimed", "mixed")
    steps.append(
        TimelineStep(
            f"Final: {row.status.upper()}" if final else "Final",
            done=final,
            time_s=max(final_times) if final and final_times else None,
            failed=row.status == "mixed",
        )
    )
    return tuple(steps)


def build_detail(
    config: ConsoleConfig,
    views: Sequence[tuple[str, Mapping[str, Any]]],
    chain: ChainFacts,
    ledger: LedgerFacts,
) -> SettlementDetail | None:
    """One settlement from the views of the nodes that know it; None if none does."""
    if not views:
        return None
    ctx = Lookups(config, chain, ledger)
    sid = str(views[0][1]["settlement_id"]).lower()
    row = _row(ctx, sid, views)
    decisions = _decisions(views)
    report = _report(views)
    signers = _signers(ctx, report)
    deliveries = _deliveries(views)
    return SettlementDetail(
        row=row,
        terms_hash=str(views[0][1]["terms_hash"]),
        timeline=_timeline(ctx, row, decisions, signers, deliveries),
        decisions=decisions,
        execution_id=None if report is None else report.get("execution_id"),
        signers=signers,
        deliveries=deliveries,
        movements=_movements(ctx, row.legs),
    )
