"""Helpers of the data access integration tests: a cluster with short deadlines, proxy
processes beside nodes, the provider agent, wallets funded from clients.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    DMCHAIN,
    REPO,
    START_TIMEOUT_S,
    Cluster,
    get_next_port_base,
    run_dmchain,
)

from node.cluster import get_cluster_nodes
from node.testnet import get_client_seeds


def start_data_cluster(
    home: Path, pbft: int, pos: int, epoch_length: int, params: dict[str, int]
) -> Cluster:
    """Generate a testnet, override genesis ``params`` (e.g. a short access_timeout), start it."""
    base = get_next_port_base()
    run_dmchain(
        "testnet", "--pbft", str(pbft), "--pos", str(pos), "--out", str(home),
        "--base-port", str(base), "--epoch-length", str(epoch_length), "--clients", "8",
    )
    genesis_path = home / "genesis.json"
    genesis = json.loads(genesis_path.read_text())
    genesis["params"].update(params)
    genesis_path.write_text(json.dumps(genesis, indent=2, sort_keys=True) + "\n")
    cluster = Cluster(home, get_cluster_nodes(home))
    proc = subprocess.run(
        [*DMCHAIN, "cluster", "up", "--home", str(home), "--timeout", str(START_TIMEOUT_S)],
        cwd=REPO, capture_output=True, text=True, timeout=START_TIMEOUT_S + 60, check=False,
    )
    if proc.returncode != 0:
        cluster.kill_all()
        pytest.fail(f"cluster up failed:\n{proc.stdout}{proc.stderr}\n{cluster.describe()}")
    return cluster


@dataclass
class Helpers:
    """Background processes (proxies, agent) started for one data cluster."""

    cluster: Cluster
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _spawn(self, key: str, argv: list[str], log: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log, "ab") as out:
            self.procs[key] = subprocess.Popen(
                [*DMCHAIN, *argv], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            )

    def proxy_log(self, name: str) -> Path:
        """Return the log file of the proxy beside node ``name``."""
        return self.cluster.node(name).config.home / "proxy.log"

    def start_proxy(self, name: str) -> None:
        """Start ``dmchain proxy run`` beside node ``name``."""
        home = self.cluster.node(name).config.home
        self._spawn(f"proxy-{name}", ["proxy", "run", "--home", str(home), "--interval", "0.3"],
                    self.proxy_log(name))

    def stop(self, key: str) -> None:
        """SIGTERM one background process (SIGKILL after 10 s)."""
        proc = self.procs.pop(key)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def start_agent(self, wallet: Path, node: str, candidates: list[str], m: int, n: int) -> None:
        """Start the provider agent of ``wallet`` against node ``node``."""
        url = self.cluster.node(node).config.http_url
        self._spawn(
            "agent",
            ["agent", "run", "--wallet", str(wallet), "--node", url, "--threshold", str(m),
             "--proxies", str(n), "--candidates", ",".join(candidates), "--interval", "0.3"],
            wallet.parent / "agent.log",
        )

    def kill_all(self) -> None:
        """SIGKILL every background process (finalizer)."""
        for key in list(self.procs):
            proc = self.procs.pop(key)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def make_wallet(cluster: Cluster, out: Path, client_index: int) -> Path:
    """Create a wallet whose account is funded client ``client_index`` of the testnet."""
    seed = get_client_seeds(cluster.home)[client_index]
    run_dmchain("wallet", "new", "--out", str(out), "--seed-hex", seed.hex())
    return out


def run_data(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run ``dmchain data ...`` and return the completed process (no failure check)."""
    return subprocess.run(
        [*DMCHAIN, "data", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def run_data_ok(*args: str, timeout: float = 300.0) -> dict[str, object]:
    """Run ``dmchain data ...``; fail the test unless it exits 0; return its JSON output."""
    proc = run_data(*args, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"dmchain data {' '.join(args)} exited {proc.returncode}:\n"
                    f"{proc.stdout}{proc.stderr}")
    value = json.loads(proc.stdout)
    assert isinstance(value, dict)
    return value


def wait_file_text(path: Path, needle: str, timeout: float = 120.0) -> str:
    """Wait until ``path`` contains ``needle``; return its text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        time.sleep(0.3)
    pytest.fail(f"{needle!r} not in {path} after {timeout:.0f} s:\n{text[-3000:]}")
