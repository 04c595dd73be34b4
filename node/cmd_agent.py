"""``dmchain agent run --wallet W --node URL``: the provider agent (long-running)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``run`` with the wallet, node, threshold m and proxy count n."""
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--wallet", type=Path, required=True, help="the provider's wallet")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    parser.add_argument("--threshold", type=int, default=3, help="m: fragments needed")
    parser.add_argument("--proxies", type=int, default=4, help="n: proxies per grant")
    parser.add_argument(
        "--candidates",
        default="",
        help="comma-separated validator keys (hex) the proxies are chosen from (default: all)",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval, seconds")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT; 1 on a start-up error."""
    from node.client import NodeClient
    from node.data_agent import ProviderAgent, run_agent
    from node.wallet import WalletError, load_wallet

    if not 1 <= args.threshold <= args.proxies <= 16:
        print("agent: error: need 1 <= --threshold <= --proxies <= 16", file=sys.stderr)
        return 1
    try:
        wallet = load_wallet(args.wallet)
        candidates = [bytes.fromhex(k) for k in args.candidates.split(",") if k.strip()]
        if any(len(k) != 32 for k in candidates):
            raise ValueError("each --candidates key must be 64 hex characters")
    except (WalletError, ValueError) as exc:
        print(f"agent: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s agent logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with NodeClient(args.node, timeout=60.0) as client:
        agent = ProviderAgent(
            client, wallet, args.threshold, args.proxies, candidates=candidates or None
        )
        run_agent(agent, args.interval)
    return 0
