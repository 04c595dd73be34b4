"""``dmchain wallet new|show``: an account seed and Umbral keys in a directory (0600 files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.wallet import WalletError, load_wallet, process_create_wallet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``new`` (with ``--out`` and an optional seed) and ``show``."""
    parser.add_argument("action", choices=["new", "show"])
    parser.add_argument("--out", type=Path, help="directory of the new wallet (new)")
    parser.add_argument("--wallet", type=Path, help="wallet directory (show)")
    parser.add_argument("--seed-hex", default=None, help="use this account seed (64 hex chars)")


def run(args: argparse.Namespace) -> int:
    """Create or show a wallet; prints its public keys as JSON."""
    try:
        if args.action == "new":
            if args.out is None:
                raise WalletError("wallet new needs --out DIR")
            seed = bytes.fromhex(args.seed_hex) if args.seed_hex else None
            wallet = process_create_wallet(args.out, seed)
        else:
            if args.wallet is None:
                raise WalletError("wallet show needs --wallet DIR")
            wallet = load_wallet(args.wallet)
    except (WalletError, ValueError, OSError) as exc:
        print(f"wallet: error: {exc}")
        return 1
    doc = {
        "wallet": str(wallet.path),
        "account": wallet.public_key.hex(),
        "umbral_key": wallet.get_umbral_public_key_bytes().hex(),
        "verifying_key": wallet.get_verifying_key_bytes().hex(),
    }
    print(json.dumps(doc, indent=2))
    return 0
