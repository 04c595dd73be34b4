"""``dmchain query``: read a node's status, accounts, blocks, transactions and supply."""

from __future__ import annotations

import argparse
import json
from typing import Any

from node.client import ClientError, NodeClient


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register what to query and the node."""
    parser.add_argument(
        "what", choices=["status", "account", "block", "tx", "supply", "validators"]
    )
    parser.add_argument("arg", nargs="?", help="account hex, block height or tx hash")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")


def run(args: argparse.Namespace) -> int:
    """Print the answer as JSON; 1 with a clear message on any error."""
    needs_arg = args.what in ("account", "block", "tx")
    if needs_arg and not args.arg:
        print(f"query: error: '{args.what}' needs an argument")
        return 1
    with NodeClient(args.node) as client:
        try:
            doc: Any
            if args.what == "status":
                doc = client.get_status()
            elif args.what == "account":
                doc = client.get_account(bytes.fromhex(args.arg))
            elif args.what == "block":
                doc = client.get_block(int(args.arg))
            elif args.what == "tx":
                doc = client.get_tx(bytes.fromhex(args.arg))
            elif args.what == "supply":
                doc = client.get_supply()
            else:
                doc = client.get_validators()
        except ValueError as exc:
            print(f"query: error: bad argument {args.arg!r}: {exc}")
            return 1
        except ClientError as exc:
            print(f"query: error: {exc}")
            return 1
    print(json.dumps(doc, indent=2))
    return 0
