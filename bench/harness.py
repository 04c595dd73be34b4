"""The cluster benchmark: launch or attach, load, measure, check, report.

One :func:`run_bench` call:

1. launches a testnet (``pbft`` + ``pos`` nodes, each its own OS process with
   real libp2p and LevelDB; optionally each in its own network namespace with
   a netem delay, see :mod:`bench.netns`) or attaches to a running one;
2. runs the set-up transactions (see :mod:`bench.workload`) and waits for them;
3. sends the pre-signed mix open-loop at the offered rate for warm-up plus the
   measured window (one continuous stream; only transactions due inside the
   window are measured), sampling every node's CPU and memory from /proc and
   the observer's committed-transaction counter once a second;
4. waits until every node's pools are empty and the last block is settled,
   reads every measured transaction's status back from its ingress node and
   every block of the run from a PoS node, and checks that all nodes agree on
   the last common block and state digest;
5. measures the Ed25519 verification floor and writes the report.

``--sweep`` repeats step 3-4 at increasing offered rates on the same cluster
and names the saturation point.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import collect, loadgen, netns, node_runner, procstats, stats
from bench.cryptofloor import compute_verify_floor_us
from bench.workload import MIX_CYCLE, PlannedTx, Workload, build_workload
from node.cluster import (
    NodeProcess,
    get_cluster_nodes,
    is_process_alive,
    process_stop_node,
    process_wait_ready,
)
from node.config import MAX_EMPTY_BLOCK_INTERVAL_MS, Limits
from node.testnet import GOVERNANCE_FILE, TestnetSpec, get_client_seeds, process_write_testnet

PAPER = {"p95_ms": 148.0, "tx_per_s": 4750.0, "settlement_failure_rate": 0.0012}
MAX_DURATION_S = 3_600.0
MAX_RATE = 50_000.0
MAX_SWEEP_STEPS = 32
MAX_EPOCH_LENGTH = 100_000
SATURATION_P95_MS = 1_000.0
STOP_TIMEOUT_S = 20.0
CROSS_SAMPLE = 300
MAX_CROSS = 5_000
_LOADAVG_AT_START: list[float] = []


class BenchError(RuntimeError):
    """The benchmark could not run as asked; the message says why."""


@dataclass
class BenchOptions:
    """What to run. Sizes and times are validated by :meth:`get_error`."""

    out: Path
    pbft: int = 10
    pos: int = 8
    base_port: int = 30000
    attach: Path | None = None
    rate: float = 400.0
    warmup_s: float = 10.0
    duration_s: float = 60.0
    sweep: list[float] = field(default_factory=list)
    sweep_duration_s: float = 20.0
    tick_ms: int = 100
    netem_ms: float = 0.0
    drain_timeout_s: float = 120.0
    status_cap: int = 200_000
    epoch_length: int = 10
    keep: bool = False
    profile: bool = False
    batch_max_txs: int = 0
    empty_block_interval_ms: int = 0
    pbft_timeout_ms: int = 0
    node_tick_ms: int = 0
    node_in_flight: int = 0
    all_to_all_votes: bool = False
    idle_s: float = 5.0
    command: str = ""

    def get_error(self) -> str | None:
        """Return None iff the options are usable, else why not."""
        if self.attach is None and (self.pbft < 1 or self.pos < 1 or self.pbft + self.pos < 2):
            return "need at least one PBFT replica, one PoS validator and two nodes"
        if not 0 < self.rate <= MAX_RATE:
            return f"--rate must be in (0, {MAX_RATE:.0f}] tx/s"
        if not 0 <= self.warmup_s <= MAX_DURATION_S or not 0 < self.duration_s <= MAX_DURATION_S:
            return f"--warmup and --duration must be in [0, {MAX_DURATION_S:.0f}] s"
        if len(self.sweep) > MAX_SWEEP_STEPS or any(not 0 < r <= MAX_RATE for r in self.sweep):
            return f"--sweep takes at most {MAX_SWEEP_STEPS} rates in (0, {MAX_RATE:.0f}]"
        if not 5 <= self.tick_ms <= 1_000:
            return "--tick-ms must be in [5, 1000]"
        if not 0 <= self.netem_ms <= 1_000:
            return "--netem-ms must be in [0, 1000]"
        if not 0 <= self.empty_block_interval_ms <= MAX_EMPTY_BLOCK_INTERVAL_MS:
            return f"--empty-block-interval-ms must be in [0, {MAX_EMPTY_BLOCK_INTERVAL_MS}]"
        if not 1 <= self.epoch_length <= MAX_EPOCH_LENGTH:
            return f"--epoch-length must be in [1, {MAX_EPOCH_LENGTH}]"
        if not 1_000 <= self.base_port <= 65_000:
            return "--base-port must be in [1000, 65000]"
        return None


@dataclass
class Cluster:
    """The nodes under test, their URLs and pids, and how the run reaches them."""

    home: Path
    nodes: list[NodeProcess]
    urls: list[str]
    roles: list[str]
    chain_id: str
    launched: bool
    network: dict[str, Any]
    namespaces: netns.NamespacePlan | None = None

    def get_pids(self) -> list[int | None]:
        """Return each node's pid (None if it is not running)."""
        return [n.get_pid() for n in self.nodes]

    @property
    def observer(self) -> int:
        """Index of the node whose counters and blocks are read (the last PoS node)."""
        pos = [i for i, r in enumerate(self.roles) if r == "pos"]
        return pos[-1] if pos else len(self.nodes) - 1


def _say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# ----------------------------------------------------------------- cluster


def process_launch(opts: BenchOptions) -> Cluster:
    """Create a testnet under ``opts.out/testnet`` and start it; raises BenchError."""
    home = opts.out / "testnet"
    if home.exists():
        raise BenchError(f"{home} exists: pick an empty --out")
    count = opts.pbft + opts.pos
    spec = TestnetSpec(
        out=home,
        pbft=opts.pbft,
        pos=opts.pos,
        clients=max(8, count),
        base_port=opts.base_port,
        epoch_length=opts.epoch_length,
    )
    overrides = {
        "batch_max_txs": opts.batch_max_txs,
        "empty_block_interval_ms": opts.empty_block_interval_ms,
    }
    chosen = {key: value for key, value in overrides.items() if value > 0}
    limits = Limits(**chosen) if chosen else None
    process_write_testnet(spec, limits)
    network: dict[str, Any] = {"mode": "loopback", "delay_ms": 0.0, "note": ""}
    plan: netns.NamespacePlan | None = None
    if opts.netem_ms > 0:
        reason = netns.get_unavailable_reason()
        if reason is None:
            plan = netns.compute_plan(count, opts.base_port, opts.netem_ms)
            netns.process_rewrite_testnet(home, plan)
            netns.process_create(plan)
            network = {
                "mode": "netns",
                "delay_ms": opts.netem_ms,
                "note": (
                    f"each node in its own network namespace on a bridge, netem delay "
                    f"{opts.netem_ms} ms on every node's egress: +{2 * opts.netem_ms} ms "
                    f"per node-to-node round trip, +{opts.netem_ms} ms per client-to-node "
                    "round trip"
                ),
            }
        else:
            network["note"] = f"netem requested but unavailable ({reason}): plain loopback"
    nodes = get_cluster_nodes(home)
    cluster = _make_cluster(home, nodes, launched=True, network=network)
    cluster.namespaces = plan
    try:
        for i, node in enumerate(nodes):
            prefix = netns.compute_exec_prefix(plan, i) if plan is not None else []
            env = dict(get_experiment_env(opts))
            if opts.profile and i in get_profiled(cluster):
                env[node_runner.ENV_PROFILE] = str(get_profile_path(opts, node))
            netns.process_start_node(node, prefix, env)
        process_wait_ready(nodes, timeout=180.0, progress=_say)
    except Exception:
        process_shutdown(cluster)
        raise
    return cluster


def get_experiment_env(opts: BenchOptions) -> dict[str, str]:
    """Return the node runner's experiment overrides asked for by ``opts``."""
    env = {}
    if opts.pbft_timeout_ms > 0:
        env[node_runner.ENV_PBFT_TIMEOUT_MS] = str(opts.pbft_timeout_ms)
    if opts.node_tick_ms > 0:
        env[node_runner.ENV_TICK_MS] = str(opts.node_tick_ms)
    if opts.node_in_flight > 0:
        env[node_runner.ENV_IN_FLIGHT] = str(opts.node_in_flight)
    if opts.all_to_all_votes:
        env[node_runner.ENV_ALL_TO_ALL_VOTES] = "1"
    return env


def get_profiled(cluster: Cluster) -> list[int]:
    """Return the nodes a profiled run profiles: node 0 (a PBFT replica, the first
    leader) and the first PoS node (never the observer, whose HTTP answers the run)."""
    pos = [i for i, role in enumerate(cluster.roles) if role == "pos" and i != cluster.observer]
    return [0, *pos[:1]]


def get_profile_path(opts: BenchOptions, node: NodeProcess) -> Path:
    """Return where a profiled node's cProfile stats go."""
    return (opts.out / f"profile-{node.config.name}.pstats").resolve()


def compute_profile_text(paths: list[Path], top: int = 25) -> str:
    """Return the top functions by own time of each cProfile stats file that exists."""
    import io
    import pstats

    parts = []
    for path in paths:
        if not path.is_file():
            parts.append(f"{path.name}: no stats written (did the node exit cleanly?)")
            continue
        buffer = io.StringIO()
        stats_obj = pstats.Stats(str(path), stream=buffer)
        stats_obj.sort_stats("tottime").print_stats(top)
        text = buffer.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        total = f"{stats_obj.total_tt:.1f}"  # type: ignore[attr-defined]
        parts.append(f"{path.name} (total {total} CPU seconds under the profiler)\n{body}")
    return "\n".join(parts)


def _make_cluster(
    home: Path, nodes: list[NodeProcess], launched: bool, network: dict[str, Any]
) -> Cluster:
    genesis = json.loads((home / "genesis.json").read_text())
    roles_by_name = {v["name"]: v["roles"] for v in genesis["validators"]}
    roles = ["pbft" if "pbft" in roles_by_name.get(n.config.name, []) else "pos" for n in nodes]
    urls = [n.config.http_url for n in nodes]
    return Cluster(home, nodes, urls, roles, str(genesis["chain_id"]), launched, network)


def process_attach(home: Path) -> Cluster:
    """Return the running cluster of testnet directory ``home``; raises BenchError."""
    nodes = get_cluster_nodes(home)
    missing = [n.config.name for n in nodes if n.get_pid() is None]
    if missing:
        raise BenchError(f"nodes not running under {home}: {', '.join(missing)}")
    network = {"mode": "attached", "delay_ms": 0.0, "note": "attached to a running cluster"}
    return _make_cluster(home, nodes, launched=False, network=network)


def process_shutdown(cluster: Cluster) -> None:
    """Stop the nodes this run started and remove its namespaces (no-op when attached)."""
    if not cluster.launched:
        return
    pids = {n.config.name: n.get_pid() for n in cluster.nodes}
    for pid in pids.values():
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(
        pid is not None and is_process_alive(pid) for pid in pids.values()
    ):
        time.sleep(0.1)
    for node in cluster.nodes:
        try:
            process_stop_node(node, timeout=1.0, sig=signal.SIGKILL)
        except OSError as exc:
            _say(f"could not stop {node.config.name}: {exc}")
    if cluster.namespaces is not None:
        netns.process_destroy(cluster.namespaces)


# ----------------------------------------------------------------- set-up


async def _get_nonce(client: httpx.AsyncClient, account: bytes) -> int:
    try:
        doc = (await client.get(f"/v1/accounts/{account.hex()}")).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return int(doc.get("nonce", 0)) if isinstance(doc, dict) else 0


async def process_setup(cluster: Cluster) -> Workload:
    """Build the workload and confirm its set-up transactions; raises BenchError."""
    seeds = get_client_seeds(cluster.home)
    gov_doc = json.loads((cluster.home / GOVERNANCE_FILE).read_text())
    gov_seeds = [bytes.fromhex(s) for s in gov_doc["governance"]]
    targets = list(range(len(cluster.nodes)))
    probe = build_workload(cluster.chain_id, seeds, gov_seeds, targets)
    nonces: dict[bytes, int] = {}
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=10.0) as client:
        for signer in [c.signer for c in probe.clients] + probe.governance:
            nonces[signer.public_key] = await _get_nonce(client, signer.public_key)
    workload = build_workload(cluster.chain_id, seeds, gov_seeds, targets, nonces)
    setup = workload.compute_setup(governance_seq=0)
    by_node: dict[int, list[str]] = {}
    for node, _kind, raw in setup:
        by_node.setdefault(node, []).append(raw.hex())
    for node, hexes in by_node.items():
        async with httpx.AsyncClient(base_url=cluster.urls[node], timeout=30.0) as client:
            results = (await client.post("/v1/txs", json={"txs": hexes})).json()["results"]
        refused = [r for r in results if "hash" not in r]
        if refused:
            raise BenchError(f"set-up transactions refused by node {node}: {refused[:3]}")
    failures: list[str] = []

    async def wait_one(node: int, kind: str, tx_hash: bytes) -> None:
        path = f"/v1/tx/{tx_hash.hex()}/wait"
        async with httpx.AsyncClient(base_url=cluster.urls[node], timeout=70.0) as client:
            doc = (await client.get(path, params={"level": "confirmed", "timeout": 60})).json()
        if doc.get("status") not in ("confirmed", "settled"):
            failures.append(f"{kind}: {doc.get('status')} {doc.get('reason', '')}")

    from consensus.crypto import compute_hash

    limiter = trio.CapacityLimiter(16)

    async def guarded(node: int, kind: str, tx_hash: bytes) -> None:
        async with limiter:
            await wait_one(node, kind, tx_hash)

    async with trio.open_nursery() as nursery:
        for node, kind, raw in setup:
            nursery.start_soon(guarded, node, kind, compute_hash(raw))
    if failures:
        raise BenchError(
            "set-up transactions failed (a chain that already ran governance actions "
            f"needs a fresh testnet): {failures[:3]}"
        )
    return workload


# ----------------------------------------------------------------- one load step


@dataclass
class Sample:
    """One monitor reading: seconds since the load started, per-node /proc, counters."""

    t: float
    wall_ms: float
    procs: list[procstats.ProcSample | None]
    committed: float | None
    height: int
    settled: int
    self_cpu_us: int
    host_cpu: tuple[int, int] | None = None


async def _sample(client: httpx.AsyncClient, pids: list[int | None], start: float) -> Sample:
    """Read the processes' CPU and memory and the observer's progress through ``client``."""
    procs = [procstats.get_sample(p) if p is not None else None for p in pids]
    committed = await collect.get_metric(client, "dmchain_committed_txs_total")
    status = await collect.get_status(client) or {}
    return Sample(
        trio.current_time() - start,
        time.time() * 1000,
        procs,
        committed,
        int(status.get("height", 0)),
        int(status.get("settled_height", 0)),
        procstats.get_self_cpu_us(),
        procstats.get_host_cpu_ticks(),
    )


async def _get_views(cluster: Cluster) -> list[int]:
    replicas = [u for u, r in zip(cluster.urls, cluster.roles, strict=True) if r == "pbft"]
    return [int((s or {}).get("view") or 0) for s in await collect.get_statuses(replicas)]


@dataclass
class StepData:
    """Raw material of one load step, before it is summarised."""

    rate: float
    warmup_s: float
    duration_s: float
    plan: list[PlannedTx]
    log: loadgen.SendLog
    samples: list[Sample]
    first_measured: int
    statuses: dict[int, collect.TxStatus]
    blocks: dict[int, dict[str, Any]]
    views_before: list[int]
    views_after: list[int]
    drained: bool
    probes: list[tuple[float, float]]
    agreement: dict[str, Any]
    cross: dict[int, collect.TxStatus] = field(default_factory=dict)


async def process_step(
    cluster: Cluster,
    workload: Workload,
    slot: int,
    rate: float,
    warmup_s: float,
    duration_s: float,
    opts: BenchOptions,
    label: str,
) -> StepData:
    """Run one open-loop load step at ``rate`` and read back its results."""
    warm_count = math.floor(rate * warmup_s)
    total = warm_count + max(1, math.floor(rate * duration_s))
    _say(f"{label}: signing {total} transactions ({warm_count} warm-up) at {rate:g} tx/s")
    plan = workload.compute_batch(total, slot)
    pids = cluster.get_pids()
    views_before = await _get_views(cluster)
    samples: list[Sample] = []
    probes: list[tuple[float, float]] = []
    log_box: list[loadgen.SendLog] = []
    start = trio.current_time()
    observer = cluster.observer
    sampled = compute_status_sample(warm_count, len(plan), opts.status_cap)

    def is_sampled(i: int) -> bool:
        return sampled is None or i in sampled

    reader = collect.SettledReader(
        cluster.urls, [(tx.node, tx.tx_hash) for tx in plan], observer, is_sampled
    )

    async def monitor(cancel: trio.CancelScope) -> None:
        # one client for the whole step: building one costs milliseconds of
        # CPU (an SSL context), taken from the cores the nodes run on
        async with httpx.AsyncClient(base_url=cluster.urls[observer], timeout=5.0) as client:
            while True:
                sample = await _sample(client, pids, start)
                samples.append(sample)
                sent = log_box[0].answered if log_box else 0
                refused = log_box[0].refused if log_box else 0
                phase = "warm-up" if sample.t < warmup_s else "measure"
                rate_now = _recent_rate(samples)
                _say(
                    f"{label} t={sample.t:5.1f}s {phase} offered={rate:g}/s answered={sent} "
                    f"refused={refused} height={sample.height} settled={sample.settled} "
                    f"confirmed/s={rate_now if rate_now is not None else '-'}"
                )
                await trio.sleep(1.0)

    async def prober() -> None:
        # client-observed cross-check: long-poll a sample of measured transactions
        await trio.sleep(warmup_s + 0.5)
        async with httpx.AsyncClient(timeout=40.0) as client:
            while True:
                log = log_box[0] if log_box else None
                if log is not None:
                    idx = log.last_accepted
                    if idx is not None and idx >= warm_count:
                        url = cluster.urls[plan[idx].node]
                        path = f"{url}/v1/tx/{plan[idx].tx_hash.hex()}/wait"
                        try:
                            await client.get(path, params={"level": "confirmed", "timeout": 30})
                            probes.append((log.send_ms[idx], time.time() * 1000))
                        except httpx.HTTPError:
                            pass
                await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        mon_scope = trio.CancelScope()

        async def run_monitor() -> None:
            with mon_scope:
                await monitor(mon_scope)

        nursery.start_soon(run_monitor)
        probe_scope = trio.CancelScope()

        async def run_prober() -> None:
            with probe_scope:
                await prober()

        nursery.start_soon(run_prober)
        log = loadgen.new_log(len(plan))
        log_box.append(log)
        read_scope = trio.CancelScope()

        async def run_reader() -> None:
            with read_scope:
                await reader.process_run(warm_count, log.outcome, log.send_ms)

        nursery.start_soon(run_reader)
        sent_log = await loadgen.process_send_plan(
            cluster.urls, plan, rate, tick_s=opts.tick_ms / 1000, log=log
        )
        probe_scope.cancel()
        # keep sampling through the drain so memory and height are recorded
        end_height = samples[-1].height if samples else 0
        drained = await collect.process_wait_drained(
            cluster.urls,
            lambda st: max([int((s or {}).get("height", 0)) for s in st] + [end_height]),
            opts.drain_timeout_s,
        )
        mon_scope.cancel()
        read_scope.cancel()
    views_after = await _get_views(cluster)
    chosen = [
        i for i in range(warm_count, len(plan)) if sent_log.outcome[i] == "" and is_sampled(i)
    ]
    statuses = {i: reader.settled[i] for i in chosen if i in reader.settled}
    rest = [i for i in chosen if i not in statuses]
    _say(
        f"{label}: {len(statuses)} of {len(chosen)} transaction statuses read while running "
        f"({reader.rounds} rounds); reading back {len(rest)}"
    )
    fetched = await collect.process_fetch_statuses(
        cluster.urls, [(plan[i].node, plan[i].tx_hash) for i in rest], observer
    )
    statuses.update(zip(rest, fetched, strict=True))
    first_height = min([s.height for s in statuses.values() if s.height > 0], default=1)
    last = await collect.get_statuses([cluster.urls[observer]])
    last_height = int((last[0] or {}).get("height", 0))
    _say(f"{label}: reading blocks {first_height}..{last_height} from {observer=}")
    blocks = await collect.process_fetch_blocks(cluster.urls[observer], first_height, last_height)
    agreement = await get_agreement(cluster)
    cross = await get_cross_statuses(cluster, plan, chosen, blocks)
    return StepData(
        rate,
        warmup_s,
        duration_s,
        plan,
        sent_log,
        samples,
        warm_count,
        statuses,
        blocks,
        views_before,
        views_after,
        drained,
        probes,
        agreement,
        cross,
    )


def compute_status_sample(first: int, end: int, cap: int) -> set[int] | None:
    """Return the plan indices in ``first..end-1`` whose statuses are read: None for
    all of them when they are at most ``cap``, else ``cap`` of them evenly spread."""
    count = end - first
    if count <= cap:
        return None
    stride = count / cap
    return {first + math.floor(k * stride) for k in range(cap)}


async def get_cross_statuses(
    cluster: Cluster,
    plan: list[PlannedTx],
    chosen: list[int],
    blocks: dict[int, dict[str, Any]],
) -> dict[int, collect.TxStatus]:
    """Read the outcome of some transactions from a node other than their ingress node.

    Every transaction that appears in more than one block, and an even sample
    of :data:`CROSS_SAMPLE` others, are read from the observer (node 0 for
    the observer's own transactions), which answers from its ledger receipt.
    """
    counts: dict[str, int] = {}
    for doc in blocks.values():
        for h in doc.get("txs", []):
            counts[h] = counts.get(h, 0) + 1
    duplicated = [i for i in chosen if counts.get(plan[i].tx_hash.hex(), 0) > 1]
    stride = max(1, len(chosen) // CROSS_SAMPLE)
    picked = sorted(set(duplicated[:MAX_CROSS] + chosen[::stride][:CROSS_SAMPLE]))
    observer = cluster.observer
    wanted = [(observer if plan[i].node != observer else 0, plan[i].tx_hash) for i in picked]
    fetched = await collect.process_fetch_statuses(cluster.urls, wanted, observer)
    return dict(zip(picked, fetched, strict=True))


def _recent_rate(samples: list[Sample]) -> int | None:
    if len(samples) < 2 or samples[-1].committed is None or samples[-2].committed is None:
        return None
    dt = samples[-1].t - samples[-2].t
    return round((samples[-1].committed - samples[-2].committed) / dt) if dt > 0 else None


async def get_agreement(cluster: Cluster) -> dict[str, Any]:
    """Compare every node's block hash and state digest at the lowest common height."""
    statuses = await collect.get_statuses(cluster.urls)
    heights = [int(s.get("height", 0)) for s in statuses if s is not None]
    if len(heights) != len(cluster.urls):
        return {"agree": False, "height": None, "note": "some nodes did not answer"}
    common = min(heights)
    hashes: list[str] = []
    digests: list[str] = []
    for url in cluster.urls:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            try:
                doc = (await client.get(f"/v1/blocks/{common}")).json()
            except (httpx.HTTPError, ValueError):
                doc = {}
        hashes.append(str(doc.get("hash", "")))
        digests.append(str(doc.get("state_digest", "")))
    agree = len(set(hashes)) == 1 and len(set(digests)) == 1 and hashes[0] != ""
    settled = min(int(s.get("settled_height", 0)) for s in statuses if s is not None)
    return {
        "agree": agree,
        "height": common,
        "distinct_hashes": len(set(hashes)),
        "settled_height_min": settled,
    }


# ----------------------------------------------------------------- summaries


def compute_step_summary(step: StepData, names: list[str], roles: list[str]) -> dict[str, Any]:
    """Return the figures of one step (see the module docstring of bench.report)."""
    log = step.log
    measured = range(step.first_measured, len(step.plan))
    accepted = [i for i in measured if log.outcome[i] == ""]
    rejected = sum(1 for i in measured if log.outcome[i] not in ("", None))
    committed: dict[str, tuple[int, str]] = {}
    occurrences: dict[str, int] = {}
    proposed_ms: dict[int, float] = {}
    for height, doc in step.blocks.items():
        proposed_ms[height] = float(doc.get("timestamp_ms", 0))
        for h in doc.get("txs", []):
            occurrences[h] = occurrences.get(h, 0) + 1
            if h not in committed or height < committed[h][0]:
                committed[h] = (height, str(doc.get("hash", "")))
    to_ingress: list[float] = []
    to_proposal: list[float] = []
    proposal_to_confirm: list[float] = []
    confirm: list[float] = []
    settle: list[float] = []
    confirm_times: list[float] = []
    send_for_confirm: list[float] = []
    lost = unsettled = mismatched = failed = no_settle_time = from_receipt = 0
    duplicated = outcome_mismatch = 0
    bad: set[int] = set()
    checked = 0
    samples: list[tuple[int, int, int, float, int, float, int, int, str]] = []
    settled_floor = int(step.agreement.get("settled_height_min") or 0)
    examples: list[dict[str, Any]] = []
    mismatch_examples: list[dict[str, Any]] = []
    for i in accepted:
        tx_hash = step.plan[i].tx_hash.hex()
        in_chain = committed.get(tx_hash)
        status = step.statuses.get(i)
        if in_chain is None:
            lost += 1
            continue
        if occurrences.get(tx_hash, 0) > 1:
            duplicated += 1
        if status is None:
            continue
        checked += 1
        other = step.cross.get(i, collect.UNKNOWN).status
        if other != "unknown" and (status.status == "failed") != (other == "failed"):
            outcome_mismatch += 1
            bad.add(i)
            if len(mismatch_examples) < 10:
                mismatch_examples.append(
                    {
                        "tx": tx_hash,
                        "node": step.plan[i].node,
                        "ingress_outcome": status.status,
                        "other_node_outcome": other,
                        "blocks": occurrences.get(tx_hash, 0),
                    }
                )
        if status.status == "failed":
            failed += 1
        # a node answers for a transaction it no longer tracks from its receipt:
        # outcome and height, without the block hash and the times
        is_receipt = status.submitted_ms == 0 and status.status != "unknown"
        if is_receipt:
            from_receipt += 1
        if status.height != in_chain[0] or (status.block_hash != in_chain[1] and not is_receipt):
            mismatched += 1
            bad.add(i)
            if len(mismatch_examples) < 5:
                mismatch_examples.append(
                    {
                        "tx": tx_hash,
                        "node": step.plan[i].node,
                        "tracker": [status.status, status.height, status.block_hash],
                        "chain": list(in_chain),
                    }
                )
        samples.append(
            (
                i,
                step.plan[i].node,
                in_chain[0],
                log.send_ms[i],
                status.submitted_ms,
                proposed_ms.get(in_chain[0], 0.0),
                status.confirmed_ms,
                status.settled_ms,
                status.status,
            )
        )
        if status.confirmed_ms > 0:
            proposed = proposed_ms.get(in_chain[0], 0.0)
            to_ingress.append(status.submitted_ms - log.send_ms[i])
            to_proposal.append(proposed - log.send_ms[i])
            proposal_to_confirm.append(status.confirmed_ms - proposed)
            confirm.append(status.confirmed_ms - log.send_ms[i])
            confirm_times.append(float(status.confirmed_ms))
            send_for_confirm.append(log.send_ms[i])
        if in_chain[0] > settled_floor:
            unsettled += 1
            bad.add(i)
        if status.settled_ms > 0:
            settle.append(status.settled_ms - log.send_ms[i])
        elif in_chain[0] <= settled_floor:
            no_settle_time += 1
            if len(examples) < 5:
                examples.append(
                    {
                        "tx": tx_hash,
                        "node": step.plan[i].node,
                        "height": in_chain[0],
                        "status": status.status,
                    }
                )
    scale = len(accepted) / checked if checked else 0.0
    # each transaction counts once, however many checks it fails
    failures = lost + round(len(bad) * scale)
    window = _window_samples(step)
    tx_per_s, cpu_by_node, window_s = _window_throughput_cpu(window, names)
    confirmed_in_window = (
        (window[-1].committed or 0) - (window[0].committed or 0) if len(window) >= 2 else 0
    )
    floor_counts = step.views_after, step.views_before
    view_changes = max(
        (a - b for a, b in zip(floor_counts[0], floor_counts[1], strict=False)), default=0
    )
    lat = stats.compute_summary(confirm)
    settle_summary = stats.compute_summary(settle)
    lags = [log.lag_ms[i] for i in measured if not math.isnan(log.lag_ms[i])]
    probe_lat = [end - sent for sent, end in step.probes]
    gen_cpu = (window[-1].self_cpu_us - window[0].self_cpu_us) if len(window) >= 2 else 0
    host_busy = compute_busy_share(window[0].host_cpu, window[-1].host_cpu) if window else None
    memory = _memory(step.samples, names)
    waits = compute_runqueue_wait_shares(window, names)
    role_of = dict(zip(names, roles, strict=True))
    return {
        "offered_rate": step.rate,
        "duration_s": step.duration_s,
        "warmup_s": step.warmup_s,
        "window_s": window_s,
        "tx_per_s": tx_per_s,
        "confirmed_in_window": confirmed_in_window,
        "planned_txs": len(measured),
        "accepted_txs": len(accepted),
        "rejected_txs": rejected,
        "rejections": dict(log.errors),
        "status_checked_txs": checked,
        "lost_txs": lost,
        "unsettled_txs": unsettled,
        "mismatched_txs": mismatched,
        "mismatched_examples": mismatch_examples,
        "duplicate_inclusions": duplicated,
        "outcome_mismatches": outcome_mismatch,
        "outcome_checked_txs": sum(1 for v in step.cross.values() if v.status != "unknown"),
        "failed_receipts": failed,
        "statuses_from_receipts": from_receipt,
        "settled_without_tracker_time": no_settle_time,
        "settled_without_tracker_time_examples": examples,
        "settlement_failures": failures,
        "settlement_failure_rate": (failures / len(accepted)) if accepted else None,
        "p50_ms": lat["p50"],
        "p95_ms": lat["p95"],
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "settle_p50_ms": settle_summary["p50"],
        "settle_p95_ms": settle_summary["p95"],
        "settle_max_ms": settle_summary["max"],
        "client_probe": {
            "count": len(probe_lat),
            "p50_ms": stats.compute_percentile(probe_lat, 50),
            "p95_ms": stats.compute_percentile(probe_lat, 95),
        },
        "latency_breakdown": {
            "submit_to_admitted": stats.compute_summary(to_ingress),
            "submit_to_proposed": stats.compute_summary(to_proposal),
            "proposed_to_confirmed": stats.compute_summary(proposal_to_confirm),
            "note": (
                "admitted: ingress node's tracker submitted_ms; proposed: the block's "
                "timestamp_ms (the leader's wall clock when it built the proposal); "
                "confirmed: ingress node's confirmed_ms. Same host clock, 1 ms resolution."
            ),
        },
        "send_lag_p99_ms": stats.compute_percentile(lags, 99),
        "view_changes": view_changes,
        "drained": step.drained,
        "agreement": step.agreement,
        "cpu_us_per_tx_by_node": cpu_by_node,
        "cpu_us_per_tx_per_node": _mean(list(cpu_by_node.values())),
        "cpu_us_per_tx_pbft": _mean(_of_role(cpu_by_node, role_of, "pbft")),
        "cpu_us_per_tx_pos": _mean(_of_role(cpu_by_node, role_of, "pos")),
        "generator_cpu_share": (gen_cpu / 1e6 / window_s) if window_s else None,
        "host_cpu_busy_share": host_busy,
        "runqueue_wait_share_by_node": waits,
        "runqueue_wait_share_pbft": _mean(_of_role(waits, role_of, "pbft")),
        "runqueue_wait_share_pos": _mean(_of_role(waits, role_of, "pos")),
        "memory": memory,
        "series": _series(step, confirm_times, send_for_confirm, confirm),
        "samples": samples,
    }


def compute_busy_share(first: tuple[int, int] | None, last: tuple[int, int] | None) -> float | None:
    """Return the share of the host's CPU time that was busy between two readings."""
    if first is None or last is None or last[1] <= first[1]:
        return None
    return (last[0] - first[0]) / (last[1] - first[1])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _of_role(by_node: dict[str, float], role_of: dict[str, str], role: str) -> list[float]:
    return [v for n, v in by_node.items() if role_of[n] == role]


def _window_samples(step: StepData) -> list[Sample]:
    end = step.warmup_s + step.duration_s
    return [s for s in step.samples if step.warmup_s <= s.t <= end + 0.5]


async def get_idle_cpu(cluster: Cluster, seconds: float) -> dict[str, float]:
    """Return each node's CPU microseconds per second while no load is offered.

    Waits until the pools are empty and the last block settled (at most 60 s),
    then reads /proc at both ends of ``seconds`` of idling.
    """
    await collect.process_wait_drained(
        cluster.urls, lambda st: max(int((s or {}).get("height", 0)) for s in st), 60.0
    )
    pids = cluster.get_pids()
    first = [procstats.get_cpu_us(p) if p else None for p in pids]
    started = trio.current_time()
    await trio.sleep(seconds)
    elapsed = trio.current_time() - started
    last = [procstats.get_cpu_us(p) if p else None for p in pids]
    out: dict[str, float] = {}
    for node, a, b in zip(cluster.nodes, first, last, strict=True):
        if a is not None and b is not None and elapsed > 0:
            out[node.config.name] = (b - a) / elapsed
    _say(f"idle CPU per node: mean {(_mean(list(out.values())) or 0) / 1e4:.1f} % of a core")
    return out


def _add_marginal_cpu(summary: dict[str, Any], idle: dict[str, float], names: list[str]) -> None:
    """Add idle CPU and CPU per tx above idle to ``summary`` (needs the window figures)."""
    window_s = summary["window_s"] or 0.0
    confirmed = summary["confirmed_in_window"] or 0
    by_node = summary["cpu_us_per_tx_by_node"]
    marginal: dict[str, float] = {}
    for name in names:
        if name in by_node and name in idle and confirmed > 0:
            total = by_node[name] * confirmed
            marginal[name] = (total - idle[name] * window_s) / confirmed
    summary["cpu_idle_share_by_node"] = {n: v / 1e6 for n, v in idle.items()}
    summary["cpu_idle_share_per_node"] = (_mean(list(idle.values())) or 0) / 1e6
    summary["cpu_marginal_us_per_tx_by_node"] = marginal
    summary["cpu_marginal_us_per_tx_per_node"] = _mean(list(marginal.values()))


def _window_throughput_cpu(
    window: list[Sample], names: list[str]
) -> tuple[float | None, dict[str, float], float]:
    if len(window) < 2:
        return None, {}, 0.0
    first, last = window[0], window[-1]
    seconds = last.t - first.t
    if first.committed is None or last.committed is None or seconds <= 0:
        return None, {}, seconds
    confirmed = last.committed - first.committed
    cpu: dict[str, float] = {}
    for name, a, b in zip(names, first.procs, last.procs, strict=True):
        if a is not None and b is not None and confirmed > 0:
            cpu[name] = (b.cpu_us - a.cpu_us) / confirmed
    return confirmed / seconds, cpu, seconds


def compute_runqueue_wait_shares(window: list[Sample], names: list[str]) -> dict[str, float]:
    """Return, per node, the share of the window's wall time its main thread (the
    event loop) spent runnable but waiting for a CPU. Nodes without a reading at
    both ends of the window (or without schedstat) are left out."""
    shares: dict[str, float] = {}
    if len(window) < 2 or window[-1].t <= window[0].t:
        return shares
    seconds = window[-1].t - window[0].t
    for name, a, b in zip(names, window[0].procs, window[-1].procs, strict=True):
        if a is not None and b is not None and a.wait_us is not None and b.wait_us is not None:
            shares[name] = (b.wait_us - a.wait_us) / 1e6 / seconds
    return shares


def _memory(samples: list[Sample], names: list[str]) -> dict[str, Any]:
    peak: dict[str, float] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    late_rate: dict[str, float] = {}
    for i, name in enumerate(names):
        readings = [(s.t, p) for s in samples if (p := s.procs[i]) is not None]
        if readings:
            peak[name] = max(r.hwm_kb for _, r in readings) / 1024
            first[name] = readings[0][1].rss_kb / 1024
            last[name] = readings[-1][1].rss_kb / 1024
            rate = compute_late_growth_mb_per_min([(t, r.rss_kb / 1024) for t, r in readings])
            if rate is not None:
                late_rate[name] = rate
    growth = {n: last[n] - first[n] for n in last}
    return {
        "peak_rss_mb_by_node": peak,
        "max_peak_rss_mb": max(peak.values()) if peak else None,
        "rss_growth_mb_by_node": growth,
        "max_rss_growth_mb": max(growth.values()) if growth else None,
        "late_rss_growth_mb_per_min_by_node": late_rate,
        "max_late_rss_growth_mb_per_min": max(late_rate.values()) if late_rate else None,
    }


def compute_late_growth_mb_per_min(readings: list[tuple[float, float]]) -> float | None:
    """Return the RSS growth rate (MB per minute) over the second half of the
    readings' time span: from the reading nearest the midpoint to the last.
    A plateau reads near 0 however much the node grew while warming up; None
    with fewer than three readings or under a minute of span."""
    if len(readings) < 3:
        return None
    t0, t1 = readings[0][0], readings[-1][0]
    if t1 - t0 < 60:
        return None
    middle = min(readings, key=lambda r: abs(r[0] - (t0 + t1) / 2))
    return (readings[-1][1] - middle[1]) / (t1 - middle[0]) * 60


def _series(
    step: StepData, confirm_times: list[float], send_ms: list[float], confirm: list[float]
) -> dict[str, Any]:
    sent = [step.log.send_ms[i] for i in range(len(step.plan)) if step.log.send_ms[i] > 0]
    start = min(sent) if sent else 0.0
    seconds = math.ceil((max(confirm_times + sent) - start) / 1000) + 1 if sent else 0
    seconds = min(seconds, int(MAX_DURATION_S) * 2)
    return {
        "start_ms": start,
        "warmup_s": step.warmup_s,
        "sent_per_s": stats.compute_per_second(sent, start, seconds),
        "confirmed_per_s": stats.compute_per_second(confirm_times, start, seconds),
        "p95_ms_per_s": stats.compute_latency_per_second(send_ms, confirm, start, seconds),
        "rss_mb": [
            [round(s.t, 1)] + [round(p.rss_kb / 1024, 1) if p else None for p in s.procs]
            for s in step.samples
        ],
        "confirm_ms": confirm,
    }


# ----------------------------------------------------------------- entry


def compute_saturation(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the highest offered rate the cluster sustained in a sweep.

    A step is sustained when confirmed tx/s reached 95 % of the offered rate,
    nothing was refused or lost, and confirmation p95 stayed below 1 s.
    """
    sustained = [
        s
        for s in steps
        if s["tx_per_s"] is not None
        and s["tx_per_s"] >= 0.95 * s["offered_rate"]
        and s["rejected_txs"] == 0
        and s["lost_txs"] == 0
        and s["p95_ms"] is not None
        and s["p95_ms"] < SATURATION_P95_MS
    ]
    if not sustained:
        return {"saturation_rate": None, "max_tx_per_s": _max_rate(steps)}
    best = max(sustained, key=lambda s: s["offered_rate"])
    return {
        "saturation_rate": best["offered_rate"],
        "tx_per_s_at_saturation": best["tx_per_s"],
        "p95_ms_at_saturation": best["p95_ms"],
        "max_tx_per_s": _max_rate(steps),
    }


def _max_rate(steps: list[dict[str, Any]]) -> float | None:
    rates = [s["tx_per_s"] for s in steps if s["tx_per_s"] is not None]
    return max(rates) if rates else None


async def _run(opts: BenchOptions, cluster: Cluster) -> dict[str, Any]:
    names = [n.config.name for n in cluster.nodes]
    _say(f"set-up: {len(names)} nodes, registering assets, auditors and a KYC subject")
    workload = await process_setup(cluster)
    idle = await get_idle_cpu(cluster, opts.idle_s)
    slot = 0
    sweep_steps: list[dict[str, Any]] = []
    for k, rate in enumerate(opts.sweep):
        step = await process_step(
            cluster,
            workload,
            slot,
            rate,
            min(opts.warmup_s, 5.0),
            opts.sweep_duration_s,
            opts,
            f"sweep {k + 1}/{len(opts.sweep)}",
        )
        slot += len(step.plan)
        summary = compute_step_summary(step, names, cluster.roles)
        summary.pop("series")
        summary.pop("samples")
        sweep_steps.append(summary)
        _say(
            f"sweep {rate:g} tx/s -> {_fmt(summary['tx_per_s'])} tx/s confirmed, "
            f"p95 {_fmt(summary['p95_ms'])} ms, rejected {summary['rejected_txs']}"
        )
    step = await process_step(
        cluster, workload, slot, opts.rate, opts.warmup_s, opts.duration_s, opts, "run"
    )
    summary = compute_step_summary(step, names, cluster.roles)
    _add_marginal_cpu(summary, idle, names)
    _say("measuring the Ed25519 verification floor")
    floor = compute_verify_floor_us()
    summary["verify_floor_us"] = floor
    cpu = summary["cpu_us_per_tx_per_node"]
    summary["cpu_vs_floor"] = cpu / floor if cpu else None
    marginal = summary["cpu_marginal_us_per_tx_per_node"]
    summary["cpu_marginal_vs_floor"] = marginal / floor if marginal else None
    summary["nodes"] = {
        "total": len(names),
        "pbft": cluster.roles.count("pbft"),
        "pos": cluster.roles.count("pos"),
        "names": names,
    }
    summary["network"] = cluster.network
    summary["tx_mix"] = {k: MIX_CYCLE.count(k) / len(MIX_CYCLE) for k in sorted(set(MIX_CYCLE))}
    if sweep_steps:
        summary["sweep"] = sweep_steps
        summary["saturation"] = compute_saturation(sweep_steps)
    summary["paper_table3"] = PAPER
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
    }
    summary["command"] = opts.command
    summary["machine"]["loadavg_at_start"] = list(_LOADAVG_AT_START)
    summary["tick_ms"] = opts.tick_ms
    summary["batch_max_txs"] = opts.batch_max_txs or Limits().batch_max_txs
    summary["empty_block_interval_ms"] = (
        opts.empty_block_interval_ms or Limits().empty_block_interval_ms
    )
    summary["experiments"] = get_experiment_env(opts) if cluster.launched else {}
    summary["epoch_length"] = opts.epoch_length if cluster.launched else None
    return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run_bench(opts: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark described by ``opts``; returns the report dict (not yet written).

    Always stops the nodes and namespaces it started, also on error.
    """
    error = opts.get_error()
    if error is not None:
        raise BenchError(error)
    opts.out.mkdir(parents=True, exist_ok=True)
    _LOADAVG_AT_START[:] = list(os.getloadavg())
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cluster = process_attach(opts.attach) if opts.attach else process_launch(opts)
    try:
        report = trio.run(_run, opts, cluster)
        report["started_utc"] = started
    finally:
        if not opts.keep:
            _say("stopping the cluster")
            process_shutdown(cluster)
    if opts.profile and cluster.launched and not opts.keep:
        profiled = [cluster.nodes[i] for i in get_profiled(cluster)]
        report["profile"] = compute_profile_text([get_profile_path(opts, n) for n in profiled])
        report["profile_note"] = (
            "node00 and the first PoS node ran under cProfile, which slows them: "
            "latency and CPU figures of a profiled run are not headline figures"
        )
    return report
