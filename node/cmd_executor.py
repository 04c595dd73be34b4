"""``dmchain executor run|unregister``: a training-job executor (see node.executor_service).

``run`` is long-running: it registers, trains assigned jobs and posts results.
``unregister`` posts ``UNREGISTER_EXECUTOR`` signed by the wallet's account
and prints the executor stake returned; the chain's refusal (assigned to an
open job, not a registered executor) is printed as ``executor: refused:
<reason>`` with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ledger.genesis import TOKEN
from ledger.tx import TxKind
from node.client import (
    ClientError,
    NodeClient,
    Signer,
    get_outcome_problem,
    get_tx_outcome,
)
from node.wallet import WalletError, load_wallet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the wallet, node, data paths, stake and fee."""
    parser.add_argument("action", choices=["run", "unregister"])
    parser.add_argument("--wallet", type=Path, required=True,
                        help="wallet directory (dmchain wallet new): datasets come through "
                        "access grants, the validation key from the chain (JOB_KEYS)")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    parser.add_argument("--work-dir", type=Path, default=Path("executor-work"),
                        help="job inputs, results and models")
    parser.add_argument("--blob-dir", type=Path, default=None,
                        help="local blob store (default WORK_DIR/blobs); missing blobs are "
                        "fetched from --blob-nodes")
    parser.add_argument("--blob-nodes", default=None, help="blob node URLs, comma separated")
    parser.add_argument("--stake", type=int, default=10 * TOKEN, help="base units to lock")
    parser.add_argument("--fee", type=int, default=TOKEN, help="fee per job, base units")
    parser.add_argument("--listen", default="127.0.0.1:0",
                        help="HOST:PORT of the model server (port 0: any free port)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="unregister: seconds to wait for the receipt")


def unregister(args: argparse.Namespace, client: NodeClient) -> int:
    """Post UNREGISTER_EXECUTOR; print the stake returned, or the chain's refusal (status 1)."""
    try:
        if not args.wallet.is_dir():
            raise ValueError(f"--wallet {args.wallet} is not a wallet directory")
        seed = load_wallet(args.wallet).seed
    except (OSError, ValueError, WalletError) as exc:
        print(f"executor: error: {exc}")
        return 1
    try:
        signer = Signer(seed, client.get_status()["chain_id"])
        try:
            stake = int(client.get_executor(signer.public_key)["stake"])
        except ClientError as exc:
            if exc.code != "unknown_executor":
                raise
            stake = 0  # the chain gives the reason
        signer.nonce = client.get_account(signer.public_key)["nonce"]
        tx_hash = client.submit(signer.sign(TxKind.UNREGISTER_EXECUTOR, []))
        doc = get_tx_outcome(client, tx_hash, args.timeout)
    except ClientError as exc:
        print(f"executor: error: {exc}")
        return 1
    problem = get_outcome_problem(doc, args.timeout)
    if problem is not None:
        print(f"executor: {problem[0]}: {problem[1]}")
        return 1
    print(json.dumps({"account": signer.public_key.hex(), "returned_stake": stake,
                      "tx": tx_hash.hex()}))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the executor until SIGTERM/SIGINT (or unregister); 1 with a clear message on error."""
    if args.action == "unregister":
        with NodeClient(args.node, timeout=args.timeout + 5) as client:
            return unregister(args, client)
    # imported here: the service pulls in torch, which `dmchain --help` must not pay for
    from node import data_client as dc
    from node.blobstore import BlobStore
    from node.executor_service import (
        ExecutorConfig,
        ExecutorError,
        ExecutorService,
        install_signal_handlers,
    )
    from node.job_grant_source import GrantPathSource
    from node.jobdata import DatasetSource, SealedKeySource

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    urls = dc.compute_blob_urls(args.node, args.blob_nodes)

    def fetch_blob(name: str, dest: Path) -> None:
        dc.download_blob(urls, name, dest)

    try:
        if not args.wallet.is_dir():
            raise ValueError(
                f"--wallet {args.wallet} is not a wallet directory (dmchain wallet new): "
                "an executor obtains datasets through its own access grants"
            )
        wallet = load_wallet(args.wallet)
        seed = wallet.seed
        store = BlobStore(args.blob_dir or args.work_dir / "blobs")
        sealed = SealedKeySource(store, seed, fetch_blob)
        datasets: DatasetSource = GrantPathSource(
            NodeClient(args.node, timeout=60.0), wallet, urls, args.work_dir / "datasets"
        )
        host, _, port = args.listen.rpartition(":")
        config = ExecutorConfig(
            seed=seed, node_url=args.node, work_dir=args.work_dir, stake=args.stake,
            fee=args.fee, listen_host=host or "127.0.0.1", listen_port=int(port),
            poll_s=args.poll,
        )
        service = ExecutorService(config, datasets, sealed)
    except (OSError, ValueError, WalletError, ClientError) as exc:
        print(f"executor: error: {exc}")
        return 1
    install_signal_handlers(service)
    try:
        service.run()
    except (ClientError, ExecutorError) as exc:
        print(f"executor: error: {exc}")
        return 1
    return 0
