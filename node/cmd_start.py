"""``dmchain start --home DIR``: run one validator node in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio

from node.config import ConfigError, load_config
from node.keys import KeyFileError, load_node_keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--home`` and ``--log-level``."""
    parser.add_argument("--home", type=Path, required=True, help="the node's home directory")
    parser.add_argument("--log-level", default=None, help="override the config's log level")


def configure_logging(level: str, name: str) -> None:
    """Log structured key=value lines to stderr, prefixed with time, level and node."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s node={name} logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("libp2p", "multiaddr", "dmchain.http.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # py-libp2p detaches its loggers from the root (no handler, no propagation),
    # so its warnings reached stderr bare, without time or node: format them too.
    logging.getLogger("libp2p").propagate = True
    # It logs every failed dial as an error; the transport retries with backoff
    # and logs peers connecting and disconnecting itself.
    logging.getLogger("libp2p.transport.tcp").setLevel(logging.CRITICAL)


def run(args: argparse.Namespace) -> int:
    """Start the node; returns 0 after a graceful stop, 1 on a start-up error."""
    from node.runtime import Node, NodeError

    try:
        config = load_config(args.home)
        keys = load_node_keys(args.home)
    except (ConfigError, KeyFileError) as exc:
        print(f"start: error: {exc}", file=sys.stderr)
        return 1
    configure_logging(args.log_level or config.log_level, config.name)
    try:
        node = Node(config, keys)
    except NodeError as exc:
        print(f"start: error: {exc}", file=sys.stderr)
        return 1
    trio.run(node.run)
    return 0
