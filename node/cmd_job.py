"""``dmchain job submit|status|model``: post a training job, follow it, fetch its model.

``submit SPEC.json --validation FILE --grant ID ...`` checks the spec and the
validation dataset locally, uploads the validation data encrypted (fresh
AES-256-GCM key) to the nodes' blob endpoints, posts ``SUBMIT_JOB`` (one
access grant id per dataset, in spec order), and once it is confirmed
seals the validation key to each assigned executor.
It prints the job id; a refusal (locally or by the chain) is printed as
``job: refused: <reason>`` with exit status 1.

``status ID`` prints the job document (``GET /v1/jobs/{id}``).

``keys ID --key-dir K`` seals the validation key again to every executor now
assigned (after a disagreement widened the set), from the buyer's own sealed
copy that ``submit`` left in the key directory.

``model ID --out FILE`` fetches the model from an agreeing executor, opens
it with the buyer's key and writes it only if its SHA-256 equals the weights
hash anchored on chain.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from consensus.crypto import compute_hash
from ledger.tx import TxKind
from ml.data import MAX_BYTES, DatasetError, decode_dataset
from ml.spec import MAX_JSON_SIZE, SpecError, encode_spec, parse_spec_json
from node.blobstore import BlobStore
from node.client import ClientError, NodeClient, Signer
from node.jobdata import (
    JobDataError,
    get_key_path,
    open_sealed,
    process_grant_key,
    process_store_encrypted,
)
from node.testnet import get_client_seeds

MAX_MODEL_BYTES = 64 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, its argument and the signer/node options."""
    parser.add_argument("action", choices=["submit", "status", "model", "keys"])
    parser.add_argument("arg", help="SPEC.json for submit, else the job id")
    parser.add_argument("--node", default="http://127.0.0.1:26700", help="node API URL")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--key", type=Path, help="file holding the buyer's private seed (hex)")
    key.add_argument("--testnet", type=Path, help="testnet directory (with --client)")
    parser.add_argument("--client", type=int, default=0, help="client index in clients.json")
    parser.add_argument("--validation", type=Path, help="submit: validation dataset file")
    parser.add_argument("--grant", action="append", default=[],
                        help="submit: the buyer's access grant id per dataset, in spec order")
    parser.add_argument("--blob-dir", type=Path,
                        help="submit: also keep the encrypted validation data in this blob store")
    parser.add_argument("--blob-nodes", default=None,
                        help="submit: blob node URLs (comma separated; default: --node)")
    parser.add_argument("--key-dir", type=Path, help="submit: where sealed data keys go")
    parser.add_argument("--out", type=Path, help="model: where to write the model")
    parser.add_argument("--fee", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)


def _load_seed(args: argparse.Namespace) -> bytes:
    if args.key is not None:
        seed = bytes.fromhex(args.key.read_text().strip())
    elif args.testnet is not None:
        seeds = get_client_seeds(args.testnet)
        if not 0 <= args.client < len(seeds):
            raise ValueError(f"--client must be in [0, {len(seeds) - 1}]")
        seed = seeds[args.client]
    else:
        raise ValueError("--key or --testnet is required")
    if len(seed) != 32:
        raise ValueError("a private seed is 32 bytes (64 hex characters)")
    return seed


def _job_id(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("a job id is 32 bytes (64 hex characters)")
    return raw


def _wait(client: NodeClient, tx_hash: bytes, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {"hash": tx_hash.hex(), "status": "pending"}
    while time.monotonic() < deadline:
        try:
            left = max(0.1, deadline - time.monotonic())
            doc = client.wait(tx_hash, "confirmed", min(10.0, left))
        except ClientError as exc:
            if exc.code != "unknown_tx":
                raise
            time.sleep(0.2)
            continue
        if doc.get("status") in ("confirmed", "settled", "failed"):
            return doc
        time.sleep(0.2)
    return doc


def _submit(args: argparse.Namespace, client: NodeClient) -> int:
    if args.validation is None or args.key_dir is None:
        print("job: error: submit needs --validation and --key-dir")
        return 1
    try:
        seed = _load_seed(args)
        text = Path(args.arg).read_bytes()
        if len(text) > MAX_JSON_SIZE:
            raise ValueError(f"spec file over {MAX_JSON_SIZE} bytes")
        grants = [_job_id(g) for g in args.grant]
        validation = args.validation.read_bytes()[: MAX_BYTES + 1]
    except (OSError, ValueError) as exc:
        print(f"job: error: {exc}")
        return 1
    try:
        spec = parse_spec_json(text)
    except SpecError as exc:
        label = "model outside the allow-list" if exc.field == "model.name" else "malformed spec"
        print(f"job: refused: {label}: {exc}")
        return 1
    try:
        decode_dataset(validation)
    except DatasetError as exc:
        print(f"job: refused: validation data: {exc}")
        return 1
    from node import data_client as dc

    with tempfile.TemporaryDirectory(prefix="dmchain-job-") as tmp:
        store = BlobStore(args.blob_dir or Path(tmp) / "blobs")
        key, content_hash, cipher_hash = process_store_encrypted(store, validation)
        blob_path = Path(tmp) / "validation.blob"
        blob_path.write_bytes(store.get_bytes(cipher_hash.hex()))
        try:
            for url in dc.compute_blob_urls(args.node, args.blob_nodes):
                dc.upload_blob(url, blob_path, cipher_hash.hex(), timeout=args.timeout)
        except dc.DataError as exc:
            print(f"job: error: validation data upload: {exc}")
            return 1
    signer = Signer(seed, client.get_status()["chain_id"])
    signer.nonce = client.get_account(signer.public_key)["nonce"]
    process_grant_key(args.key_dir, cipher_hash, signer.public_key, key)  # the buyer's own copy
    payload = [encode_spec(spec), content_hash, cipher_hash, grants]
    tx_hash = client.submit(signer.sign(TxKind.SUBMIT_JOB, payload, args.fee))
    doc = _wait(client, tx_hash, args.timeout)
    if doc.get("status") == "failed":
        print(f"job: refused: {doc.get('reason', 'transaction failed')}")
        return 1
    if doc.get("status") not in ("confirmed", "settled"):
        print(f"job: error: not confirmed within {args.timeout:.0f} s: {doc}")
        return 1
    job = client.get_job(tx_hash)
    for entry in job["assigned"]:
        process_grant_key(args.key_dir, cipher_hash, bytes.fromhex(entry["executor"]), key)
    print(tx_hash.hex())
    print(json.dumps({"job_id": tx_hash.hex(), "assigned": job["assigned"]}), file=sys.stderr)
    return 0


def _model(args: argparse.Namespace, client: NodeClient) -> int:
    if args.out is None:
        print("job: error: model needs --out FILE")
        return 1
    try:
        seed = _load_seed(args)
        job_id = _job_id(args.arg)
    except (OSError, ValueError) as exc:
        print(f"job: error: {exc}")
        return 1
    job = client.get_job(job_id)
    if job["status"] != "accepted":
        print(f"job: error: job is {job['status']}; no anchored model yet")
        return 1
    anchored = bytes.fromhex(job["weights_hash"])
    endpoints = {e["executor"]: e["endpoint"] for e in job["assigned"]}
    problems = []
    for executor in job["agreed"]:
        url = f"{endpoints.get(executor, '').rstrip('/')}/v1/models/{job_id.hex()}"
        try:
            response = httpx.get(url, timeout=args.timeout)
            if response.status_code != 200:
                raise JobDataError(f"HTTP {response.status_code}")
            if len(response.content) > MAX_MODEL_BYTES:
                raise JobDataError("model too large")
            weights = open_sealed(seed, response.content)
        except (httpx.HTTPError, JobDataError) as exc:
            problems.append(f"{url}: {exc}")
            continue
        if compute_hash(weights) != anchored:
            problems.append(f"{url}: model hash differs from the anchored weights hash")
            continue
        args.out.write_bytes(weights)
        print(json.dumps({"job_id": job_id.hex(), "weights_hash": anchored.hex(),
                          "bytes": len(weights), "out": str(args.out), "from": url}, indent=2))
        return 0
    print("job: error: no agreeing executor delivered the anchored model: " + "; ".join(problems))
    return 1


def _keys(args: argparse.Namespace, client: NodeClient) -> int:
    if args.key_dir is None:
        print("job: error: keys needs --key-dir")
        return 1
    try:
        seed = _load_seed(args)
        job_id = _job_id(args.arg)
    except (OSError, ValueError) as exc:
        print(f"job: error: {exc}")
        return 1
    job = client.get_job(job_id)
    cipher_hash = bytes.fromhex(job["validation_cipher_hash"])
    own = get_key_path(args.key_dir, cipher_hash, bytes.fromhex(job["buyer"]))
    try:
        key = open_sealed(seed, own.read_bytes())
    except (OSError, JobDataError) as exc:
        print(f"job: error: the buyer's copy of the validation key is not usable: {exc}")
        return 1
    for entry in job["assigned"]:
        process_grant_key(args.key_dir, cipher_hash, bytes.fromhex(entry["executor"]), key)
    sealed_to = [e["executor"] for e in job["assigned"]]
    print(json.dumps({"job_id": job_id.hex(), "sealed_to": sealed_to}))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``submit``, ``status`` or ``model``; 1 with a clear message on any error."""
    with NodeClient(args.node, timeout=args.timeout + 5) as client:
        try:
            if args.action == "submit":
                return _submit(args, client)
            if args.action == "model":
                return _model(args, client)
            if args.action == "keys":
                return _keys(args, client)
            doc = client.get_job(_job_id(args.arg))
        except ValueError as exc:
            print(f"job: error: {exc}")
            return 1
        except ClientError as exc:
            print(f"job: error: {exc}")
            return 1
    print(json.dumps(doc, indent=2))
    return 0
