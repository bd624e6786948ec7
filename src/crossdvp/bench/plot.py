"""The bench's chart: chain settle throughput against the report batch size (with the chain's
two-transfer ceiling and the end-to-end DvP rate), and the distribution of the end-to-end latency.

matplotlib is an optional dependency (`pip install -e '.[bench]'`; `make bench` installs it).
"""

from __future__ import annotations

from pathlib import Path

from crossdvp.bench.run import BenchReport
from crossdvp.errors import ConfigError

__all__ = ["save_chart"]


def save_chart(report: BenchReport, path: Path) -> Path:
    """Write the PNG to `path` and return it. Raises ConfigError if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: the chart is a file
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the chart needs matplotlib: pip install -e '.[bench]' (make bench does)") from None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    if report.sweep:
        sizes = [p.batch_size for p in report.sweep]
        left.plot(
            sizes, [p.settled_per_s for p in report.sweep], "o-", label="chain: items settled/s (evm_mine)"
        )
        left.plot(sizes, [p.locks_per_s for p in report.sweep], "s--", label="chain: locks/s (evm_mine)")
        for p in report.sweep:
            left.annotate(f"{p.settle_gas_per_item:,} gas/item", (p.batch_size, p.settled_per_s), fontsize=7)
    if report.chain_ceiling is not None:
        left.axhline(report.chain_ceiling.two_transfer_ceiling_per_s, color="grey", ls=":",
                     label="two-transfer ceiling (evm_mine)")  # fmt: skip
    if report.dvp_batches:
        runs = sorted(report.dvp_batches, key=lambda d: d.max_batch)
        left.plot(
            [d.max_batch for d in runs],
            [d.burst.dvp_per_s for d in runs],
            "D-",
            label=f"end-to-end DvP/s, devnet {runs[0].nodes} nodes (node report batch)",
        )
    for result in report.dvp:
        left.axhline(
            result.burst.dvp_per_s, ls="-.", lw=1, label=f"end-to-end DvP/s, devnet {result.nodes} nodes"
        )
        left.axhline(
            result.ceiling.two_transfer_ceiling_per_s,
            ls=":",
            lw=1,
            label=f"two-transfer ceiling, devnet {result.nodes}",
        )
    left.set_xscale("log")
    left.set_yscale("log")  # chain-only rates and end-to-end rates differ by orders of magnitude
    left.set_xlabel("report batch size (decisions per report)")
    left.set_ylabel("per second")
    left.set_title("Throughput vs batch size")
    left.legend(fontsize=7)
    head = report.headline()
    if head is not None:
        run = head.paced or head.burst
        right.hist(run.latencies_ms, bins=30, color="tab:blue", alpha=0.8)
        summary = run.latency_summary()
        for name, color in (("p50", "green"), ("p95", "orange"), ("p99", "red")):
            right.axvline(summary[name], color=color, ls="--", label=f"{name} {summary[name]:,.0f} ms")
        offered = "burst" if run.offered_per_s is None else f"{run.offered_per_s:,.1f} DvP/s offered"
        right.set_title(f"Later lock final -> both legs final\n({head.nodes} nodes, {offered})", fontsize=10)
        right.set_xlabel("ms")
        right.set_ylabel("settlements")
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no end-to-end run", ha="center", va="center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
