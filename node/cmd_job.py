"""``dmchain job submit|status|model|keys|expire``: post, follow, settle or expire a job.

``submit SPEC.json --validation FILE --grant ID ...`` checks the spec and the
validation dataset locally, uploads the validation data encrypted (fresh
AES-256-GCM key) to the nodes' blob endpoints, keeps the key sealed to the
buyer in a 0600 file in the buyer's state directory, posts ``SUBMIT_JOB`` (one
access grant id per dataset, in spec order), and once it is confirmed posts
``JOB_KEYS``: the validation key sealed to each assigned executor, on chain.
It prints the job id; a refusal (locally or by the chain) is printed as
``job: refused: <reason>`` with exit status 1.

The state directory (``--state-dir``) is the buyer's own, never shared with
executors; by default ``job-keys`` next to the ``--key`` file, or
``job-keys/client<I>`` in the ``--testnet`` directory.

``status ID`` prints the job document (``GET /v1/jobs/{id}``).

``keys ID`` posts ``JOB_KEYS`` for the executors now assigned that hold no
key yet (after a disagreement widened the set, or if ``submit`` could not
post them), from the buyer's own copy in its state directory.

``model ID --out FILE`` fetches the model from an agreeing executor, opens
it with the buyer's key and writes it only if its SHA-256 equals the weights
hash anchored on chain.

``expire ID`` posts ``EXPIRE_JOB`` (any account may sign it) for an open job
past its deadline and prints the refund to the buyer; the chain's refusal
(job still open until height H, job already accepted, no such job) is printed
as ``job: refused: <reason>`` with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import httpx

from consensus.crypto import compute_hash
from ledger.tx import MAX_JOB_KEYS, TxKind
from ml.data import MAX_BYTES, DatasetError, decode_dataset
from ml.spec import MAX_JSON_SIZE, SpecError, encode_spec, parse_spec_json
from node.blobstore import BlobStore
from node.client import (
    ClientError,
    NodeClient,
    Signer,
    get_outcome_problem,
    get_tx_outcome,
)
from node.jobdata import (
    JobDataError,
    compute_key_entries,
    get_buyer_key,
    open_sealed,
    process_save_buyer_key,
    process_store_encrypted,
)
from node.testnet import get_client_seeds

MAX_MODEL_BYTES = 64 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, its argument and the signer/node options."""
    parser.add_argument("action", choices=["submit", "status", "model", "keys", "expire"])
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
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="submit/keys: the buyer's own directory for its copy of the "
                        "validation key (default: job-keys next to --key, or "
                        "TESTNET/job-keys/client<I>)")
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


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    if args.key is not None:
        return Path(args.key).resolve().parent / "job-keys"
    return Path(args.testnet) / "job-keys" / f"client{args.client}"


def _post_keys(
    client: NodeClient, signer: Signer, job_id: bytes, key: bytes, executors: list[bytes],
    args: argparse.Namespace,
) -> str | None:
    """Post JOB_KEYS for ``executors`` (in bounded batches); returns an error or None."""
    for start in range(0, len(executors), MAX_JOB_KEYS):
        entries = compute_key_entries(key, executors[start : start + MAX_JOB_KEYS])
        signer.nonce = client.get_account(signer.public_key)["nonce"]
        tx_hash = client.submit(signer.sign(TxKind.JOB_KEYS, [job_id, entries], args.fee))
        problem = get_outcome_problem(get_tx_outcome(client, tx_hash, args.timeout), args.timeout)
        if problem is not None:
            return f"JOB_KEYS {problem[0]}: {problem[1]}"
    return None


def _job_id(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("a job id is 32 bytes (64 hex characters)")
    return raw


def _submit(args: argparse.Namespace, client: NodeClient) -> int:
    if args.validation is None:
        print("job: error: submit needs --validation")
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
    try:  # the buyer's own copy, kept before the job exists so `job keys` can always finish
        own = process_save_buyer_key(_state_dir(args), cipher_hash, seed, key)
    except (OSError, JobDataError) as exc:
        print(f"job: error: cannot keep the validation key: {exc}")
        return 1
    payload = [encode_spec(spec), content_hash, cipher_hash, grants]
    try:
        tx_hash = client.submit(signer.sign(TxKind.SUBMIT_JOB, payload, args.fee))
    except ClientError:
        own.unlink(missing_ok=True)  # not admitted: no job
        raise
    problem = get_outcome_problem(get_tx_outcome(client, tx_hash, args.timeout), args.timeout)
    if problem is not None:
        if problem[0] == "refused":
            own.unlink(missing_ok=True)  # no job: nothing to deliver later
        print(f"job: {problem[0]}: {problem[1]}")
        return 1
    job = client.get_job(tx_hash)
    assigned = [bytes.fromhex(e["executor"]) for e in job["assigned"]]
    keys_problem = _post_keys(client, signer, tx_hash, key, assigned, args)
    if keys_problem is not None:
        print(tx_hash.hex())
        print(f"job: error: job submitted but its keys were not delivered ({keys_problem}); "
              f"retry with `dmchain job keys {tx_hash.hex()}`")
        return 1
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
    try:
        seed = _load_seed(args)
        job_id = _job_id(args.arg)
    except (OSError, ValueError) as exc:
        print(f"job: error: {exc}")
        return 1
    job = client.get_job(job_id)
    cipher_hash = bytes.fromhex(job["validation_cipher_hash"])
    try:
        key = get_buyer_key(_state_dir(args), cipher_hash, seed)
    except JobDataError as exc:
        print(f"job: error: the buyer's copy of the validation key is not usable: {exc}")
        return 1
    holding = {e["executor"] for e in job.get("keys", [])}
    missing = [bytes.fromhex(e["executor"]) for e in job["assigned"]
               if e["executor"] not in holding]
    signer = Signer(seed, client.get_status()["chain_id"])
    problem = _post_keys(client, signer, job_id, key, missing, args) if missing else None
    if problem is not None:
        print(f"job: refused: {problem}")
        return 1
    print(json.dumps({"job_id": job_id.hex(), "sealed_to": [a.hex() for a in missing]}))
    return 0


def _expire(args: argparse.Namespace, client: NodeClient) -> int:
    """Post EXPIRE_JOB for ``args.arg``; print the buyer's refund, or the chain's refusal."""
    try:
        seed = _load_seed(args)
        job_id = _job_id(args.arg)
    except (OSError, ValueError) as exc:
        print(f"job: error: {exc}")
        return 1
    signer = Signer(seed, client.get_status()["chain_id"])
    signer.nonce = client.get_account(signer.public_key)["nonce"]
    tx_hash = client.submit(signer.sign(TxKind.EXPIRE_JOB, [job_id], args.fee))
    problem = get_outcome_problem(get_tx_outcome(client, tx_hash, args.timeout), args.timeout)
    if problem is not None:
        print(f"job: {problem[0]}: {problem[1]}")
        return 1
    job = client.get_job(job_id)
    settlement = job.get("settlement") or {}
    print(json.dumps({"job_id": job_id.hex(), "status": job["status"], "buyer": job["buyer"],
                      "refund": settlement.get("buyer_refund", 0), "tx": tx_hash.hex()}))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``submit``, ``status``, ``model``, ``keys`` or ``expire``; 1 with a clear message."""
    with NodeClient(args.node, timeout=args.timeout + 5) as client:
        try:
            if args.action == "submit":
                return _submit(args, client)
            if args.action == "model":
                return _model(args, client)
            if args.action == "keys":
                return _keys(args, client)
            if args.action == "expire":
                return _expire(args, client)
            doc = client.get_job(_job_id(args.arg))
        except ValueError as exc:
            print(f"job: error: {exc}")
            return 1
        except ClientError as exc:
            print(f"job: error: {exc}")
            return 1
    print(json.dumps(doc, indent=2))
    return 0
