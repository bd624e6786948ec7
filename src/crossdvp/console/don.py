"""The DON page's view: each node's health, what it last observed per network, and its counters
(rounds led, signatures, reports, deliveries, errors) from its Prometheus metrics."""

from __future__ import annotations

from collections.abc import Sequence

from crossdvp.console.config import ConsoleConfig
from crossdvp.console.facts import NodeProbe, metric_total
from crossdvp.console.views import DonView, NodeNetworkView, NodeView

__all__ = ["build_don"]


def _position(network: str, cursor: object) -> str:
    if cursor is None:
        return "not started"
    text = str(cursor)
    if network.startswith("eip155:"):
        return f"block {text.partition(':')[0]}"
    return f"event {text}"


def _node_view(probe: NodeProbe) -> NodeView:
    health = probe.health or {}
    networks = tuple(
        NodeNetworkView(
            network=net,
            position=_position(net, info.get("cursor")),
            final_time_s=info.get("final_time_s"),
            last_poll_s=None if info.get("last_poll_ms") is None else int(info["last_poll_ms"]) // 1000,
            failures=int(info.get("consecutive_failures") or 0),
            last_error=info.get("last_error"),
            halted=bool(info.get("halted")),
        )
        for net, info in sorted((health.get("networks") or {}).items())
    )
    m = probe.metrics
    kinds: dict[str, int] = {}
    for sample in m:
        if sample.name == "crossdvp_node_errors_total":
            kind = dict(sample.labels).get("kind", "?")
            kinds[kind] = kinds.get(kind, 0) + int(sample.value)
    return NodeView(
        name=probe.endpoint.name,
        url=probe.endpoint.url,
        signer=str(health.get("signer") or probe.endpoint.signer).lower(),
        up=probe.up,
        error=probe.error,
        is_leader=bool(health.get("is_leader")),
        networks=networks,
        rounds_led=metric_total(m, "crossdvp_node_rounds_total", outcome="complete"),
        rounds_without_quorum=metric_total(m, "crossdvp_node_rounds_total", outcome="no_quorum"),
        signatures=metric_total(m, "crossdvp_node_signatures_total"),
        reports=metric_total(m, "crossdvp_node_reports_total"),
        deliveries=metric_total(m, "crossdvp_node_deliveries_total"),
        errors=sum(kinds.values()),
        errors_by_kind=tuple(sorted((k, v) for k, v in kinds.items() if v)),
        probed_at_s=probe.probed_at_ms // 1000,
    )


def build_don(config: ConsoleConfig, probes: Sequence[NodeProbe]) -> DonView:
    return DonView(nodes=tuple(_node_view(p) for p in probes), f=config.f)
