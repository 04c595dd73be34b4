"""``dmchain tx transfer``: sign a transaction locally and submit it to a node."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.client import ClientError, NodeClient, Signer
from node.testnet import get_client_seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the signer, the node and the transfer's fields."""
    parser.add_argument("kind", choices=["transfer"], help="transaction kind")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", type=Path, help="file holding the account's private seed (hex)")
    key.add_argument("--testnet", type=Path, help="testnet directory (with --client)")
    parser.add_argument("--client", type=int, default=0, help="client index in clients.json")
    parser.add_argument("--to", required=True, help="recipient account (64 hex chars)")
    parser.add_argument("--amount", type=int, required=True, help="base units (1 token = 10^6)")
    parser.add_argument("--fee", type=int, default=0)
    parser.add_argument("--wait", choices=["none", "confirmed", "settled"], default="confirmed")
    parser.add_argument("--timeout", type=float, default=30.0)


def _load_seed(args: argparse.Namespace) -> bytes:
    if args.key is not None:
        seed = bytes.fromhex(args.key.read_text().strip())
    else:
        seeds = get_client_seeds(args.testnet)
        if not 0 <= args.client < len(seeds):
            raise ValueError(f"--client must be in [0, {len(seeds) - 1}]")
        seed = seeds[args.client]
    if len(seed) != 32:
        raise ValueError("a private seed is 32 bytes (64 hex characters)")
    return seed


def run(args: argparse.Namespace) -> int:
    """Sign, submit and optionally wait; prints the status document as JSON."""
    try:
        seed = _load_seed(args)
        to = bytes.fromhex(args.to)
        if len(to) != 32:
            raise ValueError("--to must be 32 bytes (64 hex characters)")
        if args.amount <= 0:
            raise ValueError("--amount must be positive")
    except (OSError, ValueError, KeyError) as exc:
        print(f"tx: error: {exc}")
        return 1
    with NodeClient(args.node, timeout=args.timeout + 5) as client:
        try:
            status = client.get_status()
            signer = Signer(seed, status["chain_id"])
            signer.nonce = client.get_account(signer.public_key)["nonce"]
            tx_hash = client.submit(signer.sign_transfer(to, args.amount, args.fee))
            doc = {"hash": tx_hash.hex(), "status": "pending"}
            if args.wait != "none":
                doc = client.wait(tx_hash, args.wait, args.timeout)
        except ClientError as exc:
            print(f"tx: error: {exc}")
            return 1
    print(json.dumps(doc, indent=2))
    return 0 if doc.get("status") != "failed" else 1
