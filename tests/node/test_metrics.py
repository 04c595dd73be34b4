"""The node's Prometheus exposition includes the transport's counters, read at each scrape."""

from __future__ import annotations

from node.metrics import NodeMetrics
from node.transport import TransportMetrics


def _sample(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def test_transport_counters_are_exposed_and_read_at_each_scrape() -> None:
    transport = TransportMetrics()
    metrics = NodeMetrics("node00")
    metrics.register_transport(transport.as_dict)
    transport.writes, transport.frames_out = 3, 7
    first = metrics.render().decode()
    assert _sample(first, 'dmchain_transport_total{counter="writes"}') == 3
    assert _sample(first, 'dmchain_transport_total{counter="frames_out"}') == 7
    assert "# TYPE dmchain_transport_total counter" in first
    transport.writes += 2
    second = metrics.render().decode()
    assert _sample(second, 'dmchain_transport_total{counter="writes"}') == 5
    for name in TransportMetrics().as_dict():
        assert f'dmchain_transport_total{{counter="{name}"}}' in second
