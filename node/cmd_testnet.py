"""``dmchain testnet``: write keys, genesis and configs for a local consortium."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.testnet import TestnetError, TestnetSpec, process_write_testnet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the testnet's sizes and ports."""
    parser.add_argument("--pbft", type=int, default=10, help="PBFT replicas (default 10)")
    parser.add_argument("--pos", type=int, default=8, help="PoS settlement validators (default 8)")
    parser.add_argument("--out", type=Path, required=True, help="directory to create")
    parser.add_argument("--clients", type=int, default=64, help="funded client accounts")
    parser.add_argument("--base-port", type=int, default=26600, help="first p2p port")
    parser.add_argument("--chain-id", default="dmchain-local")
    parser.add_argument("--epoch-length", type=int, default=10, help="blocks per PoS epoch")


def run(args: argparse.Namespace) -> int:
    """Write the testnet; prints where everything went."""
    spec = TestnetSpec(
        out=args.out,
        pbft=args.pbft,
        pos=args.pos,
        clients=args.clients,
        base_port=args.base_port,
        chain_id=args.chain_id,
        epoch_length=args.epoch_length,
    )
    try:
        genesis = process_write_testnet(spec)
    except TestnetError as exc:
        print(f"testnet: error: {exc}")
        return 1
    print(f"testnet: {args.pbft} PBFT + {args.pos} PoS nodes in {args.out}")
    print(f"  genesis {genesis}")
    print(f"  start them with: dmchain cluster up --home {args.out}")
    return 0
