"""Whole clusters of real node processes: load is confirmed and settled, every
node holds the same chain and state, the supply is conserved, and a node
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import signal

from conftest import (
    Cluster,
    MakeCluster,
    check_same_chain,
    get_genesis_supply,
    submit_transfers,
    wait_converged,
    wait_for_level,
    wait_until,
)


def _check_load(cluster: Cluster, per_node: int) -> None:
    """Send ``per_node`` transfers to every node; check confirm, settle, agreement, supply."""
    names = cluster.names
    # One /v1/txs batch per node in turn, so node i's hashes are hashes[i*per_node:...].
    hashes = submit_transfers(cluster, names, per_node, batch=per_node)
    assert len(set(hashes)) == per_node * len(names)
    docs: dict[bytes, dict[str, object]] = {}
    for i, name in enumerate(names):  # each node long-polls the transactions it admitted
        docs.update(wait_for_level(cluster, [name], hashes[i * per_node : (i + 1) * per_node],
                                   "confirmed"))
    top = max(int(str(doc["height"])) for doc in docs.values())
    # Settled: every node's last settled checkpoint covers the highest transaction ...
    wait_until(
        lambda: all(cluster.get_status(n)["settled_height"] >= top for n in names),
        f"every node to settle height {top}",
        cluster=cluster,
    )
    # ... and each node reports the transactions it admitted as settled.
    for i, name in enumerate(names):
        own = hashes[i * per_node : (i + 1) * per_node][-3:]
        settled = wait_for_level(cluster, [name], own, "settled")
        assert all(doc["settled"] for doc in settled.values())
    height = wait_converged(cluster, names, min_height=top)
    chain = check_same_chain(cluster, names, height)
    assert len({block_hash for block_hash, _ in chain}) == height
    included: set[bytes] = set()
    client = cluster.client(names[-1])
    for h in range(1, height + 1):
        included.update(bytes.fromhex(x) for x in client.get_block(h)["txs"])
    assert set(hashes) <= included
    genesis_supply = get_genesis_supply(cluster.home)
    for name in names:
        supply = cluster.client(name).get_supply()
        assert supply["total"] == genesis_supply == supply["genesis_supply"], (name, supply)
    receiver = cluster.client(names[0]).get_account(bytes(32 * [7]))
    assert receiver["balance"] == len(hashes)


def test_four_replicas_confirm_and_settle_1000_transfers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(pbft=4, pos=2)
    _check_load(cluster, per_node=1000 // 6 + 1)


def test_ten_plus_eight_confirm_and_settle_1000_transfers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(pbft=10, pos=8, clients=18)
    _check_load(cluster, per_node=1000 // 18 + 1)


def test_sigterm_exits_zero_and_restarts_with_same_head(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(pbft=4, pos=1)
    names = cluster.names
    hashes = submit_transfers(cluster, names, 20)
    wait_for_level(cluster, names, hashes, "settled")  # the epoch is closed: no more blocks
    height = wait_converged(cluster, names)
    for name in ("node00", "node04"):  # a replica and a PoS validator
        # Restart the node as a child of the test so its exit status can be read.
        cluster.stop(name)
        proc = cluster.spawn(name)
        before = wait_converged(cluster, names, min_height=height)
        head = cluster.get_status(name)
        assert head["height"] == before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, cluster.describe()
        cluster.node(name).pid_path.unlink(missing_ok=True)
        cluster.forget(name)
        log = cluster.get_log(name)
        assert "event=shutdown signal=SIGTERM" in log
        assert f"event=node_stopped name={name} height={before}" in log
        # Nothing after the last line: no error from finalisers at interpreter exit.
        assert log.rstrip().endswith(f"event=node_stopped name={name} height={before}"), log[-600:]
        proc = cluster.spawn(name)
        after = cluster.get_status(name)
        assert after["height"] >= before
        assert cluster.client(name).get_block(before)["hash"] == head["block_hash"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, cluster.describe()
        cluster.node(name).pid_path.unlink(missing_ok=True)
        cluster.forget(name)
        cluster.start(name)
    more = submit_transfers(cluster, names, 5, first_client=len(names))
    wait_for_level(cluster, names, more, "confirmed")
    wait_converged(cluster, names, min_height=height + 1)
