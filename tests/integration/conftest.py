"""Shared fixtures of the integration tests: real node processes on loopback.

Every cluster is generated with ``dmchain testnet`` in a temporary directory
and started with ``dmchain cluster up`` (one OS process per node, its own
session, real libp2p, real LevelDB). A finalizer kills every node's process
group, so a failing test never leaves nodes behind.

Ports: each cluster gets its own base from :func:`port_bases` inside
28000-29999 (p2p on base+i, HTTP on base+100+i), so tests never collide.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.client import ClientError, NodeClient, Signer
from node.cluster import (
    NodeProcess,
    get_cluster_nodes,
    get_log_tail,
    is_process_alive,
    process_start_node,
    process_stop_node,
    process_wait_ready,
)
from node.testnet import get_client_seeds

REPO = Path(__file__).resolve().parents[2]
DMCHAIN = [sys.executable, "-m", "node.cli"]
PORT_FIRST = 28000
PORT_LAST = 29999
MAX_CLUSTER_NODES = 20  # bases inside one 200-port block are 20 apart
START_TIMEOUT_S = 180.0
WAIT_TIMEOUT_S = 240.0
CHAIN_ID = "dmchain-local"

_BASES = [
    PORT_FIRST + block * 200 + slot * MAX_CLUSTER_NODES
    for block in range((PORT_LAST + 1 - PORT_FIRST) // 200)
    for slot in range(5)
]
_handed_out: set[int] = set()


def _is_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get_next_port_base() -> int:
    """Return a port base not handed out before in this session whose ports are free.

    A testnet of up to 20 nodes uses p2p ports base..base+19 and HTTP ports
    base+100..base+119; five bases share each 200-port block without overlap.
    The search starts at an offset drawn from the process id, so two test
    sessions running at once rarely try the same base.
    """
    start = os.getpid() % len(_BASES)
    for i in range(len(_BASES)):
        base = _BASES[(start + i) % len(_BASES)]
        if base in _handed_out:
            continue
        ports = [*range(base, base + MAX_CLUSTER_NODES),
                 *range(base + 100, base + 100 + MAX_CLUSTER_NODES)]
        if all(_is_port_free(port) for port in ports):
            _handed_out.add(base)
            return base
    raise RuntimeError("no free port base left in 28000-29999")


def run_dmchain(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run one ``dmchain`` sub-command and fail the test with its output if it fails."""
    proc = subprocess.run(
        [*DMCHAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        pytest.fail(f"dmchain {' '.join(args)} exited {proc.returncode}:\n{output}")
    return proc


def wait_until(
    predicate: Callable[[], Any],
    what: str,
    timeout: float = WAIT_TIMEOUT_S,
    interval: float = 0.25,
    cluster: Cluster | None = None,
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``.

    The failure message carries the last log lines of ``cluster``'s nodes if given.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    logs = "" if cluster is None else "\n" + cluster.describe()
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error}){logs}"
    )


@dataclass
class Cluster:
    """A running testnet: its directory, node processes and HTTP clients."""

    home: Path
    nodes: list[NodeProcess]
    clients: dict[str, NodeClient] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Node names in order (PBFT replicas first)."""
        return [n.config.name for n in self.nodes]

    def node(self, name: str) -> NodeProcess:
        """Return the node called ``name``."""
        return next(n for n in self.nodes if n.config.name == name)

    def client(self, name: str) -> NodeClient:
        """Return (and cache) an HTTP client of node ``name``."""
        if name not in self.clients:
            self.clients[name] = NodeClient(self.node(name).config.http_url, timeout=60.0)
        return self.clients[name]

    def get_status(self, name: str) -> dict[str, Any]:
        """Return the status document of node ``name``."""
        return self.client(name).get_status()

    def get_signers(self, count: int, first: int = 0, probe: str | None = None) -> list[Signer]:
        """Return ``count`` funded client signers with their next nonce as ``probe`` sees it."""
        seeds = get_client_seeds(self.home)[first : first + count]
        signers = [Signer(seed, CHAIN_ID) for seed in seeds]
        client = self.client(probe or self.names[0])
        for signer in signers:
            signer.nonce = client.get_account(signer.public_key)["nonce"]
        return signers

    def start(self, name: str) -> None:
        """Start one node process and wait until it reports ready."""
        node = self.node(name)
        process_start_node(node)
        process_wait_ready([node], START_TIMEOUT_S)

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start node ``name`` as a child of this process (pid file, log); wait until ready.

        Unlike :meth:`start`, the caller holds the process and can read its exit status.
        """
        node = self.node(name)
        assert node.get_pid() is None, f"{name} is already running"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(node.log_path, "ab") as log:
            proc = subprocess.Popen(
                [*DMCHAIN, "start", "--home", str(node.config.home)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )
        node.pid_path.write_text(f"{proc.pid}\n")
        process_wait_ready([node], START_TIMEOUT_S)
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one node (``sig`` first, SIGKILL after 15 s) and forget its client."""
        process_stop_node(self.node(name), timeout=15.0, sig=sig)
        self.forget(name)

    def kill_all(self) -> None:
        """SIGKILL every node's process group (finalizer; safe to call twice)."""
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        for node in self.nodes:
            pid = node.get_pid()
            if pid is None:
                continue
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + 10
            while is_process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            node.pid_path.unlink(missing_ok=True)

    def forget(self, name: str) -> None:
        """Drop the cached HTTP client of node ``name`` (after it was stopped or killed)."""
        client = self.clients.pop(name, None)
        if client is not None:
            client.close()

    def get_log(self, name: str) -> str:
        """Return node ``name``'s whole log."""
        return self.node(name).log_path.read_text(errors="replace")

    def describe(self) -> str:
        """Return the last log lines of every node (for failure messages)."""
        return "\n".join(
            f"--- {n.config.name}\n{get_log_tail(n.log_path, 8)}" for n in self.nodes
        )


def start_cluster(
    home: Path, pbft: int, pos: int, epoch_length: int = 10, clients: int = 32
) -> Cluster:
    """Generate a testnet at ``home`` with ``dmchain testnet`` and start it with
    ``dmchain cluster up``; the caller must call :meth:`Cluster.kill_all`."""
    base = get_next_port_base()
    run_dmchain(
        "testnet", "--pbft", str(pbft), "--pos", str(pos), "--out", str(home),
        "--base-port", str(base), "--epoch-length", str(epoch_length),
        "--clients", str(clients),
    )
    cluster = Cluster(home, get_cluster_nodes(home))
    proc = subprocess.run(
        [*DMCHAIN, "cluster", "up", "--home", str(home), "--timeout", str(START_TIMEOUT_S)],
        cwd=REPO, capture_output=True, text=True, timeout=START_TIMEOUT_S + 60, check=False,
    )
    if proc.returncode != 0:
        cluster.kill_all()
        pytest.fail(f"cluster up failed:\n{proc.stdout}{proc.stderr}\n{cluster.describe()}")
    return cluster


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Factory: ``make_cluster(pbft, pos, epoch_length=10, clients=32)`` -> a running Cluster.

    Every node is killed (process group, SIGKILL) when the test ends, pass or fail.
    """
    started: list[Cluster] = []

    def make(pbft: int, pos: int, epoch_length: int = 10, clients: int = 32) -> Cluster:
        home = tmp_path / f"testnet{len(started)}"
        try:
            cluster = start_cluster(home, pbft, pos, epoch_length, clients)
        except BaseException:
            # a partly started cluster: kill what runs
            if (home / "genesis.json").exists():
                Cluster(home, get_cluster_nodes(home)).kill_all()
            raise
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.kill_all()


def get_genesis_supply(home: Path) -> int:
    """Return the token supply written in the testnet's genesis (balances plus stakes)."""
    genesis = json.loads((home / "genesis.json").read_text())
    balances = sum(int(v) for v in genesis["balances"].values())
    return balances + sum(int(v["stake"]) for v in genesis["validators"])


RECEIVER = bytes(32 * [7])


def get_senders(cluster: Cluster, targets: list[str], first_client: int = 0) -> dict[str, Signer]:
    """Return one funded sender per target node: client ``first_client + i`` for ``targets[i]``."""
    signers = cluster.get_signers(len(targets), first_client, probe=targets[0])
    return dict(zip(targets, signers, strict=True))


def send_transfers(
    cluster: Cluster, senders: dict[str, Signer], per_target: int, batch: int = 250
) -> list[bytes]:
    """Send ``per_target`` transfers of 1 unit to RECEIVER through each target node.

    Node ``t`` gets the transfers of ``senders[t]`` (one sender per node keeps
    nonces ordered) in ``/v1/txs`` batches that alternate between targets
    (round-robin). Fails the test if any transaction is refused. Returns the
    hashes in submission order.
    """
    pending = {
        name: [s.sign_transfer(RECEIVER, 1) for _ in range(per_target)]
        for name, s in senders.items()
    }
    hashes: list[bytes] = []
    while any(pending.values()):
        for name in senders:
            raws, pending[name] = pending[name][:batch], pending[name][batch:]
            if not raws:
                continue
            results = cluster.client(name).submit_many(raws)
            errors = [r for r in results if "error" in r]
            assert not errors, f"{name} refused transactions: {errors[:3]}"
            hashes.extend(bytes.fromhex(r["hash"]) for r in results)
    return hashes


def submit_transfers(
    cluster: Cluster, targets: list[str], per_target: int, first_client: int = 0,
    batch: int = 250,
) -> list[bytes]:
    """:func:`send_transfers` with fresh senders from :func:`get_senders`."""
    return send_transfers(cluster, get_senders(cluster, targets, first_client), per_target, batch)


def wait_for_level(
    cluster: Cluster, names: list[str], hashes: list[bytes], level: str,
    timeout: float = WAIT_TIMEOUT_S,
) -> dict[bytes, dict[str, Any]]:
    """Wait until every hash reached ``level`` (confirmed/settled) on the first of ``names``.

    Long-polls (a node long-polls only transactions it admitted; for others it
    answers at once, or 404 until the transaction is committed there, and this
    polls again). Returns the final status documents. Fails the test if a
    transaction failed or did not get there in time.
    """
    client = cluster.client(names[0])
    deadline = time.monotonic() + timeout
    docs: dict[bytes, dict[str, Any]] = {}
    for tx_hash in hashes:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"transaction {tx_hash.hex()} not {level} on {names[0]} "
                    f"(last: {docs.get(tx_hash)})\n{cluster.describe()}"
                )
            try:
                doc = client.wait(tx_hash, level, timeout=min(20.0, left))
            except ClientError as exc:
                if exc.code != "unknown_tx":  # not committed yet and submitted elsewhere
                    raise
                time.sleep(0.2)
                continue
            docs[tx_hash] = doc
            assert doc["status"] != "failed", f"transaction failed: {doc}"
            if doc["status"] == level or (level == "confirmed" and doc["status"] == "settled"):
                break
            time.sleep(0.2)  # a node that did not admit the tx answers without waiting
    return docs


def get_chain(cluster: Cluster, name: str, up_to: int) -> list[tuple[str, str]]:
    """Return (block hash, state digest) of heights 1..up_to as node ``name`` serves them."""
    client = cluster.client(name)
    chain = []
    for height in range(1, up_to + 1):
        block = client.get_block(height)
        chain.append((block["hash"], block["state_digest"]))
    return chain


def wait_converged(cluster: Cluster, names: list[str], min_height: int = 0) -> int:
    """Wait until ``names`` report one height (>= min_height) and one state digest; return it."""

    def same() -> int:
        statuses = [cluster.get_status(n) for n in names]
        heights = {s["height"] for s in statuses}
        digests = {(s["block_hash"], s["state_digest"]) for s in statuses}
        height = int(statuses[0]["height"])
        return height if len(heights) == 1 and len(digests) == 1 and height >= min_height else 0

    what = f"{names} to converge at height >= {min_height}"
    return int(wait_until(same, what, cluster=cluster))


def check_same_chain(cluster: Cluster, names: list[str], height: int) -> list[tuple[str, str]]:
    """Assert every node in ``names`` serves the same block hashes 1..height; return them."""
    reference = get_chain(cluster, names[0], height)
    for name in names[1:]:
        assert get_chain(cluster, name, height) == reference, f"{name} differs from {names[0]}"
    return reference


def get_block_tx_hashes(cluster: Cluster, name: str, height: int) -> set[bytes]:
    """Return the hashes of every transaction in blocks 1..height on node ``name``."""
    client = cluster.client(name)
    found: set[bytes] = set()
    for h in range(1, height + 1):
        found.update(bytes.fromhex(x) for x in client.get_block(h)["txs"])
    return found
