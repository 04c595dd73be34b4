"""CI smoke run: ``dmchain bench --quick`` produces a well-formed report with no loss.

Only the report's shape and the loss counters are asserted; no timing assertions.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from bench.report import REQUIRED_KEYS, SAMPLE_COLUMNS
from bench.stats import compute_percentile


def test_quick_bench_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--base-port",
            "30400",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    missing = [k for k in REQUIRED_KEYS if k not in report]
    assert not missing, missing
    assert report["nodes"]["total"] == 6
    assert report["accepted_txs"] > 0
    assert report["accepted_txs"] == report["planned_txs"]
    assert report["lost_txs"] == 0
    assert report["unsettled_txs"] == 0
    assert report["mismatched_txs"] == 0
    assert report["failed_receipts"] == 0
    assert report["settlement_failure_rate"] == 0
    assert report["agreement"]["agree"] is True
    assert report["verify_floor_us"] > 0
    assert 0 < report["host_cpu_busy_share"] <= 1
    assert report["rejections"] == {}  # the generator's client lost no request
    # Throughput needs two status samples inside the window; a starved machine
    # may not give them, so the smoke run only checks the figure's type.
    assert report["tx_per_s"] is None or report["tx_per_s"] >= 0
    with (out / "samples.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == SAMPLE_COLUMNS
    assert len(rows) - 1 == report["status_checked_txs"]
    confirm_at, send_at = SAMPLE_COLUMNS.index("confirmed_ms"), SAMPLE_COLUMNS.index("send_ms")
    latencies = [float(r[confirm_at]) - float(r[send_at]) for r in rows[1:] if float(r[confirm_at])]
    recomputed = compute_percentile(latencies, 95)
    assert recomputed is not None and abs(recomputed - report["p95_ms"]) < 0.5
    md = (out / "report.md").read_text()
    assert "Table 3" in md and "4,750" in md
    for png in ("latency_cdf.png", "timeline.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bench: run t=" in result.stdout  # the progress line
    # the cluster was stopped: no node of the run is left
    for pid_file in (out / "testnet").glob("node*/node.pid"):
        raise AssertionError(f"{pid_file} left behind")
