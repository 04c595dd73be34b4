"""``dmchain data publish|request|fetch|dispute|revoke|fail``: the data access path.

Every sub-command signs locally with the wallet's account seed (``--wallet``)
and talks to one node (``--node``); blobs go to and come from
``--blob-nodes`` (comma-separated URLs, default: the node). Results are
printed as JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ACTIONS = ("publish", "request", "fetch", "dispute", "revoke", "fail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, its target and the wallet/node options."""
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument(
        "target",
        help="publish: FILE; request/revoke: ASSET id; fetch: ASSET or REQUEST id; "
        "dispute/fail: REQUEST id",
    )
    parser.add_argument("--wallet", type=Path, required=True, help="wallet directory")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    parser.add_argument("--blob-nodes", default=None, help="blob node URLs, comma separated")
    parser.add_argument("--tags", default="", help="publish: comma-separated tags")
    parser.add_argument("--license", dest="licence", default="", help="publish: licence")
    parser.add_argument("--stake", type=int, default=None, help="publish: stake (base units)")
    parser.add_argument("--replicas", type=int, default=3, help="publish: blob replicas")
    parser.add_argument("--out", type=Path, help="fetch: where to write the plaintext")
    parser.add_argument("--dispute", action="store_true", help="fetch: file a dispute if bad")
    parser.add_argument("--proof", type=Path, help="dispute: the proof file")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _hex_arg(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} must be hex") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes (64 hex characters)")
    return raw


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from node import data_client as dc
    from node.client import NodeClient
    from node.wallet import load_wallet

    wallet = load_wallet(args.wallet)
    progress = dc.print_progress if not args.quiet else (lambda _m: None)
    urls = dc.compute_blob_urls(args.node, args.blob_nodes)
    with NodeClient(args.node, timeout=60.0) as client:
        sender = dc.TxSender(client, wallet.seed)
        if args.action == "publish":
            tags = [t.strip() for t in args.tags.split(",") if t.strip()]
            source = Path(args.target)
            if not source.is_file():
                raise ValueError(f"{source} is not a file")
            result = dc.publish_asset(
                sender,
                wallet,
                source,
                tags=tags,
                licence=args.licence,
                stake=args.stake,
                blob_urls=urls,
                replicas=args.replicas,
                progress=progress,
                timeout=args.timeout,
            )
            return {
                "asset_id": result.asset_id.hex(),
                "content_hash": result.content_hash.hex(),
                "cipher_hash": result.cipher_hash.hex(),
                "size": result.size,
                "stored_on": result.stored_on,
                "phases": result.phases,
            }
        if args.action == "request":
            asset_id = _hex_arg(args.target, "ASSET")
            request_id = dc.request_access(sender, wallet, asset_id, args.timeout)
            return {"request_id": request_id.hex(), "asset_id": asset_id.hex()}
        if args.action == "fetch":
            if args.out is None:
                raise ValueError("fetch needs --out FILE")
            target = _hex_arg(args.target, "ASSET or REQUEST")
            try:
                fetched = dc.fetch_asset(
                    client,
                    wallet,
                    target,
                    args.out,
                    blob_urls=urls,
                    timeout=args.timeout,
                    progress=progress,
                )
            except dc.DisputeNeededError as exc:
                if not args.dispute:
                    raise
                proof = exc.proof_path.read_bytes()
                dc.file_dispute(sender, exc.request_id, proof, args.timeout)
                raise dc.DataError(f"{exc}; dispute filed and accepted on chain") from exc
            return {
                "request_id": fetched.request_id.hex(),
                "asset_id": fetched.asset_id.hex(),
                "out": str(args.out),
                "size": fetched.size,
                "served_by": fetched.served_by,
                "phases": fetched.phases,
            }
        if args.action == "dispute":
            if args.proof is None:
                raise ValueError("dispute needs --proof FILE")
            request_id = _hex_arg(args.target, "REQUEST")
            tx_hash = dc.file_dispute(sender, request_id, args.proof.read_bytes(), args.timeout)
            return {"request_id": request_id.hex(), "dispute_tx": tx_hash.hex()}
        if args.action == "revoke":
            asset_id = _hex_arg(args.target, "ASSET")
            tx_hash = dc.revoke_asset(sender, asset_id, args.timeout)
            return {"asset_id": asset_id.hex(), "revoke_tx": tx_hash.hex()}
        request_id = _hex_arg(args.target, "REQUEST")
        tx_hash = dc.fail_request(sender, request_id, args.timeout)
        return {"request_id": request_id.hex(), "fail_tx": tx_hash.hex()}


def run(args: argparse.Namespace) -> int:
    """Run one data action; exit 0 on success, 1 with a clear message otherwise."""
    from node.client import ClientError
    from node.data_client import DataError
    from node.wallet import WalletError

    try:
        doc = _run(args)
    except (DataError, ClientError, WalletError, ValueError, OSError) as exc:
        print(f"data {args.action}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2))
    return 0
