"""``dmchain run-local``: bring up the local reference consortium and show it working.

Creates the testnet in ``--home`` if it is not there (10 PBFT + 8 PoS by
default), starts every node as its own process, sends a first round of signed
transfers through the nodes' HTTP APIs and reports their confirmation and
settlement, then prints the cluster's status every few seconds until Ctrl-C
(or ``--duration``) and stops the nodes (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from node.client import ClientError, NodeClient, Signer
from node.cluster import ClusterError, process_cluster_down, process_cluster_up
from node.config import ConfigError
from node.testnet import (
    GENESIS_FILE,
    TestnetError,
    TestnetSpec,
    get_client_seeds,
    process_write_testnet,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register sizes, home, demo size and duration."""
    parser.add_argument("--home", type=Path, default=Path("testnet"))
    parser.add_argument("--pbft", type=int, default=10)
    parser.add_argument("--pos", type=int, default=8)
    parser.add_argument("--base-port", type=int, default=26600)
    parser.add_argument("--demo-txs", type=int, default=200, help="transfers sent at start")
    parser.add_argument(
        "--duration", type=float, default=0, help="seconds to run (0: until Ctrl-C)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the nodes running on exit")


def _run_demo(nodes: list[NodeClient], chain_id: str, seeds: list[bytes], count: int) -> None:
    if count <= 0 or not seeds:
        return
    signers = []
    for i in range(min(len(nodes), len(seeds))):
        signer = Signer(seeds[i], chain_id)
        signer.nonce = nodes[i].get_account(signer.public_key)["nonce"]
        signers.append(signer)
    started = time.monotonic()
    hashes: list[tuple[NodeClient, bytes]] = []
    per_node = max(1, count // len(signers))
    for i, signer in enumerate(signers):
        to = signers[(i + 1) % len(signers)].public_key
        raws = [signer.sign_transfer(to, 1) for _ in range(per_node)]
        for result in nodes[i].submit_many(raws):
            if "hash" in result:
                hashes.append((nodes[i], bytes.fromhex(result["hash"])))
            else:
                print(f"run-local: transfer refused: {result}")
    confirmed = settled = 0
    for client, tx_hash in hashes:
        doc = client.wait(tx_hash, "settled", 30)
        confirmed += doc.get("status") in ("confirmed", "settled")
        settled += doc.get("status") == "settled"
    elapsed = time.monotonic() - started
    print(
        f"run-local: {len(hashes)} transfers sent, {confirmed} confirmed, {settled} settled "
        f"in {elapsed:.1f} s"
    )


def run(args: argparse.Namespace) -> int:
    """Run the local consortium; 0 on a clean stop."""
    home: Path = args.home
    try:
        if not (home / GENESIS_FILE).exists():
            spec = TestnetSpec(out=home, pbft=args.pbft, pos=args.pos, base_port=args.base_port)
            process_write_testnet(spec)
            print(f"run-local: new testnet with {args.pbft} PBFT + {args.pos} PoS nodes in {home}")
        nodes = process_cluster_up(home, progress=print)
    except (TestnetError, ClusterError, ConfigError) as exc:
        print(f"run-local: error: {exc}")
        return 1
    clients = [NodeClient(n.config.http_url) for n in nodes]
    chain_id = json.loads((home / GENESIS_FILE).read_text())["chain_id"]
    try:
        print(f"run-local: {len(nodes)} nodes up; APIs at {clients[0].base_url} ...")
        _run_demo(clients, chain_id, get_client_seeds(home), args.demo_txs)
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while deadline is None or time.monotonic() < deadline:
            status = clients[0].get_status()
            heights = []
            for client in clients:
                try:
                    heights.append(client.get_status()["height"])
                except ClientError:
                    heights.append(-1)
            print(
                f"run-local: height {status['height']} settled {status['settled_height']} "
                f"view {status['view']} leader {status['leader']} "
                f"nodes at heights {min(heights)}..{max(heights)} (Ctrl-C stops)"
            )
            time.sleep(5)
    except KeyboardInterrupt:
        print()
    except ClientError as exc:
        print(f"run-local: error: {exc}")
        return 1
    finally:
        for client in clients:
            client.close()
        if not args.keep:
            stopped = process_cluster_down(home)
            print(f"run-local: {stopped} nodes stopped")
    return 0
