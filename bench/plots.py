"""PNG plots of a run: latency CDF, and throughput and latency over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def process_write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """Write ``latency_cdf.png`` and ``timeline.png`` under ``out``; returns the paths."""
    series = report.get("series", {})
    written = []
    confirm = sorted(series.get("confirm_ms", []))
    fig, ax = plt.subplots(figsize=(7, 4))
    if confirm:
        n = len(confirm)
        ax.plot(confirm, [(i + 1) / n for i in range(n)], label="submit -> confirmed")
    ax.axvline(148, color="grey", linestyle="--", label="paper p95 (148 ms)")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of transactions")
    ax.set_title(f"Confirmation latency CDF at {report.get('offered_rate')} tx/s offered")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = out / "latency_cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    sent = series.get("sent_per_s", [])
    confirmed = series.get("confirmed_per_s", [])
    p95 = series.get("p95_ms_per_s", [])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(range(len(sent)), sent, label="sent tx/s")
    top.plot(range(len(confirmed)), confirmed, label="confirmed tx/s (measured txs)")
    top.set_ylabel("tx/s")
    top.grid(True, alpha=0.3)
    top.legend()
    warm = series.get("warmup_s", 0)
    for axis in (top, bottom):
        axis.axvline(warm, color="grey", linestyle=":", label="end of warm-up")
    xs = [i for i, v in enumerate(p95) if v is not None]
    bottom.plot(xs, [p95[i] for i in xs], color="tab:red", label="p95 submit -> confirmed")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("seconds since the first send")
    bottom.grid(True, alpha=0.3)
    bottom.legend()
    fig.tight_layout()
    path = out / "timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
