"""Write a run's ``report.json`` and ``report.md`` (beside the paper's Table 3).

report.json keys (all times in milliseconds unless named ``_s``/``_us``):

- ``tx_per_s``: sustained confirmed tx/s over the measured window (the PoS
  observer node's committed-transaction counter, read at the window's ends);
- ``p50_ms``/``p95_ms``/``p99_ms``/``max_ms``: submit -> confirmed;
  ``settle_p50_ms``/``settle_p95_ms``: submit -> settled;
- ``settlement_failure_rate``: (lost + unsettled + mismatched + outcome
  mismatches) / accepted. Lost: accepted but in no block. Unsettled: in a
  block above the lowest settled height after the drain. Mismatched: the
  ingress node's tracker names another height or block than the chain's
  first inclusion. Outcome mismatch: the ingress tracker and another node's
  ledger receipt disagree on success (checked for every transaction included
  in more than one block and a sample of others);
- ``cpu_us_per_tx_per_node`` (mean over nodes) and ``cpu_us_per_tx_by_node``;
- ``verify_floor_us``: one PyNaCl Ed25519 verify, measured in the same run;
- ``nodes``, ``duration_s``, ``offered_rate`` and everything else a reader
  needs to judge the numbers (rejections, drain, agreement, generator CPU).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

REQUIRED_KEYS = (
    "tx_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "settle_p95_ms",
    "settlement_failure_rate",
    "cpu_us_per_tx_per_node",
    "verify_floor_us",
    "nodes",
    "duration_s",
    "offered_rate",
)

CLOCKS = (
    "**Clocks.** *Submit* is the load generator's wall clock (`time.time()`) read "
    "immediately before the `POST /v1/txs` request carrying the transaction is "
    "written. *Confirmed* is the ingress node's wall clock when it executed the "
    "block holding the transaction (its tracker's `confirmed_ms`: the moment "
    "`GET /v1/tx` and the long-poll `/wait` start answering *confirmed*). "
    "*Settled* is the ingress node's wall clock when a PoS checkpoint covering "
    "the block settled (`settled_ms`). Generator and nodes run on the same host, "
    "so all three read the same system clock (1 ms resolution on the node side). "
    "As a client-side cross-check, twice a second during the window the "
    "generator long-polls `/v1/tx/{hash}/wait?level=confirmed` for the latest "
    "sent transaction and times the answer on its own clock (row *client probe*). "
    "Throughput and CPU use the observer node's `dmchain_committed_txs` counter "
    "and /proc utime+stime, sampled once a second; the window runs from the "
    "first sample after warm-up to the last one inside the window."
)


def get_missing_keys(report: dict[str, Any]) -> list[str]:
    """Return the required report.json keys that ``report`` lacks."""
    return [k for k in REQUIRED_KEYS if k not in report]


def _d(report: dict[str, Any], key: str) -> dict[str, Any]:
    value = report.get(key)
    return value if isinstance(value, dict) else {}


def _f(value: Any, digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value * scale:,.{digits}f}{suffix}"
    return str(value)


def compute_markdown(report: dict[str, Any]) -> str:
    """Return report.md for ``report`` (pure)."""
    paper = _d(report, "paper_table3")
    nodes = _d(report, "nodes")
    net = _d(report, "network")
    lines = [
        "# dmchain benchmark",
        "",
        f"Started {report.get('started_utc', '?')} UTC. Command: `{report.get('command', '')}`",
        "",
        f"Cluster: {nodes.get('total')} nodes ({nodes.get('pbft')} PBFT replicas + "
        f"{nodes.get('pos')} PoS validators), each its own OS process with libp2p and "
        f"LevelDB, on one machine with {_d(report, 'machine').get('cpus')} CPUs. "
        f"Network: {net.get('mode')} {net.get('note', '')}",
        "",
        f"Load: open loop at {_f(report.get('offered_rate'), 0)} tx/s offered, "
        f"{_f(report.get('warmup_s'), 0)} s warm-up (not measured), "
        f"{_f(report.get('duration_s'), 0)} s measured; requests every "
        f"{report.get('tick_ms')} ms per node. Mix: "
        + ", ".join(f"{k} {v * 100:.0f} %" for k, v in _d(report, "tx_mix").items())
        + ".",
        "",
        f"Node settings: batch_max_txs {report.get('batch_max_txs')}; PoS epoch "
        f"{report.get('epoch_length') or 'from the attached genesis'} blocks; experiment "
        f"overrides: {report.get('experiments') or 'none'}.",
        "",
        "## Against the paper's Table 3",
        "",
        "| metric | this run | paper (Table 3) |",
        "|---|---|---|",
        f"| confirmation latency p95 | {_f(report.get('p95_ms'))} ms | "
        f"{_f(paper.get('p95_ms'), 0)} ms |",
        f"| throughput (confirmed, sustained) | {_f(report.get('tx_per_s'))} tx/s | "
        f"{_f(paper.get('tx_per_s'), 0)} tx/s |",
        f"| settlement failure rate | {_f(report.get('settlement_failure_rate'), 3, 100, ' %')} "
        f"| {_f(paper.get('settlement_failure_rate'), 2, 100, ' %')} |",
        "",
        "## All figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| offered rate | {_f(report.get('offered_rate'), 0)} tx/s |",
        f"| confirmed tx/s (window) | {_f(report.get('tx_per_s'))} |",
        f"| submit -> confirmed p50 / p95 / p99 / max | {_f(report.get('p50_ms'))} / "
        f"{_f(report.get('p95_ms'))} / {_f(report.get('p99_ms'))} / "
        f"{_f(report.get('max_ms'))} ms |",
        f"| submit -> settled p50 / p95 / max | {_f(report.get('settle_p50_ms'))} / "
        f"{_f(report.get('settle_p95_ms'))} / {_f(report.get('settle_max_ms'))} ms |",
        f"| client probe (long-poll, client clock) p50 / p95, n | "
        f"{_f(_d(report, 'client_probe').get('p50_ms'))} / "
        f"{_f(_d(report, 'client_probe').get('p95_ms'))} ms, "
        f"{_d(report, 'client_probe').get('count')} |",
        f"| planned / accepted / refused at ingress | {report.get('planned_txs')} / "
        f"{report.get('accepted_txs')} / {report.get('rejected_txs')} "
        f"{report.get('rejections') or ''} |",
        f"| lost / unsettled / mismatched / failed receipts | {report.get('lost_txs')} / "
        f"{report.get('unsettled_txs')} / {report.get('mismatched_txs')} / "
        f"{report.get('failed_receipts')} (statuses read for "
        f"{report.get('status_checked_txs')}) |",
        f"| transactions included in more than one block | {report.get('duplicate_inclusions')} |",
        f"| outcome differs between ingress tracker and another node's receipt | "
        f"{report.get('outcome_mismatches')} (of {report.get('outcome_checked_txs')} "
        "cross-checked) |",
        f"| view changes | {report.get('view_changes')} |",
        f"| CPU per confirmed tx per node (mean; PBFT / PoS) | "
        f"{_f(report.get('cpu_us_per_tx_per_node'))} us "
        f"({_f(report.get('cpu_us_per_tx_pbft'))} / {_f(report.get('cpu_us_per_tx_pos'))}) |",
        f"| idle CPU per node (no load, before the run) | "
        f"{_f(report.get('cpu_idle_share_per_node'), 1, 100, ' %')} of a core |",
        f"| CPU per tx per node above idle (mean) | "
        f"{_f(report.get('cpu_marginal_us_per_tx_per_node'))} us "
        f"({_f(report.get('cpu_marginal_vs_floor'), 2)} x floor) |",
        f"| Ed25519 verify floor (same run) | {_f(report.get('verify_floor_us'))} us |",
        f"| CPU per tx per node / floor | {_f(report.get('cpu_vs_floor'), 2)} x |",
        f"| peak resident memory, worst node | "
        f"{_f(_d(report, 'memory').get('max_peak_rss_mb'))} MB |",
        f"| RSS growth over the run, worst node | "
        f"{_f(_d(report, 'memory').get('max_rss_growth_mb'))} MB |",
        f"| RSS growth rate over the second half, worst node | "
        f"{_f(_d(report, 'memory').get('max_late_rss_growth_mb_per_min'))} MB/min |",
        f"| generator CPU share (of one core) | "
        f"{_f(report.get('generator_cpu_share'), 1, 100, ' %')} |",
        f"| host CPU busy (all cores, whole host) | "
        f"{_f(report.get('host_cpu_busy_share'), 1, 100, ' %')} |",
        f"| event loop waiting for a CPU (run queue), share of wall time (PBFT / PoS) | "
        f"{_f(report.get('runqueue_wait_share_pbft'), 1, 100, ' %')} / "
        f"{_f(report.get('runqueue_wait_share_pos'), 1, 100, ' %')} |",
        f"| generator schedule lag p99 | {_f(report.get('send_lag_p99_ms'))} ms |",
        f"| drained and settled after the load | {report.get('drained')} |",
        f"| all nodes agree (block hash + state digest) | {report.get('agreement')} |",
        "",
        CLOCKS,
        "",
    ]
    lines += _breakdown(report)
    lines += _node_table(report)
    lines += _sweep_table(report)
    profile = report.get("profile")
    if profile:
        lines += ["## Profile", "", "```", str(profile).rstrip(), "```", ""]
    lines += [
        "## Plots",
        "",
        "![latency CDF](latency_cdf.png)",
        "",
        "![throughput and latency over time](timeline.png)",
        "",
    ]
    return "\n".join(lines)


def _breakdown(report: dict[str, Any]) -> list[str]:
    parts = report.get("latency_breakdown")
    if not parts:
        return []
    out = [
        "## Where the confirmation latency goes",
        "",
        "| segment | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for key in ("submit_to_admitted", "submit_to_proposed", "proposed_to_confirmed"):
        row = parts.get(key, {})
        out.append(
            f"| {key.replace('_', ' ')} | {_f(row.get('p50'))} | {_f(row.get('p95'))} | "
            f"{_f(row.get('p99'))} |"
        )
    return [*out, "", str(parts.get("note", "")), ""]


def _node_table(report: dict[str, Any]) -> list[str]:
    cpu = _d(report, "cpu_us_per_tx_by_node")
    memory = _d(report, "memory")
    peak = memory.get("peak_rss_mb_by_node", {})
    growth = memory.get("rss_growth_mb_by_node", {})
    names = _d(report, "nodes").get("names", [])
    if not names:
        return []
    out = [
        "## Per node",
        "",
        "| node | CPU us / confirmed tx | peak RSS MB | RSS growth MB |",
        "|---|---|---|---|",
    ]
    for name in names:
        out.append(
            f"| {name} | {_f(cpu.get(name))} | {_f(peak.get(name))} | {_f(growth.get(name))} |"
        )
    return [*out, ""]


def _sweep_table(report: dict[str, Any]) -> list[str]:
    steps = report.get("sweep")
    if not steps:
        return []
    sat = _d(report, "saturation")
    out = [
        "## Sweep",
        "",
        f"Saturation point (highest offered rate with confirmed >= 95 % of offered, no "
        f"refusals or losses, p95 < 1 s): **{_f(sat.get('saturation_rate'), 0)} tx/s** "
        f"(highest confirmed rate seen: {_f(sat.get('max_tx_per_s'))} tx/s).",
        "",
        "| offered tx/s | confirmed tx/s | p50 ms | p95 ms | p99 ms | settle p95 ms | "
        "refused | lost | CPU us/tx/node |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        out.append(
            f"| {_f(s.get('offered_rate'), 0)} | {_f(s.get('tx_per_s'))} | "
            f"{_f(s.get('p50_ms'))} | {_f(s.get('p95_ms'))} | {_f(s.get('p99_ms'))} | "
            f"{_f(s.get('settle_p95_ms'))} | {s.get('rejected_txs')} | {s.get('lost_txs')} | "
            f"{_f(s.get('cpu_us_per_tx_per_node'))} |"
        )
    return [*out, ""]


SAMPLE_COLUMNS = (
    "tx",
    "node",
    "height",
    "send_ms",
    "admitted_ms",
    "proposed_ms",
    "confirmed_ms",
    "settled_ms",
    "status",
)


def process_write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``out/report.json`` (without the per-transaction series), ``out/report.md``
    and, when the report has them, the per-transaction ``out/samples.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    slim = dict(report)
    samples = slim.pop("samples", None)
    if samples is not None:
        process_write_samples(samples, out / "samples.csv")
    series = dict(slim.get("series", {}))
    series.pop("confirm_ms", None)
    slim["series"] = series
    (out / "report.json").write_text(json.dumps(slim, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(compute_markdown(report))


def process_write_samples(samples: list[tuple[Any, ...]], path: Path) -> None:
    """Write one CSV row per status-checked transaction of the measured window.

    Columns (:data:`SAMPLE_COLUMNS`): plan index, ingress node index, block
    height, then times in milliseconds on the host's wall clock: sent by the
    client, admitted by the ingress node, proposed (the block's timestamp),
    confirmed and settled at the ingress node (0 where not reached), and the
    ingress node's status. Confirmation latency is ``confirmed_ms - send_ms``;
    a reviewer can recompute every percentile of the report from this file.
    """
    with path.open("w", newline="", encoding="ascii") as handle:
        writer = csv.writer(handle)
        writer.writerow(SAMPLE_COLUMNS)
        for row in samples:
            writer.writerow(f"{v:.1f}" if isinstance(v, float) else v for v in row)
