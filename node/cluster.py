"""Local cluster launcher: every node of a testnet directory as its own OS process.

A testnet directory (written by ``dmchain testnet``) holds one sub-directory
per node, each with a ``config.json``. :func:`process_cluster_up` starts
``dmchain start --home <node dir>`` for each node on 127.0.0.1, writes a pid
file and a log file beside its config, and waits until every node's
``GET /v1/status`` reports ``ready``. :func:`process_cluster_down` sends
SIGTERM, waits, and escalates to SIGKILL for a node that does not stop.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from node.config import CONFIG_FILE, NodeConfig, load_config

PID_FILE = "node.pid"
LOG_FILE = "node.log"


class ClusterError(RuntimeError):
    """A cluster operation that could not be completed; the message says why."""


@dataclass(frozen=True)
class NodeProcess:
    """One node of a cluster: its config and where its pid and log live."""

    config: NodeConfig

    @property
    def pid_path(self) -> Path:
        """Path of the pid file."""
        return self.config.home / PID_FILE

    @property
    def log_path(self) -> Path:
        """Path of the log file the process writes."""
        return self.config.home / LOG_FILE

    def get_pid(self) -> int | None:
        """Return the pid of the running process, or None if it is not running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_process_alive(pid) else None


def is_process_alive(pid: int) -> bool:
    """Return True iff a (non-zombie) process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def get_cluster_nodes(home: Path) -> list[NodeProcess]:
    """Return the nodes of the testnet at ``home`` in name order; raises ClusterError."""
    if not home.is_dir():
        raise ClusterError(f"{home} is not a directory (create one with 'dmchain testnet')")
    nodes = [
        NodeProcess(load_config(d))
        for d in sorted(home.iterdir())
        if d.is_dir() and (d / CONFIG_FILE).is_file()
    ]
    if not nodes:
        raise ClusterError(f"no node directories with {CONFIG_FILE} under {home}")
    return nodes


def get_node_status(config: NodeConfig, timeout: float = 1.0) -> dict[str, Any] | None:
    """Return the node's /v1/status JSON, or None if it does not answer."""
    try:
        response = httpx.get(f"{config.http_url}/v1/status", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def is_port_in_use(host: str, port: int) -> bool:
    """Return True iff something listens on ``host:port`` (a TCP bind with
    SO_REUSEADDR fails with EADDRINUSE). An address this host does not have
    (a node in another network namespace) counts as not in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def get_busy_ports(config: NodeConfig) -> list[int]:
    """Return the node's p2p and HTTP ports that another process listens on."""
    pairs = [(config.listen_host, config.p2p_port), (config.http_host, config.http_port)]
    return [port for host, port in pairs if is_port_in_use(host, port)]


def process_start_node(
    node: NodeProcess,
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> int:
    """Start one node in the background (no-op if running); returns its pid.

    The node runs in its own session, logs to its home and gets a pid file.
    ``command`` replaces the default ``python -m node.cli start --home HOME``
    (the benchmark runs nodes through a profiling wrapper or a namespace).
    Raises ClusterError if another process already listens on one of the
    node's ports (a stale node would otherwise answer in its place).
    """
    pid = node.get_pid()
    if pid is not None:
        return pid
    busy = get_busy_ports(node.config)
    if busy:
        ports = ", ".join(str(p) for p in busy)
        raise ClusterError(
            f"node {node.config.name}: port {ports} is already in use by another "
            "process (a node of another cluster?); stop it or use other ports"
        )
    env = dict(os.environ)
    env.update(extra_env or {})
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = command or [sys.executable, "-m", "node.cli", "start", "--home", str(node.config.home)]
    with open(node.log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    node.pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def process_stop_node(node: NodeProcess, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stop one node (SIGTERM, then SIGKILL after ``timeout``); True if it was running."""
    pid = node.get_pid()
    if pid is None:
        node.pid_path.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while is_process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_process_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while is_process_alive(pid):
            time.sleep(0.05)
    _reap(pid)
    node.pid_path.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_wait_ready(
    nodes: list[NodeProcess],
    timeout: float,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Wait until every node reports ready; raises ClusterError naming the laggards."""
    deadline = time.monotonic() + timeout
    pending = {n.config.name: n for n in nodes}
    last_report = 0.0
    while pending:
        for name, node in list(pending.items()):
            if node.get_pid() is None:
                raise ClusterError(
                    f"node {name} exited during start-up; see {node.log_path} "
                    f"(last lines:\n{get_log_tail(node.log_path)})"
                )
            status = get_node_status(node.config)
            if status is not None and status.get("ready"):
                del pending[name]
        now = time.monotonic()
        if progress is not None and now - last_report >= 2.0:
            progress(f"cluster: {len(nodes) - len(pending)}/{len(nodes)} nodes ready")
            last_report = now
        if not pending:
            break
        if now > deadline:
            names = ", ".join(sorted(pending))
            raise ClusterError(f"nodes not ready after {timeout:.0f} s: {names}")
        time.sleep(0.2)


def get_log_tail(path: Path, lines: int = 15) -> str:
    """Return the last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def process_cluster_up(
    home: Path, timeout: float = 120.0, progress: Callable[[str], None] | None = None
) -> list[NodeProcess]:
    """Start every node of the testnet at ``home`` and wait until all are ready."""
    nodes = get_cluster_nodes(home)
    for node in nodes:
        process_start_node(node)
    process_wait_ready(nodes, timeout, progress)
    return nodes


def process_cluster_down(home: Path, timeout: float = 15.0) -> int:
    """Stop every running node of the testnet at ``home``; returns how many were running."""
    return sum(process_stop_node(node, timeout) for node in get_cluster_nodes(home))
