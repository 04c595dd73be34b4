"""Run a node for the benchmark, optionally profiled or with experiment overrides.

Usage: ``python -m bench.node_runner start --home DIR`` (same arguments as
``dmchain``). Environment variables, all optional:

- ``DMCHAIN_BENCH_PROFILE=PATH``: run under cProfile with a CPU-time clock
  (``time.process_time``: CPU seconds of this process; time blocked in epoll
  or fsync does not count) and write the stats to PATH when the node exits.
- ``DMCHAIN_BENCH_TRACEMALLOC=DIR``: trace allocations (``tracemalloc``, 4
  frames) and write a snapshot to ``DIR/<node pid>-<n>.snap`` on each SIGUSR1,
  to compare what a node holds at two points of a run (slows the node).
  ``DMCHAIN_BENCH_TRACEMALLOC_NODES=node03,node13`` limits it to those nodes
  (the names of their home directories): tracing all 18 slows a 2-core host
  so much that consensus stalls.
- ``DMCHAIN_BENCH_MEMSTATS=DIR``: on each SIGUSR2 write ``DIR/<node pid>-<n>.json``
  with the node's RSS (anonymous / file), glibc heap figures, the most
  numerous Python object types and the garbage collector's passes and pause
  times per generation since start (cheap until signalled; a dump takes a
  fraction of a second).
- ``DMCHAIN_BENCH_PBFT_TIMEOUT_MS=N``: PBFT's base progress timeout (the node
  uses 2,000 ms) - an experiment, reported as such.
- ``DMCHAIN_BENCH_TICK_MS=N``: the node's tick interval (default 20 ms) - an
  experiment, reported as such.
- ``DMCHAIN_BENCH_IN_FLIGHT=N``: proposals a leader keeps uncommitted
  (default 2) - an experiment, reported as such.
- ``DMCHAIN_BENCH_ALL_TO_ALL_VOTES=1``: replicas broadcast their PBFT votes
  instead of sending them to the collecting leader - an experiment, reported
  as such.

Overrides exist so the benchmark can measure the effect of a proposed node
change before it is made; a run that uses one says so in its report.
"""

from __future__ import annotations

import collections
import cProfile
import ctypes
import functools
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

ENV_PROFILE = "DMCHAIN_BENCH_PROFILE"
ENV_PBFT_TIMEOUT_MS = "DMCHAIN_BENCH_PBFT_TIMEOUT_MS"
ENV_TICK_MS = "DMCHAIN_BENCH_TICK_MS"
ENV_IN_FLIGHT = "DMCHAIN_BENCH_IN_FLIGHT"
ENV_ALL_TO_ALL_VOTES = "DMCHAIN_BENCH_ALL_TO_ALL_VOTES"
ENV_TRACEMALLOC = "DMCHAIN_BENCH_TRACEMALLOC"
ENV_TRACEMALLOC_NODES = "DMCHAIN_BENCH_TRACEMALLOC_NODES"
ENV_MEMSTATS = "DMCHAIN_BENCH_MEMSTATS"
TRACEMALLOC_FRAMES = 4
MEMSTATS_TYPES = 40


def process_start_tracemalloc(directory: Path) -> None:
    """Trace allocations; each SIGUSR1 writes a snapshot to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(TRACEMALLOC_FRAMES)
    taken = [0]

    def dump(_signum: int, _frame: FrameType | None) -> None:
        taken[0] += 1
        path = directory / f"{os.getpid()}-{taken[0]}.snap"
        tracemalloc.take_snapshot().dump(str(path))
        print(f"bench node runner: tracemalloc snapshot {path}", flush=True)

    signal.signal(signal.SIGUSR1, dump)


_MALLINFO2_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def compute_memory_stats() -> dict[str, Any]:
    """Return where this process's memory is: RSS split from /proc (anonymous,
    file, shared), glibc's heap (``mallinfo2``: ``arena`` bytes from the
    system, ``uordblks`` in use, ``fordblks`` free, ``hblkhd`` in mmap'd
    blocks; empty where glibc lacks it), Python's allocated block count and
    the most numerous object types the garbage collector tracks."""
    rss: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("Rss", "VmRSS")):
                name, value = line.split(":", 1)
                rss[name] = int(value.split()[0])
    malloc: dict[str, int] = {}
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        malloc = {name: int(getattr(info, name)) for name in _MALLINFO2_FIELDS}
    except (OSError, AttributeError):
        pass
    types = collections.Counter(type(obj).__name__ for obj in gc.get_objects())
    return {
        "rss_kb": rss,
        "malloc": malloc,
        "python_blocks": sys.getallocatedblocks(),
        "types": types.most_common(MEMSTATS_TYPES),
    }


class GcPauses:
    """Counts the garbage collector's passes per generation and their pause
    times (wall clock, from the ``gc.callbacks`` start and stop events)."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]
        self._started = 0.0

    def process_event(self, phase: str, info: dict[str, int]) -> None:
        """Record one ``gc.callbacks`` event."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause_ms = (time.perf_counter() - self._started) * 1000
        self.passes[generation] += 1
        self.total_ms[generation] += pause_ms
        self.max_ms[generation] = max(self.max_ms[generation], pause_ms)
        self.collected[generation] += info["collected"]

    def get_summary(self) -> dict[str, Any]:
        """Return the counts so far, one list entry per generation."""
        return {
            "passes": list(self.passes),
            "total_ms": [round(t, 1) for t in self.total_ms],
            "max_ms": [round(t, 1) for t in self.max_ms],
            "collected": list(self.collected),
            "thresholds": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
        }


def process_start_memstats(directory: Path) -> None:
    """On each SIGUSR2 write :func:`compute_memory_stats` and the garbage
    collector's pauses as JSON to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    taken = [0]
    pauses = GcPauses()
    gc.callbacks.append(pauses.process_event)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        taken[0] += 1
        path = directory / f"{os.getpid()}-{taken[0]}.json"
        path.write_text(json.dumps({**compute_memory_stats(), "gc": pauses.get_summary()}))
        print(f"bench node runner: memory stats {path}", flush=True)

    signal.signal(signal.SIGUSR2, dump)


def process_apply_overrides(env: dict[str, str]) -> list[str]:
    """Apply the experiment overrides named in ``env``; returns what was changed."""
    from node import runtime

    changed = []
    timeout = env.get(ENV_PBFT_TIMEOUT_MS)
    if timeout:
        base = int(timeout)
        original = runtime.__dict__["PbftConfig"]
        ceiling = max(base, 8_000)
        runtime.__dict__["PbftConfig"] = functools.partial(
            original, base_timeout_ms=base, max_timeout_ms=ceiling
        )
        changed.append(f"pbft base_timeout_ms={base}")
    tick = env.get(ENV_TICK_MS)
    if tick:
        runtime.__dict__["TICK_S"] = int(tick) / 1000
        changed.append(f"tick={tick} ms")
    in_flight = env.get(ENV_IN_FLIGHT)
    if in_flight:
        runtime.__dict__["MAX_PROPOSALS_IN_FLIGHT"] = int(in_flight)
        changed.append(f"proposals in flight={in_flight}")
    if env.get(ENV_ALL_TO_ALL_VOTES) == "1":
        original = runtime.__dict__["PbftConfig"]
        runtime.__dict__["PbftConfig"] = functools.partial(original, collect_votes=False)
        changed.append("all-to-all PBFT votes")
    return changed


def is_traced_node(argv: list[str], names: str) -> bool:
    """Return True iff ``names`` (comma-separated) is empty or names the node
    whose ``--home`` directory ``argv`` gives."""
    wanted = {name for name in names.split(",") if name}
    if not wanted:
        return True
    home = argv[argv.index("--home") + 1] if "--home" in argv[:-1] else ""
    return Path(home).name in wanted


def main(argv: list[str]) -> int:
    """Run ``node.cli.main(argv)`` with the overrides and profiler the environment asks for."""
    from node.cli import main as cli_main

    changed = process_apply_overrides(dict(os.environ))
    if changed:
        print(f"bench node runner: experiment overrides: {', '.join(changed)}", flush=True)
    traced = os.environ.get(ENV_TRACEMALLOC)
    if traced and is_traced_node(argv, os.environ.get(ENV_TRACEMALLOC_NODES, "")):
        process_start_tracemalloc(Path(traced))
    memstats = os.environ.get(ENV_MEMSTATS)
    if memstats:
        process_start_memstats(Path(memstats))
    path = os.environ.get(ENV_PROFILE)
    if not path:
        return cli_main(argv)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        return cli_main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
