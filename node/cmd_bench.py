"""``dmchain bench``: the cluster benchmark (see bench/harness.py)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

QUICK_PBFT, QUICK_POS = 4, 2
QUICK_RATE, QUICK_WARMUP_S, QUICK_DURATION_S = 50.0, 2.0, 8.0


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--sweep takes comma-separated rates") from exc
    if not rates:
        raise argparse.ArgumentTypeError("--sweep needs at least one rate")
    return rates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--out", type=Path, required=True, help="directory for the report")
    parser.add_argument("--pbft", type=int, default=10, help="PBFT replicas (default 10)")
    parser.add_argument("--pos", type=int, default=8, help="PoS validators (default 8)")
    parser.add_argument("--base-port", type=int, default=30000, help="first p2p port")
    parser.add_argument("--attach", type=Path, help="testnet dir of a running cluster to use")
    parser.add_argument("--rate", type=float, default=400.0, help="offered tx/s (open loop)")
    parser.add_argument("--warmup", type=float, default=10.0, help="warm-up seconds")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument(
        "--sweep", type=_rates, default=[], help="rates to step through first, e.g. 100,200,400"
    )
    parser.add_argument("--sweep-duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--tick-ms", type=int, default=100, help="send cadence per node")
    parser.add_argument(
        "--netem-ms", type=float, default=0.0, help="netem delay per node (root, namespaces)"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to settle")
    parser.add_argument("--status-cap", type=int, default=200_000, help="statuses to read back")
    parser.add_argument("--keep", action="store_true", help="leave the launched cluster up")
    parser.add_argument(
        "--profile", action="store_true", help="run node00 and the observer under cProfile"
    )
    parser.add_argument(
        "--batch-max-txs",
        type=int,
        default=0,
        help="node limit batch_max_txs for a launched testnet (proposals hold up to 4x)",
    )
    parser.add_argument(
        "--empty-block-interval-ms",
        type=int,
        default=0,
        help="node limit empty_block_interval_ms for a launched testnet (node default 250)",
    )
    parser.add_argument(
        "--pbft-timeout-ms",
        type=int,
        default=0,
        help="experiment: PBFT base progress timeout for launched nodes (node default 2000)",
    )
    parser.add_argument(
        "--node-tick-ms",
        type=int,
        default=0,
        help="experiment: node tick interval for launched nodes (node default 20)",
    )
    parser.add_argument(
        "--node-in-flight",
        type=int,
        default=0,
        help="experiment: proposals a leader keeps uncommitted (node default 2)",
    )
    parser.add_argument(
        "--node-all-to-all-votes",
        action="store_true",
        help="experiment: replicas broadcast PBFT votes (node default: the leader collects them)",
    )
    parser.add_argument(
        "--epoch-length",
        type=int,
        default=10,
        help="blocks per PoS epoch of a launched testnet; each epoch's last block is "
        "checkpointed and settled (default 10; a genesis from `dmchain init` uses 100)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--quick", action="store_true", help="4 PBFT + 2 PoS, 50 tx/s, 2 s + 8 s (CI smoke)"
    )


def _format_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write report.json, report.md and the plots."""
    from bench.harness import BenchError, BenchOptions, run_bench
    from bench.report import process_write_report
    from node.cluster import ClusterError

    opts = BenchOptions(
        out=args.out,
        pbft=args.pbft,
        pos=args.pos,
        base_port=args.base_port,
        attach=args.attach,
        rate=args.rate,
        warmup_s=args.warmup,
        duration_s=args.duration,
        sweep=args.sweep,
        sweep_duration_s=args.sweep_duration,
        tick_ms=args.tick_ms,
        netem_ms=args.netem_ms,
        drain_timeout_s=args.drain_timeout,
        status_cap=args.status_cap,
        keep=args.keep,
        profile=args.profile,
        batch_max_txs=args.batch_max_txs,
        empty_block_interval_ms=args.empty_block_interval_ms,
        pbft_timeout_ms=args.pbft_timeout_ms,
        node_tick_ms=args.node_tick_ms,
        node_in_flight=args.node_in_flight,
        all_to_all_votes=args.node_all_to_all_votes,
        epoch_length=args.epoch_length,
        command="dmchain bench " + shlex.join(sys.argv[2:] if len(sys.argv) > 2 else []),
    )
    if args.quick:
        opts.pbft, opts.pos = QUICK_PBFT, QUICK_POS
        opts.rate, opts.warmup_s, opts.duration_s = QUICK_RATE, QUICK_WARMUP_S, QUICK_DURATION_S
        opts.drain_timeout_s = min(opts.drain_timeout_s, 30.0)
        opts.idle_s = 2.0
    try:
        report = run_bench(opts)
    except (BenchError, ClusterError, OSError, ValueError) as exc:
        print(f"bench: error: {exc}")
        return 1
    process_write_report(report, args.out)
    if not args.no_plots:
        from bench.plots import process_write_plots

        process_write_plots(report, args.out)
    print(
        f"bench: {report['tx_per_s'] or 0:.1f} tx/s confirmed at {opts.rate:g} offered; "
        f"p95 {_format_ms(report['p95_ms'])}; settle p95 {_format_ms(report['settle_p95_ms'])}; "
        f"settlement failures {report['settlement_failures']}; report in {args.out}"
    )
    return 0
