"""``dmchain keys generate|show --home DIR``: a node's keys and its genesis entry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.keys import (
    KeyFileError,
    NodeKeys,
    generate_node_keys,
    is_node_keys_present,
    load_node_keys,
    save_node_keys,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``generate`` / ``show`` and ``--home``."""
    parser.add_argument("action", choices=["generate", "show"])
    parser.add_argument("--home", type=Path, required=True, help="the node's home directory")
    parser.add_argument("--name", default=None, help="validator name for the genesis entry")
    parser.add_argument("--multiaddr", default=None, help="address peers dial, for the entry")


def compute_genesis_entry(keys: NodeKeys, name: str, multiaddr: str) -> dict[str, object]:
    """Return the genesis ``validators`` entry for these keys (stake and roles to fill in)."""
    account = keys.get_account_public_key().hex()
    return {
        "name": name,
        "consensus_key": account,
        "operator": account,
        "peer_id": keys.get_peer_id(),
        "multiaddr": multiaddr,
        "umbral_key": keys.get_umbral_public_key_hex(),
        "roles": ["pos"],
        "stake": 0,
    }


def run(args: argparse.Namespace) -> int:
    """Generate keys (never overwriting) or show the public parts."""
    try:
        if args.action == "generate":
            if is_node_keys_present(args.home):
                print(f"keys: {args.home}/keys already holds keys; nothing written")
                return 1
            save_node_keys(args.home, generate_node_keys())
            print(f"keys: new keys written to {args.home}/keys (files 0600)")
        keys = load_node_keys(args.home)
    except KeyFileError as exc:
        print(f"keys: error: {exc}")
        return 1
    name = args.name or args.home.resolve().name
    multiaddr = args.multiaddr or "/ip4/127.0.0.1/tcp/26600"
    print(json.dumps(compute_genesis_entry(keys, name, multiaddr), indent=2))
    return 0
