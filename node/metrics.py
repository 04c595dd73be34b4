"""Prometheus metrics of one node (a private registry, so tests can run many nodes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.148, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)


class CounterSnapshotCollector(Collector):
    """Exposes a dict of monotonically increasing counters, read at each scrape, as
    one counter family with a ``counter`` label (``NAME_total{counter="..."}``)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], dict[str, int]]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the family with every counter the reader returns, in name order."""
        family = CounterMetricFamily(self._name, self._documentation, labels=["counter"])
        for counter, value in sorted(self._read().items()):
            family.add_metric([counter], value)
        yield family


class NodeMetrics:
    """The node's gauges, counters and histograms."""

    def __init__(self, node_name: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("dmchain_height", "Height of the last committed block", registry=r)
        self.settled_height = Gauge(
            "dmchain_settled_height", "Height of the last settled checkpoint", registry=r
        )
        self.view = Gauge("dmchain_view", "Current PBFT view", registry=r)
        self.view_changes = Counter("dmchain_view_changes", "View changes seen", registry=r)
        self.mempool_size = Gauge(
            "dmchain_mempool_size", "Transactions in the mempool and proposal pool", registry=r
        )
        self.peers = Gauge("dmchain_peers", "Connected consortium peers", registry=r)
        self.committed_txs = Counter("dmchain_committed_txs", "Committed transactions", registry=r)
        self.committed_blocks = Counter("dmchain_committed_blocks", "Committed blocks", registry=r)
        self.persist_writes = Counter(
            "dmchain_persist_writes",
            "Synced group commits (ledger batches and consensus records together)",
            registry=r,
        )
        self.txs_submitted = Counter(
            "dmchain_txs_submitted", "Transactions admitted at this node", registry=r
        )
        self.txs_escalated = Counter(
            "dmchain_txs_escalated",
            "Transactions forwarded to the leader and sent to every replica after the delay",
            registry=r,
        )
        self.heap_trim_seconds = Counter(
            "dmchain_heap_trim_seconds",
            "Time spent returning free C heap pages to the operating system (node/heap.py)",
            registry=r,
        )
        self.bad_frames = Counter("dmchain_bad_frames", "Malformed frames dropped", registry=r)
        self.bad_txs = Counter("dmchain_bad_txs", "Invalid transactions in batches", registry=r)
        self.inbox_dropped = Counter(
            "dmchain_inbox_dropped", "Frames dropped because the inbox was full", registry=r
        )
        self.evidence = Counter("dmchain_evidence", "Equivocation evidence seen", registry=r)
        self.commit_latency = Histogram(
            "dmchain_commit_latency_seconds",
            "Submit-to-confirmed latency of transactions admitted here",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.block_exec = Histogram(
            "dmchain_block_execute_seconds", "Time to execute and store one block", registry=r
        )
        self.inbox_wait = Histogram(
            "dmchain_inbox_wait_seconds",
            "Time a batch of received frames waited in the inbox before processing",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.node_name = node_name

    def register_transport(self, read: Callable[[], dict[str, int]]) -> None:
        """Expose the transport's counters (frames, bytes, writes, reads, drops, ...) as
        ``dmchain_transport_total{counter=NAME}``; ``read`` is called at each scrape."""
        documentation = "Transport counters: frames and bytes in/out, writes, reads, drops, peers"
        self.registry.register(CounterSnapshotCollector("dmchain_transport", documentation, read))

    def observe_block(self, height: int, txs: int, seconds: float) -> None:
        """Record one executed block."""
        self.height.set(height)
        self.committed_blocks.inc()
        self.committed_txs.inc(txs)
        self.block_exec.observe(seconds)

    def render(self) -> bytes:
        """Return the exposition text."""
        return generate_latest(self.registry)
