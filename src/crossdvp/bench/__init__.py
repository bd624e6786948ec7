"""`crossdvp bench`: the performance figures of issue 7, each measured beside a ceiling from the same
run — end-to-end DvP throughput and latency on a devnet against the chain's two-transfer ceiling,
the escrow's gas against a classic HTLC swap, the ledger's holds/s against pgbench.

A program that prints figures, never a test: nothing here asserts a rate.
"""

from __future__ import annotations

from crossdvp.bench.run import TARGETS, BenchOptions, BenchReport, run_bench

__all__ = ["TARGETS", "BenchOptions", "BenchReport", "run_bench"]
