"""The cluster launcher refuses to start a node whose ports another process holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from node import testnet
from node.cluster import ClusterError, get_cluster_nodes, is_port_in_use, process_start_node


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_port_in_use_only_while_something_listens() -> None:
    sock = _listen()
    port = sock.getsockname()[1]
    assert is_port_in_use("127.0.0.1", port)
    sock.close()
    assert not is_port_in_use("127.0.0.1", port)


def test_node_is_not_started_on_a_port_another_process_holds(tmp_path: Path) -> None:
    sock = _listen()
    port = sock.getsockname()[1]
    home = tmp_path / "net"
    testnet.process_write_testnet(
        testnet.TestnetSpec(out=home, pbft=1, pos=1, clients=1, base_port=port)
    )
    node = get_cluster_nodes(home)[0]
    assert node.config.p2p_port == port
    with sock, pytest.raises(ClusterError, match=f"port {port} is already in use"):
        process_start_node(node)
    assert node.get_pid() is None
    assert not node.log_path.exists()
