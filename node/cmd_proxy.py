"""``dmchain proxy run --home NODE_HOME``: the proxy service beside a validator node."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from node.config import ConfigError, load_config
from node.keys import KeyFileError, load_node_keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``run`` with the node home, an optional node URL and the poll interval."""
    parser.add_argument("action", choices=["run"], help="run the proxy service")
    parser.add_argument("--home", type=Path, required=True, help="the validator node's home")
    parser.add_argument("--node", default=None, help="node API URL (default: from config)")
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval, seconds")
    parser.add_argument("--log-level", default=None, help="override the config's log level")


def run(args: argparse.Namespace) -> int:
    """Run the proxy service until SIGTERM/SIGINT; 1 on a start-up error."""
    from node.client import ClientError, NodeClient
    from node.proxy_handlers import PROXY_HANDLERS
    from node.proxy_service import PROXY_DIR, ProxyContext, run_proxy_service

    try:
        config = load_config(args.home)
        keys = load_node_keys(args.home)
    except (ConfigError, KeyFileError) as exc:
        print(f"proxy: error: {exc}", file=sys.stderr)
        return 1
    if args.interval <= 0:
        print("proxy: error: --interval must be positive", file=sys.stderr)
        return 1
    level = args.log_level or config.log_level
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s proxy={config.name} logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("dmchain.proxy")
    client = NodeClient(args.node or config.http_url, timeout=30.0)
    try:
        chain_id = str(client.get_status()["chain_id"])
    except ClientError as exc:
        print(f"proxy: error: node not reachable: {exc}", file=sys.stderr)
        return 1
    ctx = ProxyContext(
        client=client,
        seed=keys.account_seed,
        public_key=keys.get_account_public_key(),
        umbral_secret=keys.get_umbral_secret_key(),
        data_dir=config.data_path / PROXY_DIR,
        chain_id=chain_id,
        log=log,
    )
    try:
        run_proxy_service(ctx, PROXY_HANDLERS, poll_s=args.interval)
    finally:
        client.close()
    return 0
