"""Faults with real node processes: the PBFT leader is killed under load, and
nodes whose data directory was deleted resync from their peers.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

from conftest import (
    MakeCluster,
    check_same_chain,
    get_block_tx_hashes,
    get_senders,
    send_transfers,
    submit_transfers,
    wait_converged,
    wait_for_level,
    wait_until,
)


def test_leader_killed_under_load_view_changes_and_it_catches_up(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(pbft=4, pos=1)
    names = cluster.names
    replicas = names[:4]
    status = cluster.get_status(replicas[0])
    leader, view = status["leader"], status["view"]
    assert leader in replicas
    live = [n for n in names if n != leader]
    live_replicas = [n for n in replicas if n != leader]
    first = submit_transfers(cluster, live, 40)
    wait_for_level(cluster, live, first, "confirmed")

    # Steady load (to live nodes only, one sender each) before, during and after the kill.
    senders = get_senders(cluster, live, first_client=len(names))
    sent: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        try:
            while not stop.is_set():
                sent.extend(send_transfers(cluster, senders, 5))
                time.sleep(0.05)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    sender = threading.Thread(target=load)
    sender.start()
    try:
        wait_until(lambda: len(sent) >= 100, "load in flight", timeout=120, interval=0.02)
        probe = cluster.client(live[0])
        confirmed_before = {
            h for h in first + list(sent)
            if probe.get_tx(h)["status"] in ("confirmed", "settled")
        }
        assert confirmed_before
        pid = cluster.node(leader).get_pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        cluster.forget(leader)
        wait_until(
            lambda: all(cluster.get_status(n)["view"] > view for n in live_replicas),
            "a view change on the live replicas",
            cluster=cluster,
        )
        after_kill = len(sent)
        wait_until(lambda: len(sent) >= after_kill + 50, "load after the kill", timeout=120)
    finally:
        stop.set()
        sender.join(timeout=120)
    assert not errors, errors
    wait_for_level(cluster, live, sent, "confirmed")
    third = submit_transfers(cluster, live, 10, first_client=2 * len(names))
    wait_for_level(cluster, live, third, "settled")
    height = wait_converged(cluster, live)
    for name in live:
        assert confirmed_before <= get_block_tx_hashes(cluster, name, height), name
    assert all(cluster.get_status(n)["leader"] != leader for n in live_replicas)
    for name in live_replicas:  # operators see the view change in the log
        log = cluster.get_log(name)
        assert f"event=view_change_started view={view + 1}" in log, name
        assert "event=view_entered view=" in log, name

    cluster.node(leader).pid_path.unlink(missing_ok=True)
    cluster.start(leader)
    fourth = submit_transfers(cluster, live, 5, first_client=3 * len(names))
    wait_for_level(cluster, live, fourth, "confirmed")
    height = wait_converged(cluster, names, min_height=height + 1)
    check_same_chain(cluster, names, height)


def test_node_with_deleted_data_resyncs_pos_and_replica(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(pbft=4, pos=2)
    names = cluster.names
    first = submit_transfers(cluster, names, 30)
    wait_for_level(cluster, names, first, "settled")
    height = wait_converged(cluster, names)
    leader = cluster.get_status(names[0])["leader"]
    replica = next(n for n in names[:4] if n != leader)
    for round_no, name in enumerate(("node05", replica), start=1):
        cluster.stop(name)
        shutil.rmtree(cluster.node(name).config.data_path)
        cluster.start(name)
        assert cluster.get_status(name)["height"] <= height
        # Resync with no new traffic, then take part in new traffic.
        height = wait_converged(cluster, names, min_height=height)
        others = [n for n in names if n != name]
        more = submit_transfers(cluster, others, 5, first_client=round_no * len(names))
        wait_for_level(cluster, others, more, "settled")
        height = wait_converged(cluster, names, min_height=height + 1)
        check_same_chain(cluster, names, height)
        wait_until(
            lambda: cluster.get_status(name)["settled_height"]  # noqa: B023
            == cluster.get_status(others[0])["settled_height"]  # noqa: B023
            > 0,
            f"{name} to learn the settled checkpoints",
            cluster=cluster,
        )
