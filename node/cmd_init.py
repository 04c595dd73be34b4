"""``dmchain init``: prepare one node's home to join an existing consortium.

Creates keys if the home has none, copies the consortium's genesis into the
home, and writes ``config.json``. If the genesis does not list this node's
key yet, it prints the entry the consortium must add (and exits non-zero).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ledger.errors import GenesisError
from ledger.genesis import load_genesis
from node.cmd_keys import compute_genesis_entry
from node.config import NodeConfig, write_config
from node.keys import (
    KeyFileError,
    generate_node_keys,
    is_node_keys_present,
    load_node_keys,
    save_node_keys,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the home, genesis and ports."""
    parser.add_argument("--home", type=Path, required=True, help="the node's home directory")
    parser.add_argument("--genesis", type=Path, required=True, help="the consortium's genesis")
    parser.add_argument("--p2p-port", type=int, default=26600)
    parser.add_argument("--http-port", type=int, default=26700)
    parser.add_argument("--listen-host", default="127.0.0.1")


def run(args: argparse.Namespace) -> int:
    """Initialise the home; 0 when the node can start, 1 otherwise."""
    try:
        genesis = load_genesis(str(args.genesis))
    except (GenesisError, OSError, ValueError) as exc:
        print(f"init: error: cannot use genesis {args.genesis}: {exc}")
        return 1
    try:
        if not is_node_keys_present(args.home):
            save_node_keys(args.home, generate_node_keys())
            print(f"init: new keys in {args.home}/keys")
        keys = load_node_keys(args.home)
    except KeyFileError as exc:
        print(f"init: error: {exc}")
        return 1
    account = keys.get_account_public_key()
    entry = next((v for v in genesis.validators if v.consensus_key == account), None)
    if entry is None:
        multiaddr = f"/ip4/{args.listen_host}/tcp/{args.p2p_port}"
        print("init: this node is not in the genesis yet; ask the consortium to add:")
        print(
            json.dumps(compute_genesis_entry(keys, args.home.resolve().name, multiaddr), indent=2)
        )
        return 1
    args.home.mkdir(parents=True, exist_ok=True)
    target = args.home / "genesis.json"
    if args.genesis.resolve() != target.resolve():
        shutil.copyfile(args.genesis, target)
    config = NodeConfig(
        name=entry.name,
        home=args.home,
        listen_host=args.listen_host,
        p2p_port=args.p2p_port,
        http_port=args.http_port,
    )
    path = write_config(config)
    print(f"init: {entry.name} ready in {args.home} (config {path})")
    print(f"  start it with: dmchain start --home {args.home}")
    return 0
