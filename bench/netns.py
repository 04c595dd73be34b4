"""One network namespace per node, joined by a bridge, with a netem delay.

Needs root, iproute2 (``ip``, ``tc``) and the kernel's netem qdisc;
:func:`get_unavailable_reason` checks all three in a throw-away namespace
before anything is changed. Layout for a run with base port P and n nodes::

    bridge dmbr<P> in the root namespace, 10.231.<k>.1/24   (k = P // 100 % 256)
    namespace dmb<P>n<i>: veth eth0 = 10.231.<k>.<10+i>/24 on the bridge,
                          lo up, netem delay D on eth0's egress

so every node-to-node round trip gains 2 D and every client-to-node round
trip (the client stays in the root namespace) gains D. Traffic only ever
flows between these namespaces and the root namespace's bridge address.
:func:`process_destroy` removes every namespace and the bridge (deleting a
namespace deletes its veth pair).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from node import cluster
from node.cluster import NodeProcess
from node.config import CONFIG_FILE

MAX_NODES = 200


class NetnsError(RuntimeError):
    """A namespace, link or qdisc could not be set up; the message has ip's output."""


@dataclass(frozen=True)
class NamespacePlan:
    """Names and addresses of one run's namespaces."""

    bridge: str
    subnet: str
    namespaces: list[str]
    addresses: list[str]
    delay_ms: float


def compute_plan(count: int, base_port: int, delay_ms: float) -> NamespacePlan:
    """Return the namespace layout for ``count`` nodes (pure)."""
    if not 1 <= count <= MAX_NODES:
        raise NetnsError(f"namespaces for 1..{MAX_NODES} nodes only")
    k = base_port // 100 % 256
    return NamespacePlan(
        bridge=f"dmbr{base_port}",
        subnet=f"10.231.{k}",
        namespaces=[f"dmb{base_port}n{i}" for i in range(count)],
        addresses=[f"10.231.{k}.{10 + i}" for i in range(count)],
        delay_ms=delay_ms,
    )


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {result.stderr.strip() or result.stdout.strip()}")


def get_unavailable_reason() -> str | None:
    """Return None iff namespaces with netem can be created here, else why not."""
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) not installed"
    probe = f"dmbprobe{os.getpid()}"
    try:
        _ip("ip", "netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("ip", "link", "set", "lo", "up", ns=probe)
        _ip("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", ns=probe)
    except NetnsError as exc:
        return f"netem qdisc not available in this kernel: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def process_create(plan: NamespacePlan) -> None:
    """Create the bridge, every namespace, its veth and its netem qdisc.

    On failure everything created so far is removed before NetnsError is raised.
    """
    try:
        _ip("ip", "link", "add", plan.bridge, "type", "bridge")
        _ip("ip", "addr", "add", f"{plan.subnet}.1/24", "dev", plan.bridge)
        _ip("ip", "link", "set", plan.bridge, "up")
        for i, (ns, addr) in enumerate(zip(plan.namespaces, plan.addresses, strict=True)):
            host_side = f"{plan.bridge[:9]}v{i}"
            _ip("ip", "netns", "add", ns)
            _ip("ip", "link", "add", host_side, "type", "veth", "peer", "name", f"{ns[:11]}p")
            _ip("ip", "link", "set", f"{ns[:11]}p", "netns", ns)
            _ip("ip", "link", "set", host_side, "master", plan.bridge)
            _ip("ip", "link", "set", host_side, "up")
            _ip("ip", "link", "set", f"{ns[:11]}p", "name", "eth0", ns=ns)
            _ip("ip", "addr", "add", f"{addr}/24", "dev", "eth0", ns=ns)
            _ip("ip", "link", "set", "eth0", "up", ns=ns)
            _ip("ip", "link", "set", "lo", "up", ns=ns)
            delay = f"{plan.delay_ms}ms"
            _ip("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", delay, ns=ns)
    except NetnsError:
        process_destroy(plan)
        raise


def process_destroy(plan: NamespacePlan) -> None:
    """Remove every namespace and the bridge of ``plan`` (missing ones are ignored)."""
    for ns in plan.namespaces:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", plan.bridge], capture_output=True, check=False)


def process_rewrite_testnet(home: Path, plan: NamespacePlan) -> None:
    """Point every node's listen and HTTP address, and the genesis multiaddrs, at
    its namespace address (nodes are ``node00``.. in index order)."""
    genesis_path = home / "genesis.json"
    genesis = json.loads(genesis_path.read_text())
    by_name = {f"node{i:02d}": addr for i, addr in enumerate(plan.addresses)}
    for validator in genesis["validators"]:
        addr = by_name[validator["name"]]
        port = validator["multiaddr"].rsplit("/", 1)[1]
        validator["multiaddr"] = f"/ip4/{addr}/tcp/{port}"
    genesis_path.write_text(json.dumps(genesis, indent=2, sort_keys=True) + "\n")
    for name, addr in by_name.items():
        path = home / name / CONFIG_FILE
        config = json.loads(path.read_text())
        config["listen_host"] = addr
        config["http_host"] = addr
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def compute_exec_prefix(plan: NamespacePlan, index: int) -> list[str]:
    """Return the command prefix that runs a program in node ``index``'s namespace."""
    return ["ip", "netns", "exec", plan.namespaces[index]]


def process_start_node(
    node: NodeProcess, prefix: list[str], extra_env: dict[str, str] | None = None
) -> int:
    """Start one node (behind ``prefix``, e.g. ``ip netns exec NS``); returns its pid.

    Same process layout as :func:`node.cluster.process_start_node`, but run
    through :mod:`bench.node_runner`, which reads its profiling and experiment
    settings from ``extra_env``.
    """
    home = str(node.config.home)
    command = [*prefix, sys.executable, "-m", "bench.node_runner", "start", "--home", home]
    return cluster.process_start_node(node, extra_env, command)
