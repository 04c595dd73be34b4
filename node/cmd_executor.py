"""``dmchain executor run``: a long-running training-job executor (see node.executor_service)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ledger.genesis import TOKEN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the wallet, node, data paths, stake and fee."""
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--wallet", type=Path, required=True,
                        help="file holding the executor account's private seed (hex)")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    parser.add_argument("--work-dir", type=Path, default=Path("executor-work"),
                        help="job inputs, results and models")
    parser.add_argument("--blob-dir", type=Path, required=True,
                        help="blob store holding the encrypted datasets")
    parser.add_argument("--key-dir", type=Path, required=True,
                        help="directory of data keys sealed to this executor")
    parser.add_argument("--stake", type=int, default=10 * TOKEN, help="base units to lock")
    parser.add_argument("--fee", type=int, default=TOKEN, help="fee per job, base units")
    parser.add_argument("--listen", default="127.0.0.1:0",
                        help="HOST:PORT of the model server (port 0: any free port)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")


def run(args: argparse.Namespace) -> int:
    """Run the executor until SIGTERM/SIGINT; 1 with a clear message on a setup error."""
    # imported here: the service pulls in torch, which `dmchain --help` must not pay for
    from node.blobstore import BlobStore
    from node.client import ClientError
    from node.executor_service import (
        ExecutorConfig,
        ExecutorError,
        ExecutorService,
        install_signal_handlers,
    )
    from node.jobdata import SealedKeySource

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        seed = bytes.fromhex(args.wallet.read_text().strip())
        if len(seed) != 32:
            raise ValueError("a private seed is 32 bytes (64 hex characters)")
        host, _, port = args.listen.rpartition(":")
        config = ExecutorConfig(
            seed=seed, node_url=args.node, work_dir=args.work_dir, stake=args.stake,
            fee=args.fee, listen_host=host or "127.0.0.1", listen_port=int(port),
            poll_s=args.poll,
        )
        source = SealedKeySource(BlobStore(args.blob_dir), args.key_dir, seed)
        service = ExecutorService(config, source)
    except (OSError, ValueError) as exc:
        print(f"executor: error: {exc}")
        return 1
    install_signal_handlers(service)
    try:
        service.run()
    except (ClientError, ExecutorError) as exc:
        print(f"executor: error: {exc}")
        return 1
    return 0
