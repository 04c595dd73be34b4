"""Unit tests of the benchmark's pure parts: statistics, workload, report, namespaces."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench import collect, loadgen, stats
from bench.harness import compute_busy_share, compute_saturation, compute_status_sample
from bench.netns import compute_plan
from bench.procstats import get_host_cpu_ticks
from bench.report import REQUIRED_KEYS, compute_markdown, get_missing_keys
from bench.workload import MIX_CYCLE, Workload, WorkloadError, build_workload
from consensus.crypto import compute_hash, compute_seed_from_label
from consensus.invariant import InvariantError
from ledger.tx import TxKind, decode_tx, get_tx_error


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert stats.compute_percentile(values, 50) == 50
    assert stats.compute_percentile(values, 95) == 95
    assert stats.compute_percentile(values, 100) == 100
    assert stats.compute_percentile([7.0], 99) == 7.0
    assert stats.compute_percentile([], 50) is None
    with pytest.raises(ValueError):
        stats.compute_percentile(values, 0)


def test_per_second_buckets() -> None:
    assert stats.compute_per_second([0, 999, 1000, 2500, 5000], 0, 3) == [2, 1, 1]
    p95 = stats.compute_latency_per_second([0, 10, 1500], [5.0, 7.0, 9.0], 0, 3)
    assert p95 == [7.0, 9.0, None]


def _workload(nodes: int = 3) -> Workload:
    seeds = [compute_seed_from_label(f"c{i}") for i in range(nodes + 1)]
    gov = [compute_seed_from_label(f"g{i}") for i in range(3)]
    return build_workload("bench-test", seeds, gov, list(range(nodes)))


def test_workload_signs_valid_transactions_in_nonce_order() -> None:
    workload = _workload()
    setup = workload.compute_setup(governance_seq=0)
    kinds = [k for _n, k, _r in setup]
    assert kinds.count("register_auditor") == 3 and kinds.count("register_asset") == 3
    plan = workload.compute_batch(len(MIX_CYCLE) * 3, 0)
    nonces: dict[bytes, list[int]] = {}
    for tx in plan:
        raw = bytes.fromhex(tx.hex)
        assert get_tx_error(raw, "bench-test") is None
        decoded = decode_tx(raw)
        assert decoded.tx_hash == tx.tx_hash == compute_hash(raw)
        nonces.setdefault(decoded.sender, []).append(decoded.nonce)
        assert tx.node == [c.signer.public_key for c in workload.clients].index(decoded.sender)
    for sequence in nonces.values():
        assert sequence == list(range(1, len(sequence) + 1))  # nonce 0 was the set-up asset
    counts = {k: sum(1 for t in plan if t.kind == k) for k in set(MIX_CYCLE)}
    assert counts["transfer"] == 16 * 3 and counts["settle_access"] == 3


def test_settlement_names_the_clients_own_request() -> None:
    workload = _workload(2)
    workload.compute_setup(governance_seq=0)
    plan = workload.compute_batch(len(MIX_CYCLE) * 2, 0)
    requests = {t.tx_hash for t in plan if t.kind == "request_access"}
    for tx in plan:
        if tx.kind == "settle_access":
            decoded = decode_tx(bytes.fromhex(tx.hex))
            assert decoded.kind == TxKind.SETTLE_ACCESS
            assert decoded.args.request_id in requests


def test_workload_refuses_too_few_accounts() -> None:
    seeds = [compute_seed_from_label("only")]
    with pytest.raises(WorkloadError):
        build_workload("x", seeds, [seeds[0]], [0, 1])


def test_saturation_is_the_highest_sustained_rate() -> None:
    def step(offered: float, got: float, p95: float, rejected: int = 0) -> dict[str, Any]:
        return {
            "offered_rate": offered,
            "tx_per_s": got,
            "p95_ms": p95,
            "rejected_txs": rejected,
            "lost_txs": 0,
        }

    steps = [step(100, 99, 50), step(200, 198, 80), step(400, 300, 900), step(300, 299, 90, 1)]
    result = compute_saturation(steps)
    assert result["saturation_rate"] == 200
    assert result["max_tx_per_s"] == 300
    assert compute_saturation([step(100, 10, 50)])["saturation_rate"] is None


def test_markdown_names_the_paper_figures() -> None:
    report: dict[str, Any] = dict.fromkeys(REQUIRED_KEYS)
    report.update({"p95_ms": 120.0, "tx_per_s": 300.0, "settlement_failure_rate": 0.0})
    report["paper_table3"] = {
        "p95_ms": 148.0,
        "tx_per_s": 4750.0,
        "settlement_failure_rate": 0.0012,
    }
    text = compute_markdown(report)
    assert "4,750" in text and "148" in text and "0.12 %" in text and "120.0 ms" in text
    assert get_missing_keys(report) == []
    assert get_missing_keys({}) == list(REQUIRED_KEYS)


def test_namespace_plan_names_fit_linux_limits() -> None:
    plan = compute_plan(18, 30000, 1.0)
    assert len(set(plan.addresses)) == 18 and len(set(plan.namespaces)) == 18
    assert all(len(n) <= 15 for n in [plan.bridge, *plan.namespaces])
    assert all(len(f"{n[:11]}p") <= 15 for n in plan.namespaces)


def test_marginal_cpu_subtracts_idle() -> None:
    from bench.harness import _add_marginal_cpu

    summary: dict[str, Any] = {
        "window_s": 10.0,
        "confirmed_in_window": 1000,
        "cpu_us_per_tx_by_node": {"a": 500.0, "b": 300.0},
    }
    # a: 500 ms CPU in the window, 20 ms/s idle -> 300 ms above idle -> 300 us/tx
    _add_marginal_cpu(summary, {"a": 20_000.0, "b": 0.0}, ["a", "b"])
    assert summary["cpu_marginal_us_per_tx_by_node"] == {"a": 300.0, "b": 300.0}
    assert summary["cpu_marginal_us_per_tx_per_node"] == 300.0
    assert summary["cpu_idle_share_by_node"] == {"a": 0.02, "b": 0.0}


def test_experiment_overrides_change_the_launched_node_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import node_runner
    from node import runtime

    for name in ("PbftConfig", "TICK_S", "MAX_PROPOSALS_IN_FLIGHT"):
        monkeypatch.setattr(runtime, name, getattr(runtime, name))  # restored after the test
    changed = node_runner.process_apply_overrides(
        {
            node_runner.ENV_PBFT_TIMEOUT_MS: "900",
            node_runner.ENV_IN_FLIGHT: "3",
            node_runner.ENV_ALL_TO_ALL_VOTES: "1",
        }
    )
    assert len(changed) == 3
    cfg = runtime.PbftConfig(chain_id="c", committee=(bytes(32),))
    assert cfg.base_timeout_ms == 900 and cfg.collect_votes is False
    assert runtime.MAX_PROPOSALS_IN_FLIGHT == 3
    assert node_runner.process_apply_overrides({}) == []


def test_memory_stats_say_where_the_resident_memory_is() -> None:
    from bench.node_runner import compute_memory_stats

    class MemoryStatsMarker:
        pass

    held = [MemoryStatsMarker() for _ in range(1000)]
    stats = compute_memory_stats()
    assert stats["rss_kb"]["VmRSS"] > 0 and "RssAnon" in stats["rss_kb"]
    assert stats["python_blocks"] > 1000
    counts = dict(stats["types"])
    assert counts.get("MemoryStatsMarker", 0) >= len(held)
    if stats["malloc"]:  # glibc
        assert stats["malloc"]["uordblks"] > 0


def test_gc_pauses_count_the_collections_of_each_generation() -> None:
    import gc

    from bench.node_runner import GcPauses

    pauses = GcPauses()
    gc.callbacks.append(pauses.process_event)
    try:
        cycles = []
        for _ in range(100):
            a: list[object] = []
            a.append(a)  # a reference cycle only the collector frees
            cycles.append(a)
        del cycles, a
        gc.collect(2)
        gc.collect(0)
    finally:
        gc.callbacks.remove(pauses.process_event)
    summary = pauses.get_summary()
    assert summary["passes"][2] >= 1 and summary["passes"][0] >= 1
    assert summary["collected"][2] >= 100
    assert summary["total_ms"][2] >= summary["max_ms"][2] > 0


def test_late_memory_growth_tells_a_plateau_from_a_leak() -> None:
    from bench.harness import compute_late_growth_mb_per_min

    leak = [(float(t), 100 + 0.2 * t) for t in range(0, 601, 5)]  # 12 MB/min throughout
    plateau = [(float(t), min(100 + 0.5 * t, 200.0)) for t in range(0, 601, 5)]
    rate = compute_late_growth_mb_per_min(leak)
    assert rate is not None and abs(rate - 12.0) < 1e-6
    assert compute_late_growth_mb_per_min(plateau) == 0.0
    assert compute_late_growth_mb_per_min(leak[:2]) is None
    assert compute_late_growth_mb_per_min(leak[:6]) is None  # 25 s: too short to judge


def test_bench_options_refuse_an_epoch_length_outside_its_range(tmp_path: Any) -> None:
    from bench.harness import MAX_EPOCH_LENGTH, BenchOptions

    assert BenchOptions(out=tmp_path, epoch_length=100).get_error() is None
    for bad in (0, MAX_EPOCH_LENGTH + 1):
        error = BenchOptions(out=tmp_path, epoch_length=bad).get_error()
        assert error is not None and "--epoch-length" in error


def test_send_log_counts_answers_as_they_arrive() -> None:
    log = loadgen.new_log(5)
    log.process_outcome(3, loadgen.ACCEPTED)
    log.process_outcome(1, "bad_nonce")
    log.process_outcome(0, loadgen.ACCEPTED)
    assert (log.answered, log.refused, log.get_accepted_count()) == (3, 1, 2)
    assert log.last_accepted == 3  # the latest in plan order, not in answer order
    assert log.errors == {"bad_nonce": 1}
    assert log.outcome == ["", "bad_nonce", None, "", None]
    with pytest.raises(InvariantError):
        log.process_outcome(3, "bad_nonce")


def test_host_cpu_busy_share_counts_busy_ticks_of_all_cores() -> None:
    first = get_host_cpu_ticks()
    assert first is not None and 0 <= first[0] <= first[1]
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # busy for 20 ticks of this process alone
        pass
    last = get_host_cpu_ticks()
    assert last is not None and last[0] >= first[0] + 10
    share = compute_busy_share(first, last)
    assert share is not None and 0 < share <= 1
    assert compute_busy_share((10, 100), (40, 200)) == 0.3
    assert compute_busy_share((10, 100), (10, 100)) is None
    assert compute_busy_share(None, last) is None


def test_tracemalloc_can_be_limited_to_named_nodes() -> None:
    from bench.node_runner import is_traced_node

    argv = ["start", "--home", "/tmp/run/testnet/node03"]
    assert is_traced_node(argv, "")
    assert is_traced_node(argv, "node13,node03")
    assert not is_traced_node(argv, "node13")
    assert not is_traced_node(["start"], "node03")


def test_runqueue_wait_share_is_the_wait_over_the_window_wall_time() -> None:
    from bench.harness import Sample, compute_runqueue_wait_shares
    from bench.procstats import ProcSample

    def sample(t: float, waits: list[int | None]) -> Sample:
        procs = [ProcSample(0, 0, 0, w) for w in waits]
        return Sample(t, t * 1000, list(procs), 0.0, 0, 0, 0)

    window = [sample(0.0, [1_000_000, 0, None]), sample(10.0, [6_000_000, 0, 5])]
    shares = compute_runqueue_wait_shares(window, ["a", "b", "c"])
    assert shares == {"a": 0.5, "b": 0.0}  # c had no reading at the start
    assert compute_runqueue_wait_shares(window[:1], ["a", "b", "c"]) == {}


def test_runqueue_wait_is_read_for_a_live_process_and_none_for_a_gone_one() -> None:
    import os
    import subprocess

    from bench.procstats import get_runqueue_wait_us, get_sample

    wait = get_runqueue_wait_us(os.getpid())
    assert wait is not None and wait >= 0
    sample = get_sample(os.getpid())
    assert sample is not None and sample.wait_us is not None and sample.wait_us >= wait
    child = subprocess.Popen(["true"])
    child.wait()
    assert get_runqueue_wait_us(child.pid) is None


def test_status_sample_spreads_the_cap_over_the_measured_plan() -> None:
    assert compute_status_sample(10, 110, 100) is None
    sample = compute_status_sample(10, 1010, 100)
    assert sample is not None and len(sample) == 100
    assert min(sample) == 10 and max(sample) == 1000 and all(10 <= i < 1010 for i in sample)


def test_settled_reader_reads_when_due_and_again_until_settled() -> None:
    outcome: list[str | None] = ["", "", "refused", "", None, ""]
    send_ms = [1_000.0, 1_100.0, 1_200.0, 1_300.0, float("nan"), 1_500.0]
    reader = collect.SettledReader([], [(0, bytes(32))] * 6, 0, lambda i: i != 3)
    reader.process_sent(1, outcome, send_ms)  # stops at index 4, not answered yet
    first_due = 1_100.0 + collect.READ_AGE_MS
    assert reader.get_due(first_due - 1) == []
    assert reader.get_due(first_due) == [1]  # 0 is warm-up, 2 refused, 3 not wanted
    pending = collect.TxStatus("confirmed", 1_100, 1_150, 0, 4, "ab")
    reader.process_read([1], [pending], send_ms, first_due)
    assert reader.settled == {}
    age = first_due - 1_100.0
    assert reader.get_due(first_due + age - 1) == []
    assert reader.get_due(first_due + age) == [1]  # read again after as long as its age
    settled = collect.TxStatus("settled", 1_100, 1_150, 1_900, 4, "ab")
    reader.process_read([1], [settled], send_ms, first_due + age)
    assert reader.settled == {1: settled} and reader.get_due(1e12) == []
    outcome[4] = ""
    send_ms[4] = 1_400.0
    reader.process_sent(1, outcome, send_ms)
    assert reader.get_due(1e12) == [4, 5]
