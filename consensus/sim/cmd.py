"""``dmchain sim``: run seeded cluster simulations and report invariant violations.

Prints one line per failing seed (seed, violated invariant, a replay command)
and ends with ``sim: <S> seeds, <B> blocks committed, <E> evidence, <V> violations``;
exits 1 when V > 0.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Iterator

from consensus.sim.cluster import ALL_FAULTS, SimParams, SimResult, run_seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's flags."""
    parser.add_argument("--pbft", type=int, default=10, help="PBFT replicas (default 10)")
    parser.add_argument("--pos", type=int, default=8, help="PoS validators (default 8)")
    parser.add_argument("--seeds", default="0:20", help="seed range START:END (end exclusive)")
    parser.add_argument(
        "--faults",
        default="all",
        help=f"'all', 'none' or a comma list of: {','.join(ALL_FAULTS)}",
    )
    parser.add_argument("--blocks", type=int, default=50, help="blocks every honest node commits")
    parser.add_argument("--epoch", type=int, default=5, help="PBFT blocks per PoS epoch")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--weak-quorum-for-tests",
        action="store_true",
        help="TEST ONLY: weaken PBFT quorums to 2f to show the checks catch it",
    )
    parser.add_argument(
        "--all-to-all-votes",
        action="store_true",
        help="replicas broadcast their PBFT votes instead of sending them to the leader",
    )
    parser.add_argument("--verbose", action="store_true", help="print one line per seed")


def parse_seeds(text: str) -> range:
    """Parse 'START:END' (or a single seed) into a range; raises ValueError."""
    if ":" in text:
        start_s, end_s = text.split(":", 1)
        start, end = int(start_s), int(end_s)
    else:
        start = int(text)
        end = start + 1
    if start < 0 or end <= start:
        raise ValueError(f"bad seed range {text!r}")
    return range(start, end)


def parse_faults(text: str) -> tuple[str, ...]:
    """Parse the --faults value; raises ValueError on unknown fault names."""
    if text == "all":
        return ALL_FAULTS
    if text in ("none", ""):
        return ()
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in names if x not in ALL_FAULTS]
    if unknown:
        raise ValueError(f"unknown faults {unknown}; known: {','.join(ALL_FAULTS)}")
    return names


def _run(params: SimParams) -> SimResult:
    return run_seed(params)


def replay_command(args: argparse.Namespace, seed: int) -> str:
    """Return the command that replays exactly one seed."""
    cmd = (
        f"dmchain sim --pbft {args.pbft} --pos {args.pos} --seeds {seed}:{seed + 1} "
        f"--faults {args.faults} --blocks {args.blocks} --epoch {args.epoch}"
    )
    if args.all_to_all_votes:
        cmd += " --all-to-all-votes"
    return cmd + (" --weak-quorum-for-tests" if args.weak_quorum_for_tests else "")


def run(args: argparse.Namespace) -> int:
    """Run every seed; print failures and the summary; return 1 on any violation."""
    try:
        seeds = parse_seeds(args.seeds)
        faults = parse_faults(args.faults)
    except ValueError as exc:
        print(f"sim: {exc}", file=sys.stderr)
        return 2
    if args.pbft < 1 or args.pos < 1 or args.blocks < 1 or args.epoch < 1:
        print("sim: --pbft, --pos, --blocks and --epoch must be positive", file=sys.stderr)
        return 2
    params = [
        SimParams(
            seed=s,
            pbft=args.pbft,
            pos=args.pos,
            blocks=args.blocks,
            faults=faults,
            epoch_length=args.epoch,
            weak_quorum=args.weak_quorum_for_tests,
            collect_votes=not args.all_to_all_votes,
        )
        for s in seeds
    ]
    results: Iterator[SimResult]
    if args.jobs > 1:
        pool = multiprocessing.get_context("fork").Pool(args.jobs)
        results = pool.imap(_run, params)
    else:
        pool = None
        results = map(_run, params)
    blocks = evidence = violations = 0
    worst_recovery = 0
    try:
        for res in results:
            blocks += res.blocks
            evidence += res.evidence
            worst_recovery = max(worst_recovery, res.recovery_ms)
            if args.verbose:
                print(
                    f"seed {res.seed}: {res.blocks} blocks, {res.evidence} evidence, "
                    f"{res.settled_epochs} epochs settled, recovery {res.recovery_ms}ms, "
                    f"end {res.end_ms}ms, {res.events} events",
                    flush=True,
                )
            if res.violations:
                violations += 1
                replay = replay_command(args, res.seed)
                print(f"seed {res.seed}: {res.violations[0]} | replay: {replay}", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if args.verbose:
        print(f"worst recovery after heal: {worst_recovery}ms")
    print(
        f"sim: {len(seeds)} seeds, {blocks} blocks committed, {evidence} evidence, "
        f"{violations} violations"
    )
    return 1 if violations else 0
