"""Reading the DON's view of a settlement: each node's GET /v1/settlements/{id} answer, merged.

Nodes are asked, never trusted alone for an outcome: the desk reports the ledgers' own state as
delivered, and uses the nodes for what only they know (decision, report, signers, deliveries).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from crossdvp.settlement.errors import SettlementError
from crossdvp.settlement.terms import Decision, Leg, Terms

__all__ = ["decision_from_views", "node_deliveries", "problem_detail", "terms_from_views"]


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


def terms_from_views(settlement_id: bytes, views: list[dict[str, Any]]) -> Terms | None:
    for view in views:
        try:
            legs = tuple(
                Leg(
                    network=leg["network"],
                    asset=leg["asset"],
                    amount_minor=int(leg["amount_minor"]),
                    payer=leg["payer"],
                    payee=leg["payee"],
                )
                for leg in sorted(view["legs"], key=lambda item: int(item["index"]))
            )
            terms = Terms(settlement_id=settlement_id, deadline_s=int(view["deadline_s"]), legs=legs)
        except (KeyError, TypeError, ValueError, SettlementError):
            continue
        if _hex(terms.terms_hash) == str(view.get("terms_hash", "")).lower():
            return terms
    return None


def decision_from_views(views: list[dict[str, Any]]) -> tuple[Decision | None, int | None]:
    """The decision most nodes report (honest nodes never differ; a faulty one is outvoted here, and
    the ledgers' own state is what `status` reports as delivered anyway)."""
    decided = [
        (v["decision"]["decision"], v["decision"].get("decided_at_s")) for v in views if v.get("decision")
    ]
    if not decided:
        return None, None
    (name, at), _ = Counter(decided).most_common(1)[0]
    try:
        return Decision[name], None if at is None else int(at)
    except KeyError:
        return None, None


def node_deliveries(views: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """network -> (best delivery state any node reports, its reference)."""
    rank = {"delivered": 3, "pending": 2, "failed": 1, "not_delivered": 0}
    best: dict[str, tuple[str, str | None]] = {}
    for view in views:
        for report in view.get("reports") or []:
            for d in report.get("deliveries", []):
                network, state, ref = str(d["network"]), str(d["state"]), d.get("reference")
                current = best.get(network)
                if (
                    current is None
                    or rank.get(state, 0) > rank.get(current[0], 0)
                    or (current[1] is None and ref)
                ):
                    best[network] = (state, None if ref is None else str(ref))
    return best
