"""Prometheus metrics of one node, in a registry of its own (several nodes may share a test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """Counters and histograms served at /metrics. Label values are short fixed words."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.observations = Counter(
            "crossdvp_node_observations", "Final locks observed", ["network"], registry=r
        )
        self.polls = Counter(
            "crossdvp_node_polls", "Network polls by outcome", ["network", "outcome"], registry=r
        )
        self.final_time = Gauge(
            "crossdvp_node_final_time_seconds", "Final-time watermark per network", ["network"], registry=r
        )
        self.decisions = Counter("crossdvp_node_decisions", "Decisions reached", ["decision"], registry=r)
        self.decide_passes = Counter(
            "crossdvp_node_decide_passes", "Decision passes, full or incremental", ["kind"], registry=r
        )
        self.decide_evaluated = Counter(
            "crossdvp_node_decide_evaluated", "Undecided settlements put through the rule", registry=r
        )
        self.rounds = Counter("crossdvp_node_rounds", "Rounds led, by outcome", ["outcome"], registry=r)
        self.signatures = Counter(
            "crossdvp_node_signatures", "Report signatures made by this node", ["role"], registry=r
        )
        self.reports = Counter("crossdvp_node_reports", "Complete reports accepted", ["source"], registry=r)
        self.deliveries = Counter(
            "crossdvp_node_deliveries",
            "Delivery attempts by network and outcome",
            ["network", "outcome"],
            registry=r,
        )
        self.peer_dropped = Counter(
            "crossdvp_node_peer_messages_dropped", "Peer messages dropped", ["reason"], registry=r
        )
        self.peer_received = Counter(
            "crossdvp_node_peer_messages_received", "Peer messages accepted", ["kind"], registry=r
        )
        self.errors = Counter("crossdvp_node_errors", "Errors by kind", ["kind"], registry=r)
        self.decision_latency = Histogram(
            "crossdvp_node_registration_to_report_seconds",
            "From terms registration at this node to a complete report containing them",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.delivery_latency = Histogram(
            "crossdvp_node_report_to_delivered_seconds",
            "From a complete report to its confirmed delivery on a network",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
