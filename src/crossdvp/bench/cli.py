"""`crossdvp bench`: print (and write) every figure of issue 7 beside its same-run ceiling."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from crossdvp.errors import ConfigError

__all__ = ["bench"]


def bench(
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    out: Annotated[
        Path | None, typer.Option(help="also write the JSON here (e.g. bench/results.json)")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="also save the chart here (PNG; needs matplotlib)")
    ] = None,
    nodes: Annotated[
        str, typer.Option(help="node counts, comma-separated (one devnet each), e.g. 4,7,10")
    ] = "4",
    batch_sizes: Annotated[str, typer.Option(help="report batch sizes for the chain sweep")] = "1,10,100,500",
    report_batch_sizes: Annotated[
        str,
        typer.Option(
            help="also run end to end with the nodes' report batch (max_batch) at each of these sizes, "
            "on the first node count, e.g. 1,10,100,500 (one devnet each; default: none)"
        ),
    ] = "",
    settlements: Annotated[
        int,
        typer.Option(
            help="DvPs in the end-to-end burst of each node count (big enough that block space, not "
            "the pipeline's fixed latency of about 5 blocks, sets the run's length)"
        ),
    ] = 2000,
    batch_axis_settlements: Annotated[
        int, typer.Option(help="DvPs in the burst of each --report-batch-sizes run")
    ] = 500,
    paced_s: Annotated[
        float, typer.Option(help="seconds of paced load at half the burst rate (0: skip)")
    ] = 10.0,
    paced_rate: Annotated[
        float | None,
        typer.Option(
            help="DvPs per second of the paced load instead of half the burst's rate (the issue's "
            "latency target is at half; a lower rate shows the pipeline's unloaded latency)"
        ),
    ] = None,
    transfers: Annotated[int, typer.Option(help="ERC-20 transfers for each two-transfer ceiling")] = 2000,
    sweep_settlements: Annotated[int, typer.Option(help="settlements per batch size in the sweep")] = 500,
    payments_holds: Annotated[int, typer.Option(help="holds per database in the ledger bench")] = 4000,
    postgres_url: Annotated[
        str, typer.Option(help="PostgreSQL server (scratch databases are created and dropped)")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    skip_postgres: Annotated[bool, typer.Option(help="no PostgreSQL (and no pgbench)")] = False,
    skip_chain: Annotated[bool, typer.Option(help="skip gas, baselines and the batch-size sweep")] = False,
    skip_dvp: Annotated[bool, typer.Option(help="skip the end-to-end devnet runs")] = False,
    skip_payments: Annotated[bool, typer.Option(help="skip the payment ledger figures")] = False,
    block_gas_limit: Annotated[
        int | None,
        typer.Option(
            help="block gas limit of every devnet's anvil (its --gas-limit; default: anvil's "
            "30,000,000, which at about 210,000 gas per DvP caps 1 s blocks near 143 DvP/s); raise "
            "it, e.g. 300000000, to measure the machine's limit instead of the chain's"
        ),
    ] = None,
    block_time: Annotated[
        float,
        typer.Option(
            "--block-time",
            metavar="S",
            help="seconds between blocks of every devnet's chain; fractions allowed down to 0.05, "
            "e.g. 0.1 for ten blocks a second (the nodes poll every quarter block)",
        ),
    ] = 1.0,
    finality_depth: Annotated[
        int,
        typer.Option(
            "--finality-depth", metavar="D", help="confirmations every devnet's nodes wait for (>= 1)"
        ),
    ] = 2,
    work_dir: Annotated[
        Path | None, typer.Option(help="keep logs and devnets here (default: a temp dir)")
    ] = None,
    profile_dir: Annotated[
        Path | None,
        typer.Option(
            help="sample node-0 and the ledger during each burst, and the ledger bench servers, with "
            "py-spy; write the raw profiles here and print their hot spots"
        ),
    ] = None,
) -> None:
    """Measure throughput, latency, gas and the ledger's rate, each beside a ceiling measured in the
    same run (the two-transfer ceiling, an HTLC swap, pgbench). A program that prints figures: it
    never judges them; the issue's targets are printed beside them."""
    from crossdvp.bench.run import BenchOptions, parse_sizes, run_bench

    try:
        options = BenchOptions(
            nodes=parse_sizes(nodes, option="--nodes"),
            batch_sizes=parse_sizes(batch_sizes, option="--batch-sizes"),
            report_batch_sizes=parse_sizes(report_batch_sizes, option="--report-batch-sizes", empty_ok=True),
            settlements=settlements,
            batch_axis_settlements=batch_axis_settlements,
            paced_s=paced_s,
            paced_rate=paced_rate,
            transfers=transfers,
            sweep_settlements=sweep_settlements,
            payments_holds=payments_holds,
            postgres_url=None if skip_postgres else postgres_url,
            chain=not skip_chain,
            dvp=not skip_dvp,
            payments=not skip_payments,
            block_gas_limit=block_gas_limit,
            block_time_s=block_time,
            finality_depth=finality_depth,
            work_dir=work_dir,
            profile_dir=profile_dir,
            command="crossdvp bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "crossdvp bench",
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    # `timeout`, CI cancellation and `kill` send SIGTERM; turned into SystemExit it unwinds the run's
    # `finally` blocks, which stop every anvil, ledger and node by PID instead of orphaning them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_bench(options, progress=lambda line: typer.echo(line, err=True))
    results = report.to_dict()
    text = json.dumps(results, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        typer.echo(f"wrote {out}", err=True)
    if plot is not None:
        from crossdvp.bench.plot import save_chart

        try:
            typer.echo(f"wrote {save_chart(report, plot)}", err=True)
        except ConfigError as exc:
            typer.echo(f"chart not written: {exc}", err=True)
    if profile_dir is not None:
        from crossdvp.bench.profile import describe_profiles

        for directory in (profile_dir, *sorted(p for p in profile_dir.iterdir() if p.is_dir())):
            for line in describe_profiles(directory):
                typer.echo(line, err=True)
    if as_json:
        typer.echo(text)
        return
    typer.echo(_summary(results))


def _summary(r: dict[str, object]) -> str:
    """A short human-readable table of the headline figures, after the devnets' chain: block time
    and finality depth, and the block gas limit when it is not anvil's default (the DvP rate and
    its ceiling depend on all three)."""
    lines = []
    run = r.get("run")
    block_time_s = run.get("block_time_s") if isinstance(run, dict) else None
    finality_depth = run.get("finality_depth") if isinstance(run, dict) else None
    if isinstance(block_time_s, int | float):
        lines.append(f"{'block_time_s':<28} {block_time_s:g} (devnets; finality depth {finality_depth})")
    block_gas_limit = run.get("block_gas_limit") if isinstance(run, dict) else None
    if isinstance(block_gas_limit, int):
        lines.append(f"{'block_gas_limit':<28} {block_gas_limit:,} (devnets; anvil's default: 30,000,000)")
    for key in ("dvp_per_s", "two_transfer_ceiling_per_s", "ratio", "latency_ms", "htlc_gas_per_leg"):
        lines.append(f"{key:<28} {r.get(key)}")
    gas = r.get("gas")
    if isinstance(gas, dict):
        for key in (
            "lock",
            "lock_with_permit",
            "settle_item_batch_1",
            "settle_item_batch_100",
            "per_asset_leg",
        ):
            lines.append(f"gas.{key:<24} {gas.get(key)}")
    payments = r.get("payments")
    if isinstance(payments, dict):
        for key in ("sqlite_holds_per_s", "postgres_holds_per_s", "pgbench_tps"):
            lines.append(f"payments.{key:<19} {payments.get(key)}")
    return "\n".join(lines)
