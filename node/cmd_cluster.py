"""``dmchain cluster up|down|status --home DIR``: run a testnet's nodes on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cluster import (
    ClusterError,
    get_cluster_nodes,
    get_node_status,
    process_cluster_down,
    process_cluster_up,
)
from node.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``up``, ``down`` and ``status`` with ``--home``."""
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--home", type=Path, required=True, help="testnet directory")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (up/down)")


def run(args: argparse.Namespace) -> int:
    """Carry out the action; prints one line per node for ``status``."""
    try:
        if args.action == "up":
            nodes = process_cluster_up(args.home, args.timeout, progress=print)
            print(f"cluster: {len(nodes)} nodes up")
            for node in nodes:
                print(f"  {node.config.name}  {node.config.http_url}  log {node.log_path}")
        elif args.action == "down":
            stopped = process_cluster_down(args.home, args.timeout)
            print(f"cluster: {stopped} nodes stopped")
        else:
            for node in get_cluster_nodes(args.home):
                pid = node.get_pid()
                status = get_node_status(node.config) if pid else None
                if status is None:
                    state = "running, not answering" if pid else "stopped"
                    print(f"{node.config.name}: {state}")
                else:
                    print(
                        f"{node.config.name}: pid {pid} height {status.get('height')} "
                        f"settled {status.get('settled_height')} view {status.get('view')} "
                        f"peers {status.get('peers')} role {status.get('role')}"
                    )
    except (ClusterError, ConfigError) as exc:
        print(f"cluster: error: {exc}")
        return 1
    return 0
