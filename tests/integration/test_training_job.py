"""End to end on a real cluster: publish, grant, submit, two executors train, anchor, settle, fetch.

4 PBFT replicas + 1 PoS validator (separate processes), proxy services beside
three PBFT nodes, two providers publishing encrypted non-IID digits shards
with ``dmchain data publish`` and granting through their provider agents
(2 of 3 proxies), a buyer with settled access grants, two
``dmchain executor run`` processes that obtain the datasets through the same
grant path, and the buyer's ``dmchain job`` commands. The buyer and each
executor have their own directories and share none: the validation key
reaches the executors on chain (JOB_KEYS), the ciphertext through the nodes'
blob endpoints.
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
from data_helpers import Helpers, make_wallet, run_data_ok

from consensus.crypto import compute_hash
from ledger.genesis import TOKEN
from ml.data import compute_digits_split, encode_dataset
from ml.models import decode_weights
from ml.settlement import compute_eligible, compute_settlement
from node.client import ClientError
from node.wallet import load_wallet

BID = 50 * TOKEN
EXECUTOR_FEE = 1 * TOKEN
TAU_PPM = 700_000
M, N = 2, 3
PROXY_NODES = ["node00", "node01", "node02"]
T0 = [time.monotonic()]


def stage(name: str) -> None:
    """Print the time since the test started (visible with ``pytest -s``)."""
    print(f"[{time.monotonic() - T0[0]:6.1f} s] {name}", flush=True)


def test_training_job_end_to_end(make_cluster: MakeCluster, tmp_path: Path) -> None:
    T0[0] = time.monotonic()
    cluster = make_cluster(pbft=4, pos=1, epoch_length=10, clients=8)
    stage("cluster up")
    helpers = [Helpers(cluster), Helpers(cluster), Helpers(cluster)]  # proxies, one per agent
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _run_flow(cluster, tmp_path, helpers, procs)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for h in helpers:
            h.kill_all()


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(tmp_path.rglob("*.log"))
    )


def _balance(client: Any, account: bytes) -> int:
    return int(client.get_account(account)["balance"])


def _run_flow(cluster: Cluster, tmp_path: Path, helpers: list[Helpers],
              procs: list[subprocess.Popen[bytes]]) -> None:
    url = cluster.node("node01").config.http_url
    blob_nodes = ",".join(cluster.node(n).config.http_url for n in cluster.names[:3])
    client = cluster.client("node01")
    genesis = json.loads((cluster.home / "genesis.json").read_text())
    consensus_keys = {v["name"]: v["consensus_key"] for v in genesis["validators"]}
    candidates = [consensus_keys[n] for n in PROXY_NODES]
    providers = [make_wallet(cluster, tmp_path / f"provider{i}" / "wallet", i) for i in range(2)]
    buyer = make_wallet(cluster, tmp_path / "buyer" / "wallet", 3)
    executors = [make_wallet(cluster, tmp_path / f"executor{i}" / "wallet", 4 + i)
                 for i in range(2)]
    for name in PROXY_NODES:
        helpers[0].start_proxy(name)
    for helper, wallet in zip(helpers[1:], providers, strict=True):
        helper.start_agent(wallet, "node00", candidates, M, N)
    for i, wallet in enumerate(executors):
        log = open(tmp_path / f"executor{i}" / "executor.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [*DMCHAIN, "executor", "run", "--wallet", str(wallet), "--node", url,
             "--blob-nodes", blob_nodes, "--work-dir", str(tmp_path / f"executor{i}" / "work"),
             "--stake", str(20 * TOKEN), "--fee", str(EXECUTOR_FEE),
             "--poll", "0.3"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        ))

    # providers publish encrypted non-IID digits shards through the data access path
    split = compute_digits_split(2, seed=1)
    publishing = []
    for i, (wallet, shard) in enumerate(zip(providers, split.providers, strict=True)):
        path = tmp_path / f"provider{i}" / "digits.ds"
        path.write_bytes(encode_dataset(shard))
        publishing.append(subprocess.Popen(  # both providers publish at once
            [*DMCHAIN, "data", "publish", str(path), "--wallet", str(wallet), "--node", url,
             "--blob-nodes", blob_nodes, "--tags", "digits", "--license", "CC-BY-4.0",
             "--replicas", "2", "--quiet"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    assets = []
    for proc in publishing:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout + stderr
        assets.append(bytes.fromhex(str(json.loads(stdout)["asset_id"])))
    stage("assets published")
    # the buyer requests access; the agents grant, the proxies re-encrypt: settled grants
    grants = []
    for asset_id in assets:
        doc = run_data_ok("request", asset_id.hex(), "--wallet", str(buyer), "--node", url,
                          "--quiet")
        grants.append(bytes.fromhex(str(doc["request_id"])))

    def granted() -> bool:
        return all(client.get_access(g)["status_name"] == "granted" for g in grants)

    wait_until(granted, "the buyer's grants", timeout=180, cluster=cluster)
    stage("buyer's grants settled")

    ex_accounts = [load_wallet(w).public_key for w in executors]

    def registered() -> bool:
        assert all(p.poll() is None for p in procs), _logs(tmp_path)
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
    validation_path = tmp_path / "buyer" / "validation.ds"
    buyer_state = tmp_path / "buyer" / "state"
    validation_path.write_bytes(encode_dataset(split.validation))
    common = ["--node", url, "--blob-nodes", blob_nodes, "--testnet", str(cluster.home),
              "--client", "3", "--validation", str(validation_path),
              "--state-dir", str(buyer_state)]
    grant_args = [a for g in grants for a in ("--grant", g.hex())]

    # refusals: a model outside the allow-list (local), a missing grant (by the chain)
    spec_path.write_text(json.dumps({**spec, "model": "resnet50"}))
    bad = subprocess.run([*DMCHAIN, "job", "submit", str(spec_path), *common, *grant_args],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and "job: refused: model outside the allow-list" in bad.stdout
    spec_path.write_text(json.dumps(spec))
    escrow_before = client.get_supply()["escrow"]
    bad = subprocess.run([*DMCHAIN, "job", "submit", str(spec_path), *common,
                          "--grant", grants[0].hex(), "--grant", grants[0].hex()],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "job: refused: dataset 1" in bad.stdout and "no settled access grant" in bad.stdout
    assert client.get_supply()["escrow"] == escrow_before
    stage("refusals checked")

    provider_accounts = [load_wallet(w).public_key for w in providers]
    before = {a: _balance(client, a) for a in [*provider_accounts, *ex_accounts]}
    buyer_before = _balance(client, load_wallet(buyer).public_key)
    out = run_dmchain("job", "submit", str(spec_path), *common, *grant_args, timeout=180)
    job_id = bytes.fromhex(out.stdout.strip().splitlines()[-1])
    job = client.get_job(job_id)
    assert sorted(e["executor"] for e in job["assigned"]) == sorted(a.hex() for a in ex_accounts)
    # the validation key is on chain, sealed to each assigned executor; the buyer's own
    # copy stays in its state directory (0600), nowhere an executor looks
    assert sorted(k["executor"] for k in job["keys"]) == sorted(a.hex() for a in ex_accounts)
    assert all(len(bytes.fromhex(k["sealed_key"])) == 80 for k in job["keys"])
    own = list(buyer_state.iterdir())
    assert [p.name for p in own] == [f"{job['validation_cipher_hash']}.key"]
    assert own[0].stat().st_mode & 0o777 == 0o600
    for i in range(2):  # no copy of the validation key file in an executor's directories
        assert not list((tmp_path / f"executor{i}").rglob(own[0].name))
    # every assigned executor already holds a key: `job keys` posts none
    keys_out = run_dmchain("job", "keys", job_id.hex(), "--node", url, "--testnet",
                           str(cluster.home), "--client", "3", "--state-dir", str(buyer_state))
    assert json.loads(keys_out.stdout)["sealed_to"] == []
    stage("job submitted")

    def accepted() -> dict[str, Any] | None:
        assert all(p.poll() is None for p in procs), _logs(tmp_path)
        doc = client.get_job(job_id)
        return doc if doc["status"] == "accepted" else None

    job = wait_until(accepted, "job accepted", timeout=300, cluster=cluster)
    stage("job accepted")
    # both executors, in separate processes, posted the same result digest
    assert len(job["posts"]) == 2 and len({p["digest"] for p in job["posts"]}) == 1
    assert sorted(job["agreed"]) == sorted(a.hex() for a in ex_accounts) and not job["slashed"]
    assert job["digest"] == job["posts"][0]["digest"] and job["metric_ppm"] >= TAU_PPM

    # each executor obtained each dataset through its own settled access grant (and paid it)
    escrow_paid = dict.fromkeys(ex_accounts, 0)
    price_earned = dict.fromkeys(provider_accounts, 0)
    for wallet in executors:
        w = load_wallet(wallet)
        for asset_id in assets:
            request_id = w.find_request_for_asset(asset_id)
            assert request_id is not None
            access = client.get_access(request_id)
            assert access["consumer"] == w.public_key.hex()
            assert access["status_name"] == "granted"
            escrow_paid[w.public_key] += access["escrow"]
            price_earned[bytes.fromhex(access["provider"])] += access["price"]

    # settlement exactly as ml.settlement computes it, paid on chain
    expected = compute_settlement(BID, job["metric_ppm"], TAU_PPM, [1, 1],
                                  job["contributions_ppm"],
                                  compute_eligible(job["kept_counts"], 2))
    assert expected.met and job["settlement"]["buyer_refund"] == expected.buyer_refund == 0
    assert [e["amount"] for e in job["settlement"]["executors"]] == list(
        expected.executor_payouts) == [BID * 3 // 20] * 2
    assert [p["amount"] for p in job["settlement"]["providers"]] == list(
        expected.provider_payouts)
    assert sum(expected.provider_payouts) == BID * 7 // 10
    assert buyer_before - _balance(client, load_wallet(buyer).public_key) == BID
    paid = {e["executor"]: e["amount"] for e in job["settlement"]["executors"]}
    for account in ex_accounts:
        assert _balance(client, account) - before[account] == paid[account.hex()] - escrow_paid[
            account]
    for account, amount in zip(provider_accounts, expected.provider_payouts, strict=True):
        assert _balance(client, account) - before[account] == amount + price_earned[account]
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
    stage("model fetched")
