"""End to end on a real cluster: publish, grant, submit, two executors train, anchor, settle, fetch.

4 PBFT replicas + 1 PoS validator (separate processes), three providers
publishing encrypted digits shards, a buyer with settled access grants, two
``dmchain executor run`` processes, and the buyer's ``dmchain job`` commands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import (
    DMCHAIN,
    REPO,
    Cluster,
    MakeCluster,
    get_genesis_supply,
    run_dmchain,
    wait_until,
)

from consensus.crypto import compute_hash, compute_public_key
from ledger.genesis import TOKEN
from ledger.tx import TxKind
from ml.data import compute_digits_split, encode_dataset
from ml.models import decode_weights
from ml.settlement import compute_eligible, compute_settlement
from node.blobstore import BlobStore
from node.client import ClientError, Signer
from node.jobdata import process_grant_key, process_store_encrypted
from node.testnet import get_client_seeds

CHAIN_ID = "dmchain-local"
BID = 50 * TOKEN
EXECUTOR_FEE = 1 * TOKEN
TAU_PPM = 700_000


def submit_all(cluster: Cluster, txs: list[tuple[Signer, TxKind, list[Any]]]) -> list[bytes]:
    """Submit transactions together, wait until each is confirmed; return their hashes."""
    client = cluster.client(cluster.names[0])
    hashes = [client.submit(signer.sign(kind, payload)) for signer, kind, payload in txs]
    for tx_hash, (_, kind, _) in zip(hashes, txs, strict=True):
        doc = wait_until(lambda h=tx_hash: _confirmed(cluster, h), f"{kind.name} confirmed",
                         timeout=120, cluster=cluster)
        assert doc["status"] != "failed", doc
    return hashes


def _confirmed(cluster: Cluster, tx_hash: bytes) -> dict[str, Any] | None:
    doc = cluster.client(cluster.names[0]).get_tx(tx_hash)
    return doc if doc["status"] in ("confirmed", "settled", "failed") else None


def balance(cluster: Cluster, account: bytes) -> int:
    return int(cluster.client(cluster.names[0]).get_account(account)["balance"])


T0 = [time.monotonic()]


def stage(name: str) -> None:
    """Print the time since the test started (visible with ``pytest -s``)."""
    print(f"[{time.monotonic() - T0[0]:6.1f} s] {name}", flush=True)


def test_training_job_end_to_end(make_cluster: MakeCluster, tmp_path: Path) -> None:
    T0[0] = time.monotonic()
    cluster = make_cluster(pbft=4, pos=1, epoch_length=10, clients=8)
    stage("cluster up")
    url = cluster.node(cluster.names[0]).config.http_url
    client = cluster.client(cluster.names[0])
    seeds = get_client_seeds(cluster.home)
    signers = [Signer(s, CHAIN_ID) for s in seeds[:6]]
    providers, buyer, executors = signers[:3], signers[3], signers[4:6]
    blobs, keys = tmp_path / "blobs", tmp_path / "keys"
    store = BlobStore(blobs)

    # two executor processes, each with its own wallet and work directory
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, ex in enumerate(executors):
            wallet = tmp_path / f"executor{i}.seed"
            wallet.write_text(ex.seed.hex())
            log = open(tmp_path / f"executor{i}.log", "wb")  # noqa: SIM115 - closed with the proc
            procs.append(subprocess.Popen(
                [*DMCHAIN, "executor", "run", "--wallet", str(wallet), "--node", url,
                 "--work-dir", str(tmp_path / f"work{i}"), "--blob-dir", str(blobs),
                 "--key-dir", str(keys), "--stake", str(20 * TOKEN),
                 "--fee", str(EXECUTOR_FEE), "--poll", "0.3"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            ))
        _run_flow(cluster, client, url, tmp_path, store, keys, providers, buyer, executors, procs)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _executor_logs(tmp_path: Path) -> str:
    return "\n".join((tmp_path / f"executor{i}.log").read_text(errors="replace")[-3000:]
                     for i in range(2))


def _run_flow(cluster: Cluster, client: Any, url: str, tmp_path: Path, store: BlobStore,
              keys: Path, providers: list[Signer], buyer: Signer, executors: list[Signer],
              procs: list[subprocess.Popen[bytes]]) -> None:
    for s in [*providers, buyer]:
        s.nonce = client.get_account(s.public_key)["nonce"]

    # providers publish encrypted non-IID digits shards; the buyer keeps validation data
    split = compute_digits_split(3, seed=1)
    registrations, data_keys = [], []
    for i, (provider, shard) in enumerate(zip(providers, split.providers, strict=True)):
        plaintext = encode_dataset(shard)
        key, content_hash, cipher_hash = process_store_encrypted(store, plaintext)
        registrations.append((provider, TxKind.REGISTER_ASSET, [
            content_hash, cipher_hash, len(plaintext), compute_hash(b"digits-%d" % i),
            ["digits"], "CC-BY-4.0", 100 * TOKEN, b"",
        ]))
        data_keys.append((cipher_hash, key))
    assets = submit_all(cluster, registrations)
    stage("assets registered")
    # the buyer requests and settles access to each dataset: the grants
    grants = submit_all(cluster, [(buyer, TxKind.REQUEST_ACCESS, [a]) for a in assets])
    submit_all(cluster, [(buyer, TxKind.SETTLE_ACCESS, [g]) for g in grants])

    stage("grants settled")
    ex_accounts = [e.public_key for e in executors]
    def registered() -> bool:
        try:
            return all(client.get_executor(a)["active"] for a in ex_accounts)
        except ClientError:
            return False

    wait_until(registered, "both executors registered", timeout=120, cluster=cluster)

    stage("executors registered")
    spec = {
        "datasets": [a.hex() for a in assets], "model": "logreg", "tau_ppm": TAU_PPM,
        "bid": BID, "rounds": 2, "local_epochs": 1, "learning_rate": "0.5",
        "batch_size": 32, "seed": 5, "aggregation": "fedavg",
        "profile": {"threads": 1, "cpu_capability": "avx2"},
    }
    spec_path = tmp_path / "spec.json"
    validation_path = tmp_path / "validation.ds"
    validation_path.write_bytes(encode_dataset(split.validation))
    common = ["--node", url, "--testnet", str(cluster.home), "--client", "3",
              "--validation", str(validation_path), "--blob-dir", str(store.root),
              "--key-dir", str(keys)]

    # refusals: a model outside the allow-list (local), a missing grant (by the chain)
    spec_path.write_text(json.dumps({**spec, "model": "resnet50"}))
    bad = subprocess.run([*DMCHAIN, "job", "submit", str(spec_path), *common,
                          *(a for g in grants for a in ("--grant", g.hex()))],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and "job: refused: model outside the allow-list" in bad.stdout
    spec_path.write_text(json.dumps(spec))
    escrow_before = client.get_supply()["escrow"]
    bad = subprocess.run([*DMCHAIN, "job", "submit", str(spec_path), *common,
                          *(a for g in [grants[0]] * 3 for a in ("--grant", g.hex()))],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "job: refused: dataset 1" in bad.stdout and "no settled access grant" in bad.stdout
    assert client.get_supply()["escrow"] == escrow_before

    stage("refusals checked")
    before = {a: balance(cluster, a) for a in
              [buyer.public_key, *ex_accounts, *(p.public_key for p in providers)]}
    out = run_dmchain("job", "submit", str(spec_path), *common,
                      *(a for g in grants for a in ("--grant", g.hex())), timeout=180)
    job_id = bytes.fromhex(out.stdout.strip().splitlines()[-1])
    job = client.get_job(job_id)
    assert sorted(e["executor"] for e in job["assigned"]) == sorted(a.hex() for a in ex_accounts)
    stage("job submitted")
    keys_out = run_dmchain("job", "keys", job_id.hex(), "--node", url, "--testnet",
                           str(cluster.home), "--client", "3", "--key-dir", str(keys))
    assert json.loads(keys_out.stdout)["sealed_to"] == [e["executor"] for e in job["assigned"]]
    # each provider makes its data key available to the assigned executors
    for cipher_hash, key in data_keys:
        for entry in job["assigned"]:
            process_grant_key(keys, cipher_hash, bytes.fromhex(entry["executor"]), key)

    def accepted() -> dict[str, Any] | None:
        assert all(p.poll() is None for p in procs), _executor_logs(tmp_path)
        doc = client.get_job(job_id)
        return doc if doc["status"] == "accepted" else None

    job = wait_until(accepted, "job accepted", timeout=300, cluster=cluster)
    stage("job accepted")
    # both executors, in separate processes, posted the same result digest
    assert len(job["posts"]) == 2 and len({p["digest"] for p in job["posts"]}) == 1
    assert sorted(job["agreed"]) == sorted(a.hex() for a in ex_accounts) and not job["slashed"]
    assert job["digest"] == job["posts"][0]["digest"] and job["metric_ppm"] >= TAU_PPM

    # settlement exactly as ml.settlement computes it, paid on chain
    expected = compute_settlement(BID, job["metric_ppm"], TAU_PPM, [1, 1],
                                  job["contributions_ppm"],
                                  compute_eligible(job["kept_counts"], 2))
    assert job["settlement"]["buyer_refund"] == expected.buyer_refund == 0
    paid_ex = {e["executor"]: e["amount"] for e in job["settlement"]["executors"]}
    assert sorted(paid_ex.values()) == sorted(expected.executor_payouts)
    after = {a: balance(cluster, a) for a in before}
    assert before[buyer.public_key] - after[buyer.public_key] == BID
    for account in ex_accounts:
        assert after[account] - before[account] == paid_ex[account.hex()] == BID * 3 // 20
    for provider, amount in zip(providers, expected.provider_payouts, strict=True):
        assert after[provider.public_key] - before[provider.public_key] == amount > 0
    assert [q["quality_ppm"] for q in job["quality"]] == [
        client.get_asset(a)["quality_ppm"] for a in assets
    ]
    supply = client.get_supply()
    assert supply["total"] == get_genesis_supply(cluster.home) and supply["escrow"] == 0

    stage("settlement checked")
    # status and the model: fetched from an executor, opened, hash equals the anchored one
    status = json.loads(run_dmchain("job", "status", job_id.hex(), "--node", url).stdout)
    assert status["status"] == "accepted" and status["weights_hash"] == job["weights_hash"]
    model_path = tmp_path / "model.bin"
    run_dmchain("job", "model", job_id.hex(), "--node", url, "--testnet", str(cluster.home),
                "--client", "3", "--out", str(model_path))
    weights = model_path.read_bytes()
    assert compute_hash(weights).hex() == job["weights_hash"]
    assert decode_weights(weights)  # a loadable logreg state dict
    other = subprocess.run([*DMCHAIN, "job", "model", job_id.hex(), "--node", url, "--testnet",
                            str(cluster.home), "--client", "0", "--out", str(tmp_path / "x")],
                           cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert other.returncode == 1 and not (tmp_path / "x").exists()  # sealed to the buyer only
    assert compute_public_key(buyer.seed).hex() == job["buyer"]
    stage("model fetched")
