"""KYC_Audit end to end on a real cluster: 4 PBFT + 1 PoS nodes, a proxy service
(``dmchain proxy run``) beside each of the 4 replicas, every step through the CLI.

One cluster serves the module (each test makes its own audit request). Audit
parameters are set through governance (``dmchain governance set-param``): a
time lock of 25 blocks (a transaction runs the chain to the end of its 5-block
epoch, so a request and its two approvals stay inside the time lock until the
test pushes the chain on) and an expiry of 1,000 blocks; the expiry test
shortens the expiry to 60 blocks for its own request. Tests that depend on
the height wait for the chain to be idle first (proxies of earlier tests done).
Proxies hold 3-of-4 kfrags per field.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import umbral_pre
from conftest import (
    CHAIN_ID,
    DMCHAIN,
    REPO,
    Cluster,
    run_dmchain,
    start_cluster,
    wait_until,
)

from consensus.crypto import compute_public_key, compute_seed_from_label
from ledger.tx import TxKind
from node.client import Signer
from node.kyc_client import KycClient
from node.testnet import get_client_seeds
from pre.kyc import SealedCredential, compute_subject_signer, process_field_reencryption

TIMELOCK = 25
EXPIRY = 1_000
SHORT_EXPIRY = 60
EPOCH = 5
THRESHOLD = 3
CREDENTIAL = {
    "name": "Alice Example",
    "date_of_birth": "1990-01-02",
    "id_number": "X1234567",
    "address": {"street": "1 Main Street", "city": "Springfield", "zip": "12345"},
    "nationality": "UT",
    "email": "alice@example.com",
}
SUBJECT = compute_public_key(compute_seed_from_label("kyc-subject"))
ORDER = bytes(range(32))


@dataclass
class KycEnv:
    """The running cluster, its proxies, key files and the registered subject."""

    cluster: Cluster
    work: Path
    url: str
    gov_files: list[Path]
    auditor_file: Path
    vault: Path
    proxy_keys: list[bytes]
    proxy_seeds: list[bytes]
    proxy_logs: list[Path]
    filler: Signer
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self) -> KycClient:
        return KycClient(self.url, timeout=60.0)


def run_cli(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run ``dmchain`` and return the finished process whatever its exit status."""
    return subprocess.run(
        [*DMCHAIN, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def _write_key(path: Path, seed: bytes) -> Path:
    path.write_text(seed.hex() + "\n")
    os.chmod(path, 0o600)
    return path


def _key_args(key: Path) -> list[str]:
    """A wallet directory or a seed key file, as the CLI takes them."""
    return ["--wallet", str(key)] if key.is_dir() else ["--key-file", str(key)]


def _height(env: KycEnv) -> int:
    with env.client() as c:
        return int(c.get_status()["height"])


def wait_idle(env: KycEnv) -> None:
    """Wait until the chain stands still at an epoch end (earlier proxies' work is done)."""
    with env.client() as c:
        last = [-1]

        def idle() -> bool:
            height = int(c.get_status()["height"])
            still, last[0] = height == last[0], height
            return still and height % EPOCH == 0

        wait_until(idle, "the chain to be idle", timeout=120, interval=1.5)


def advance_to(env: KycEnv, target: int) -> None:
    """Push the chain to at least ``target`` with 1-unit transfers (each runs to an epoch end)."""
    with env.client() as c:
        while int(c.get_status()["height"]) < target:
            tx_hash = c.submit(env.filler.sign_transfer(bytes(32 * [7]), 1))
            c.wait(tx_hash, "confirmed", 60.0)
            wait_until(
                lambda: int(c.get_status()["height"]) % EPOCH == 0
                or int(c.get_status()["height"]) >= target,
                "the epoch to close",
                timeout=120,
            )


def _request(env: KycEnv, fields: str, key: Path | None = None) -> str:
    out = run_dmchain(
        "audit", "request", "--subject", SUBJECT.hex(), "--order-hash", ORDER.hex(),
        "--fields", fields, "--reason", "court order 42",
        *_key_args(key or env.auditor_file), "--node", env.url,
    )
    return str(json.loads(out.stdout)["request_id"])


def _approve(env: KycEnv, rid: str, members: tuple[int, ...] = (0, 1)) -> None:
    for i in members:
        run_dmchain("audit", "approve", rid, "--key-file", str(env.gov_files[i]), "--node", env.url)


def _status(env: KycEnv, rid: str) -> dict[str, Any]:
    with env.client() as c:
        return c.get_audit(bytes.fromhex(rid))


def _decrypt(env: KycEnv, rid: str, out: Path, fields: str = "", key: Path | None = None,
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    args = ["audit", "decrypt", rid, "--out", str(out), *_key_args(key or env.auditor_file),
            "--node", env.url, "--timeout", str(timeout)]
    if fields:
        args += ["--fields", fields]
    return run_cli(*args)


def _crafted_cfrag_receipt(env: KycEnv, rid: str, name: str, proxy: int = 0) -> dict[str, Any]:
    """Have proxy ``proxy`` re-encrypt ``name`` itself and submit it, skipping its release
    rule: the chain must refuse it on its own. Returns the transaction's status document."""
    with env.client() as c:
        doc = c.get_audit(bytes.fromhex(rid))
        kset = c.get_kfrag_set(SUBJECT, bytes.fromhex(doc["auditor"]))
        sealed = SealedCredential.from_bytes(bytes.fromhex(c.get_kyc(SUBJECT)["capsule"]))
        index = kset["proxies"].index(env.proxy_keys[proxy].hex())
        kfrag_field = name if name in kset["fields"] else next(iter(kset["fields"]))
        signed = process_field_reencryption(
            env.proxy_seeds[proxy],
            bytes.fromhex(kset["fields"][kfrag_field][index]),
            sealed,
            kfrag_field,
            umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(kset["verifying_pk"])),
            umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(kset["receiving_pk"])),
            bytes.fromhex(rid),
        )
        signer = Signer(env.proxy_seeds[proxy], CHAIN_ID)
        signer.nonce = c.get_account(signer.public_key)["nonce"]
        tx_hash = c.submit(signer.sign(TxKind.AUDIT_CFRAG, [bytes.fromhex(rid), name, signed]))
        return wait_until(lambda: _final(c, tx_hash), "the crafted cfrag to be decided")


def _final(c: KycClient, tx_hash: bytes) -> dict[str, Any] | None:
    doc = c.get_tx(tx_hash)
    return doc if doc["status"] in ("failed", "confirmed", "settled") else None


def _node_log(env: KycEnv) -> str:
    return env.cluster.get_log("node00")


def _proxy_logs(env: KycEnv) -> str:
    return "".join(p.read_text(errors="replace") for p in env.proxy_logs)


@pytest.fixture(scope="module")
def kyc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KycEnv]:
    work = tmp_path_factory.mktemp("kyc")
    cluster = start_cluster(work / "testnet", pbft=4, pos=1, epoch_length=EPOCH, clients=4)
    env: KycEnv | None = None
    try:
        home = cluster.home
        url = cluster.node("node00").config.http_url
        gov = json.loads((home / "governance.json").read_text())["governance"]
        gov_files = [_write_key(work / f"gov{i}.key", bytes.fromhex(s)) for i, s in enumerate(gov)]
        genesis = json.loads((home / "genesis.json").read_text())
        replicas = [v for v in genesis["validators"] if v["roles"] == ["pbft"]]
        proxy_keys = [bytes.fromhex(v["consensus_key"]) for v in replicas]
        proxy_seeds = [
            bytes.fromhex((home / v["name"] / "keys" / "account.key").read_text().strip())
            for v in replicas
        ]
        filler = Signer(get_client_seeds(home)[0], CHAIN_ID)
        env = KycEnv(
            cluster, work, url, gov_files,
            _write_key(work / "auditor.key", compute_seed_from_label("kyc-auditor-a")),
            work / "subject.vault", proxy_keys, proxy_seeds, [], filler,
        )
        for v in replicas:
            log = work / f"proxy-{v['name']}.log"
            env.proxy_logs.append(log)
            with open(log, "ab") as fh:
                env.procs.append(subprocess.Popen(
                    [*DMCHAIN, "proxy", "run", "--home", str(home / v["name"]),
                     "--interval", "0.5"],
                    cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                ))
        gov_keys = str(home / "governance.json")
        run_dmchain("governance", "set-param", "audit_expiry", str(EXPIRY),
                    "--gov-keys", gov_keys, "--node", url)
        run_dmchain("governance", "set-param", "audit_timelock", str(TIMELOCK),
                    "--gov-keys", gov_keys, "--node", url)
        auditor = compute_public_key(bytes.fromhex(env.auditor_file.read_text().strip()))
        run_dmchain("governance", "register-auditor", auditor.hex(),
                    "--gov-keys", gov_keys, "--node", url)
        run_dmchain("audit", "register-key", "--key-file", str(env.auditor_file), "--node", url)
        credential = work / "credential.json"
        credential.write_text(json.dumps(CREDENTIAL))
        out = run_dmchain(
            "kyc", "register", "--subject", SUBJECT.hex(), "--credential", str(credential),
            "--vault-seed", str(env.vault), "--key-file", str(gov_files[0]),
            "--proxies", ",".join(k.hex() for k in proxy_keys), "--threshold", str(THRESHOLD),
            "--node", url,
        )
        assert json.loads(out.stdout)["issued"] == [auditor.hex()]
        yield env
    finally:
        for proc in env.procs if env else []:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        cluster.kill_all()


def test_full_kyc_audit_path_decrypts_the_approved_fields(kyc: KycEnv, tmp_path: Path) -> None:
    started = time.monotonic()
    with kyc.client() as c:
        record = c.get_kyc(SUBJECT)
    # the chain holds the sealed credential, never a field in the clear
    chain_text = bytes.fromhex(record["capsule"])
    for value in ("Alice Example", "X1234567", "Springfield", "alice@example.com"):
        assert value.encode() not in chain_text
    rid = _request(kyc, "name,id_number,address")
    _approve(kyc, rid)
    doc = _status(kyc, rid)
    assert len(doc["approvals"]) == 2 and doc["timelock_end"] == doc["height"] + TIMELOCK
    advance_to(kyc, doc["timelock_end"])
    out = tmp_path / "audited.json"
    proc = _decrypt(kyc, rid, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    opened = json.loads(out.read_text())
    assert set(opened) == {"name", "id_number", "address"}
    for name, value in opened.items():
        expected = json.dumps(CREDENTIAL[name], sort_keys=True, separators=(",", ":"))
        assert json.dumps(value, sort_keys=True, separators=(",", ":")) == expected
    doc = _status(kyc, rid)
    assert doc["releases"] == 1
    valid = [c for c in doc["cfrags"] if c["valid"]]
    assert {c["field"] for c in valid} == {"name", "id_number", "address"}
    assert {c["proxy"] for c in valid} <= {k.hex() for k in kyc.proxy_keys}
    # the subject's client reads every step of this audit
    events = json.loads(run_dmchain("kyc", "events", "--subject", SUBJECT.hex(),
                                    "--node", kyc.url).stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["kyc_register", "kyc_kfrags"]
    mine = [e["kind"] for e in events if e["request_id"] == rid]
    assert mine[0] == "audit_request" and mine.count("audit_approve") == 2
    assert mine.count("audit_cfrag") >= 3 * THRESHOLD and "audit_release" in mine
    http_events = httpx.get(f"{kyc.url}/v1/kyc/{SUBJECT.hex()}/events", timeout=30).json()
    assert http_events["events"] == events
    print(f"full KYC_Audit path: {time.monotonic() - started:.1f} s")


def test_refused_request_by_non_auditor(kyc: KycEnv) -> None:
    outsider = _write_key(kyc.work / "outsider.key", compute_seed_from_label("kyc-outsider"))
    proc = run_cli("audit", "request", "--subject", SUBJECT.hex(), "--order-hash", ORDER.hex(),
                   "--fields", "name", "--reason", "curious", "--key-file", str(outsider),
                   "--node", kyc.url)
    assert proc.returncode == 1
    assert "not_auditor" in proc.stdout and "not a registered auditor" in proc.stdout
    wait_until(lambda: "event=kyc_audit_refused code=not_auditor" in _node_log(kyc),
               "the refusal in the node log", timeout=30)
    # and the chain refuses it too if it arrives through plain POST /v1/tx
    with kyc.client() as c:
        signer = Signer(bytes.fromhex(outsider.read_text().strip()), CHAIN_ID)
        signer.nonce = c.get_account(signer.public_key)["nonce"]
        raw = signer.sign(TxKind.AUDIT_REQUEST, [SUBJECT, ORDER, ["name"], "curious"])
        tx_hash = c.submit(raw)
        doc = wait_until(lambda: _final(c, tx_hash), "the request to be decided")
    assert doc["status"] == "failed" and "not a registered auditor" in doc["reason"]


def test_refused_request_for_unknown_subject_or_fields(kyc: KycEnv) -> None:
    seed = bytes.fromhex(kyc.auditor_file.read_text().strip())
    with kyc.client() as c:
        signer = Signer(seed, CHAIN_ID)
        signer.nonce = c.get_account(signer.public_key)["nonce"]
        for subject, fields, status, code in (
            (bytes(32), ["name"], 409, "unknown_subject"),
            (SUBJECT, ["salary"], 400, "unknown_fields"),
        ):
            raw = signer.sign(TxKind.AUDIT_REQUEST, [subject, ORDER, fields, "x"])
            signer.nonce -= 1  # refused up front: the nonce is not used
            resp = httpx.post(f"{kyc.url}/v1/kyc_audit", json={"tx": raw.hex()}, timeout=30)
            assert resp.status_code == status and resp.json()["error"] == code, resp.text


def test_refused_without_approvals(kyc: KycEnv, tmp_path: Path) -> None:
    rid = _request(kyc, "name")
    advance_to(kyc, _status(kyc, rid)["timelock_end"])
    proc = _decrypt(kyc, rid, tmp_path / "x.json")
    assert proc.returncode == 1 and "refused: 0 approvals, 2 needed" in proc.stdout
    assert not (tmp_path / "x.json").exists()
    wait_until(lambda: f"request_id={rid} reason=audit request has 0 governance approvals"
               in _proxy_logs(kyc), "the proxies to log their refusal", timeout=60)
    doc = _crafted_cfrag_receipt(kyc, rid, "name")
    assert doc["status"] == "failed" and "approvals" in doc["reason"]
    assert _status(kyc, rid)["cfrags"] == []
    assert "event=kyc_audit_release_refused" in _node_log(kyc)


def test_refused_inside_time_lock(kyc: KycEnv, tmp_path: Path) -> None:
    wait_idle(kyc)
    rid = _request(kyc, "name")
    _approve(kyc, rid)
    doc = _status(kyc, rid)
    assert doc["current_height"] < doc["timelock_end"]
    proc = _decrypt(kyc, rid, tmp_path / "x.json")
    assert proc.returncode == 1
    assert f"refused: time lock runs until height {doc['timelock_end']}" in proc.stdout
    wait_until(lambda: f"request_id={rid} reason=time lock runs until height" in _proxy_logs(kyc),
               "the proxies to log their refusal", timeout=60)
    receipt = _crafted_cfrag_receipt(kyc, rid, "name")
    assert receipt["status"] == "failed" and "time lock" in receipt["reason"]
    assert _status(kyc, rid)["cfrags"] == []


def test_refused_after_expiry(kyc: KycEnv, tmp_path: Path) -> None:
    wait_idle(kyc)
    gov_keys = str(kyc.cluster.home / "governance.json")
    run_dmchain("governance", "set-param", "audit_expiry", str(SHORT_EXPIRY),
                "--gov-keys", gov_keys, "--node", kyc.url)
    try:
        rid = _request(kyc, "email")
    finally:
        run_dmchain("governance", "set-param", "audit_expiry", str(EXPIRY),
                    "--gov-keys", gov_keys, "--node", kyc.url)
    doc = _status(kyc, rid)
    assert doc["expiry"] == doc["height"] + SHORT_EXPIRY
    _approve(kyc, rid)
    advance_to(kyc, _status(kyc, rid)["expiry"])
    proc = _decrypt(kyc, rid, tmp_path / "x.json")
    assert proc.returncode == 1 and "refused: request expired at height" in proc.stdout
    receipt = _crafted_cfrag_receipt(kyc, rid, "email", proxy=3)
    assert receipt["status"] == "failed" and "expired" in receipt["reason"]
    with kyc.client() as c:  # the release itself is refused on chain
        seed = bytes.fromhex(kyc.auditor_file.read_text().strip())
        signer = Signer(seed, CHAIN_ID)
        signer.nonce = c.get_account(signer.public_key)["nonce"]
        tx_hash = c.submit(signer.sign(TxKind.AUDIT_RELEASE, [bytes.fromhex(rid)]))
        doc = wait_until(lambda: _final(c, tx_hash), "the release to be decided")
    assert doc["status"] == "failed" and "expired" in doc["reason"]


def test_refused_for_fields_not_approved(kyc: KycEnv, tmp_path: Path) -> None:
    rid = _request(kyc, "nationality")
    _approve(kyc, rid)
    advance_to(kyc, _status(kyc, rid)["timelock_end"])
    proc = _decrypt(kyc, rid, tmp_path / "x.json", fields="nationality,date_of_birth")
    assert proc.returncode == 1
    assert "refused: field(s) not approved: date_of_birth" in proc.stdout
    with kyc.client() as c:
        doc = c.get_audit(bytes.fromhex(rid), ["date_of_birth"])
    assert not doc["releasable"] and "'date_of_birth' was not approved" in doc["release_reason"]
    wait_until(lambda: "fields=date_of_birth reason=field 'date_of_birth' was not approved"
               in _node_log(kyc), "the refusal in the node log", timeout=30)
    receipt = _crafted_cfrag_receipt(kyc, rid, "date_of_birth")
    assert receipt["status"] == "failed" and "not approved" in receipt["reason"]
    # the approved field alone is released
    ok = _decrypt(kyc, rid, tmp_path / "ok.json", fields="nationality")
    assert ok.returncode == 0, ok.stdout
    assert json.loads((tmp_path / "ok.json").read_text()) == {"nationality": "UT"}
    assert {c["field"] for c in _status(kyc, rid)["cfrags"]} == {"nationality"}


def test_refused_objected_request(kyc: KycEnv, tmp_path: Path) -> None:
    rid = _request(kyc, "name")
    run_dmchain("audit", "object", rid, "--reason", "no due cause",
                "--key-file", str(kyc.gov_files[2]), "--node", kyc.url)
    _approve(kyc, rid)
    advance_to(kyc, _status(kyc, rid)["timelock_end"])
    proc = _decrypt(kyc, rid, tmp_path / "x.json")
    assert proc.returncode == 1 and "refused: objected to by 1 member(s)" in proc.stdout
    receipt = _crafted_cfrag_receipt(kyc, rid, "name")
    assert receipt["status"] == "failed" and "objected" in receipt["reason"]
    assert _status(kyc, rid)["cfrags"] == []


def test_auditor_registered_later_gets_kfrags_through_sync(kyc: KycEnv, tmp_path: Path) -> None:
    late = kyc.work / "late-wallet"  # this auditor keeps its keys in a wallet
    shown = json.loads(run_dmchain("wallet", "new", "--out", str(late)).stdout)
    late_pub = bytes.fromhex(shown["account"])
    gov_keys = str(kyc.cluster.home / "governance.json")
    run_dmchain("governance", "register-auditor", late_pub.hex(), "--gov-keys", gov_keys,
                "--node", kyc.url)
    run_dmchain("audit", "register-key", "--wallet", str(late), "--node", kyc.url)
    with kyc.client() as c:
        assert late_pub.hex() not in c.get_kyc(SUBJECT)["kfrag_auditors"]
    out = run_dmchain("kyc", "sync", "--subject", SUBJECT.hex(), "--vault-seed", str(kyc.vault),
                      "--key-file", str(kyc.gov_files[0]), "--threshold", str(THRESHOLD),
                      "--proxies", ",".join(k.hex() for k in kyc.proxy_keys), "--node", kyc.url)
    assert json.loads(out.stdout)["issued"] == [late_pub.hex()]
    with kyc.client() as c:
        kset = c.get_kfrag_set(SUBJECT, late_pub)
    assert kset["receiving_pk"] == shown["umbral_key"]
    verifying = compute_subject_signer(bytes.fromhex(kyc.vault.read_text().strip()))
    assert kset["verifying_pk"] == bytes(verifying.verifying_key().to_compressed_bytes()).hex()
    rid = _request(kyc, "email", key=late)
    _approve(kyc, rid, members=(1, 2))
    advance_to(kyc, _status(kyc, rid)["timelock_end"])
    proc = _decrypt(kyc, rid, tmp_path / "late.json", key=late)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "late.json").read_text()) == {"email": CREDENTIAL["email"]}



def test_wrong_cfrag_from_a_proxy_slashes_it_on_every_node(kyc: KycEnv) -> None:
    """Runs last: it jails one replica. A proxy's correctly signed but wrong cfrag is
    the evidence; every node verifies it the same way and slashes the proxy."""
    from pre.keywrap import compute_signed_cfrag, get_signed_cfrag

    proxy = 3  # its honest proxy service stops; the proxy's key then signs a wrong cfrag
    os.killpg(kyc.procs[proxy].pid, signal.SIGKILL)
    kyc.procs[proxy].wait(timeout=10)
    rid = _request(kyc, "date_of_birth,email")
    _approve(kyc, rid)
    advance_to(kyc, _status(kyc, rid)["timelock_end"])
    with kyc.client() as c:
        kset = c.get_kfrag_set(SUBJECT, bytes.fromhex(_status(kyc, rid)["auditor"]))
        sealed = SealedCredential.from_bytes(bytes.fromhex(c.get_kyc(SUBJECT)["capsule"]))
        index = kset["proxies"].index(kyc.proxy_keys[proxy].hex())
        keys = [umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(kset[k]))
                for k in ("verifying_pk", "receiving_pk")]
        made = {
            name: get_signed_cfrag(process_field_reencryption(
                kyc.proxy_seeds[proxy], bytes.fromhex(kset["fields"][name][index]), sealed,
                name, keys[0], keys[1], bytes.fromhex(rid)))
            for name in ("date_of_birth", "email")
        }
        good, other = made["date_of_birth"], made["email"]
        bad = compute_signed_cfrag(
            kyc.proxy_seeds[proxy], good["context"], good["capsule"], other["cfrag"],
            good["verifying_pk"], good["delegating_pk"], good["receiving_pk"],
        )
        stake = c.get_account(kyc.proxy_keys[proxy])["stake"]
        # anyone may post the evidence: here a client account
        tx_hash = c.submit(kyc.filler.sign(TxKind.AUDIT_CFRAG,
                                           [bytes.fromhex(rid), "date_of_birth", bad]))
        doc = wait_until(lambda: _final(c, tx_hash), "the evidence to be decided")
        assert doc["status"] in ("confirmed", "settled"), doc
        assert c.get_account(kyc.proxy_keys[proxy])["stake"] == stake - stake // 20
    recorded = [x for x in _status(kyc, rid)["cfrags"]
                if x["proxy"] == kyc.proxy_keys[proxy].hex() and x["field"] == "date_of_birth"]
    assert [x["valid"] for x in recorded] == [False]
    events = [e for e in json.loads(run_dmchain("kyc", "events", "--subject", SUBJECT.hex(),
                                                "--node", kyc.url).stdout)["events"]
              if e["request_id"] == rid]
    assert [e["actor"] for e in events if e["kind"] == "audit_cfrag_slash"] == [
        kyc.proxy_keys[proxy].hex()
    ]
    height = int(doc["height"])
    for name in kyc.cluster.names:  # every node reached the same state after the slash
        wait_until(lambda n=name: kyc.cluster.get_status(n)["height"] >= height,
                   f"{name} to reach height {height}", timeout=120)
    digests = {kyc.cluster.client(n).get_block(height)["state_digest"] for n in kyc.cluster.names}
    assert len(digests) == 1
