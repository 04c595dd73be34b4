"""The data access path on a real cluster: publish, grant, re-encrypt, fetch, and its failures.

One cluster (4 PBFT + 1 PoS, epoch 4, access_timeout 30 blocks) serves the
whole module; proxy processes run beside the four PBFT nodes, the provider
agent grants with m=3 of n=4 proxies chosen among them. The tests run in
file order and share the assets they publish; the last one stops the
cluster and scans every node's storage and the chain for the plaintext and
the symmetric key.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest
import umbral_pre
from conftest import CHAIN_ID, DMCHAIN, REPO, Cluster, wait_until
from data_helpers import (
    Helpers,
    make_wallet,
    run_data,
    run_data_ok,
    start_data_cluster,
    wait_file_text,
)

from consensus.crypto import compute_hash
from ledger.genesis import PPM
from ledger.tx import TxKind
from node.client import NodeClient, Signer
from node.data_client import PUBLISH_CHUNK_SIZE, TxSender, _open_key, replicate_blob
from node.keys import load_node_keys
from node.testnet import get_client_seeds
from node.wallet import load_wallet, write_json_file
from pre import keywrap
from pre.aead import HEADER_SIZE, TAG_SIZE, compute_sealed_manifest, encrypt_bytes
from pre.commitment import CommitmentBuilder

M, N = 3, 4
ACCESS_TIMEOUT = 30
MIB = 1024 * 1024
PROXY_NODES = ["node00", "node01", "node02", "node03"]


class Env:
    """What the module's tests share."""

    def __init__(self, cluster: Cluster, helpers: Helpers, root: Path) -> None:
        self.cluster = cluster
        self.helpers = helpers
        self.root = root
        self.provider = make_wallet(cluster, root / "provider", 0)
        self.consumer = make_wallet(cluster, root / "consumer", 1)
        self.urls = [cluster.node(n).config.http_url for n in cluster.names]
        self.node = self.urls[1]
        self.blob_nodes = ",".join(self.urls[:3])
        self.shared: dict[str, Any] = {}

    def client(self) -> NodeClient:
        return self.cluster.client("node01")

    def balance(self, wallet: Path) -> int:
        return int(self.client().get_account(load_wallet(wallet).public_key)["balance"])

    def data(self, action: str, target: str, wallet: Path, *extra: str) -> dict[str, object]:
        return run_data_ok(
            action, target, "--wallet", str(wallet), "--node", self.node,
            "--blob-nodes", self.blob_nodes, "--quiet", *extra,
        )

    def data_fails(self, action: str, target: str, wallet: Path, *extra: str) -> str:
        proc = run_data(
            action, target, "--wallet", str(wallet), "--node", self.node,
            "--blob-nodes", self.blob_nodes, "--quiet", *extra,
        )
        assert proc.returncode == 1, f"expected a failure:\n{proc.stdout}{proc.stderr}"
        return proc.stderr

    def advance_heights(self, beyond: int) -> None:
        """Send transfers (one per block) until the chain height exceeds ``beyond``."""
        seed = get_client_seeds(self.cluster.home)[5]
        client = self.client()
        signer = Signer(seed, CHAIN_ID)
        while client.get_status()["height"] <= beyond:
            signer.nonce = client.get_account(signer.public_key)["nonce"]
            tx_hash = client.submit(signer.sign_transfer(bytes(32), 1))
            client.wait(tx_hash, "confirmed", timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("data")
    cluster = start_data_cluster(
        root / "testnet", pbft=4, pos=1, epoch_length=4, params={"access_timeout": ACCESS_TIMEOUT}
    )
    helpers = Helpers(cluster)
    try:
        e = Env(cluster, helpers, root)
        genesis = json.loads((cluster.home / "genesis.json").read_text())
        keys = {v["name"]: v["consensus_key"] for v in genesis["validators"]}
        for name in PROXY_NODES:
            helpers.start_proxy(name)
        helpers.start_agent(e.provider, "node00", [keys[n] for n in PROXY_NODES], M, N)
        e.shared["proxy_keys"] = keys
        yield e
    finally:
        helpers.kill_all()
        cluster.kill_all()


def _publish(e: Env, path: Path, tags: str = "images,test") -> str:
    doc = e.data("publish", str(path), e.provider, "--tags", tags, "--license", "CC-BY-4.0")
    assert len(doc["stored_on"]) == 3  # type: ignore[arg-type]
    return str(doc["asset_id"])


def test_publish_request_fetch_1mib_byte_identical(env: Env) -> None:
    e = env
    plain = os.urandom(MIB)
    source = e.root / "asset-a.bin"
    source.write_bytes(plain)
    asset_id = _publish(e, source)
    asset = e.client().get_asset(bytes.fromhex(asset_id))
    assert asset["content_hash"] == hashlib.sha256(plain).hexdigest()
    assert asset["size_bytes"] == MIB
    provider_before = e.balance(e.provider)
    request_id = str(e.data("request", asset_id, e.consumer)["request_id"])
    out = e.root / "out-a.bin"
    fetched = e.data("fetch", asset_id, e.consumer, "--out", str(out))
    assert fetched["request_id"] == request_id
    assert out.read_bytes() == plain
    access = e.client().get_access(bytes.fromhex(request_id))
    assert access is not None and access["status_name"] == "granted"
    assert len(access["grant"]["cfrag_proxies"]) >= M
    wait_until(lambda: e.balance(e.provider) - provider_before == access["price"], "payment")
    e.shared.update(plain_a=plain, asset_a=asset_id, request_a=request_id)


def test_tampered_blob_is_quarantined_and_fetch_uses_another_replica(env: Env) -> None:
    e = env
    asset = e.client().get_asset(bytes.fromhex(e.shared["asset_a"]))
    name = asset["cipher_hash"]
    node0 = e.cluster.node("node00").config
    blob = node0.data_path / "blobs" / "blobs" / name[:2] / name
    data = bytearray(blob.read_bytes())
    data[HEADER_SIZE + 100] ^= 0x01
    blob.write_bytes(bytes(data))
    out = e.root / "out-a-again.bin"
    fetched = e.data("fetch", e.shared["request_a"], e.consumer, "--out", str(out))
    assert out.read_bytes() == e.shared["plain_a"]
    assert fetched["served_by"] != node0.http_url
    assert (node0.data_path / "blobs" / "quarantine" / name).exists()
    assert not blob.exists()
    assert "event=blob_corrupt" in e.cluster.get_log("node00")


def test_m_minus_one_proxies_fail_and_refund_then_m_succeed(env: Env) -> None:
    e = env
    asset_id = e.shared["asset_a"]
    for name in PROXY_NODES[2:]:
        e.helpers.stop(f"proxy-{name}")
    before = e.balance(e.consumer)
    request_id = str(e.data("request", asset_id, e.consumer)["request_id"])
    rid = bytes.fromhex(request_id)
    access = e.client().get_access(rid)
    assert access is not None and before - e.balance(e.consumer) == access["escrow"]
    fetch = subprocess.Popen(
        [*DMCHAIN, "data", "fetch", request_id, "--wallet", str(e.consumer), "--node", e.node,
         "--blob-nodes", e.blob_nodes, "--out", str(e.root / "never.bin"), "--timeout", "400"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(
            lambda: (d := e.client().get_access(rid)) and len(d["cfrags"]) >= M - 1,
            "the two running proxies to publish",
        )
        time.sleep(2.0)
        e.advance_heights(access["deadline"])
        _out, err = fetch.communicate(timeout=120)
    finally:
        if fetch.poll() is None:
            fetch.kill()
    assert fetch.returncode == 1 and "deadline height" in err and "2 of 3" in err, err
    assert not (e.root / "never.bin").exists()
    doc = e.client().get_access(rid)
    assert doc is not None and len(doc["cfrags"]) == M - 1 and doc["status_name"] == "delivering"
    e.data("fail", request_id, e.consumer)
    assert e.balance(e.consumer) == before
    assert e.client().get_access(rid)["status_name"] == "failed"  # type: ignore[index]

    e.helpers.start_proxy(PROXY_NODES[2])  # m = 3 proxies run now
    request_id = str(e.data("request", asset_id, e.consumer)["request_id"])
    out = e.root / "out-a-m.bin"
    e.data("fetch", request_id, e.consumer, "--out", str(out))
    assert out.read_bytes() == e.shared["plain_a"]
    doc = e.client().get_access(bytes.fromhex(request_id))
    assert doc is not None and len(doc["cfrags"]) == M
    e.helpers.start_proxy(PROXY_NODES[3])


def test_revoke_stops_grants_and_proxies_delete_kfrags(env: Env) -> None:
    e = env
    source = e.root / "asset-b.bin"
    source.write_bytes(os.urandom(64 * 1024))
    asset_id = _publish(e, source, "tabular")
    request_id = str(e.data("request", asset_id, e.consumer)["request_id"])
    e.data("fetch", request_id, e.consumer, "--out", str(e.root / "out-b.bin"))
    assert (e.root / "out-b.bin").read_bytes() == source.read_bytes()
    custody_files = [
        e.cluster.node(n).config.data_path / "proxy" / "data-custody.json" for n in PROXY_NODES
    ]
    holders = [f for f in custody_files if asset_id in f.read_text()]
    assert len(holders) >= M
    e.data("revoke", asset_id, e.provider)
    assert e.client().get_asset(bytes.fromhex(asset_id))["revoked"] is True
    err = e.data_fails("request", asset_id, e.consumer)
    assert "asset is not active" in err
    for holder in holders:
        name = holder.parent.parent.parent.name  # <home>/data/proxy/data-custody.json
        wait_file_text(e.helpers.proxy_log(name), f"event=kfrags_deleted asset={asset_id}")
    wait_until(
        lambda: all(asset_id not in f.read_text() for f in custody_files), "kfrags deleted"
    )


def _publish_cheating_asset(e: Env) -> tuple[str, bytes]:
    """Register an asset whose committed chunk 3 is not what its ciphertext decrypts to."""
    wallet = load_wallet(e.provider)
    chunk = PUBLISH_CHUNK_SIZE
    committed = os.urandom(chunk * 6)
    delivered = bytearray(committed)
    delivered[chunk * 3 + 7] ^= 0xFF
    key, nonce = os.urandom(32), os.urandom(8)
    blob, sealed = encrypt_bytes(key, nonce, bytes(delivered), chunk)
    body = blob[HEADER_SIZE:]
    cipher_chunks = [body[i : i + chunk + TAG_SIZE] for i in range(0, len(body), chunk + TAG_SIZE)]
    plain_hashes = tuple(
        compute_hash(committed[i : i + chunk]) for i in range(0, len(committed), chunk)
    )
    builder = CommitmentBuilder(sealed.header, 1 << 20)
    for cipher_chunk, plain_hash in zip(cipher_chunks, plain_hashes, strict=True):
        builder.process_chunk(cipher_chunk, plain_hash)
    content_hash = compute_hash(committed)
    commitment = builder.compute_commitment(key, content_hash)
    manifest = compute_sealed_manifest(key, sealed.header, plain_hashes)
    metadata = json.dumps({"v": 1, "cipher_hash": sealed.cipher_hash.hex(),
                           "manifest": hashlib.sha256(manifest).hexdigest()}).encode()
    urls = e.blob_nodes.split(",")
    for content in (blob, manifest, metadata):
        path = e.root / "cheat.part"
        path.write_bytes(content)
        replicate_blob(urls, path, hashlib.sha256(content).hexdigest(), 2)
    with NodeClient(e.node) as client:
        sender = TxSender(client, wallet.seed)
        payload = [content_hash, sealed.cipher_hash, len(committed),
                   hashlib.sha256(metadata).digest(), ["cheat"], "none", 100 * 10**6, commitment]
        asset_id = sender.submit_and_wait(TxKind.REGISTER_ASSET, payload)
    wrapped = keywrap.wrap_key(wallet.get_umbral_secret_key().public_key(), key)
    write_json_file(wallet.get_asset_path(asset_id), {"wrapped_key": wrapped.to_bytes().hex()})
    return asset_id.hex(), key


def test_dispute_valid_proof_slashes_invalid_proof_is_rejected(env: Env) -> None:
    e = env
    asset_id, _key = _publish_cheating_asset(e)
    stake = int(e.client().get_asset(bytes.fromhex(asset_id))["stake"])
    request_id = str(e.data("request", asset_id, e.consumer)["request_id"])
    out = e.root / "out-c.bin"
    err = e.data_fails("fetch", request_id, e.consumer, "--out", str(out))
    assert "dispute proof written" in err and f"dmchain data dispute {request_id}" in err, err
    assert not out.exists()
    proof = out.with_name(out.name + ".dispute-proof")
    assert proof.exists()
    # The same proof filed against the honest asset A's grant is rejected with the reason.
    err = e.data_fails("dispute", e.shared["request_a"], e.consumer, "--proof", str(proof))
    assert "dispute proof rejected" in err and "key does not match" in err, err
    garbage = e.root / "garbage.proof"
    garbage.write_bytes(b"not a proof")
    err = e.data_fails("dispute", request_id, e.consumer, "--proof", str(garbage))
    assert "dispute proof rejected" in err, err
    e.data("dispute", request_id, e.consumer, "--proof", str(proof))
    rho = json.loads((e.cluster.home / "genesis.json").read_text())["params"]["rho_ppm"]
    after = int(e.client().get_asset(bytes.fromhex(asset_id))["stake"])
    assert stake - after == stake * rho // PPM > 0
    assert e.client().get_access(bytes.fromhex(request_id))["status_name"] == "disputed"  # type: ignore[index]


def test_proxy_publishing_a_wrong_cfrag_is_slashed(env: Env) -> None:
    """node03's key publishes a wrong capsule fragment for a live grant: slashed, jailed;
    the three honest proxies still deliver."""
    e = env
    e.helpers.stop("proxy-node02")  # two honest proxies run: no delivery before the bad cfrag
    e.helpers.stop("proxy-node03")
    node03 = e.cluster.node("node03").config
    keys = load_node_keys(node03.home)
    proxy = keys.get_account_public_key()
    stake_before = int(e.client().get_account(proxy)["stake"])
    request_id = str(e.data("request", e.shared["asset_a"], e.consumer)["request_id"])
    rid = bytes.fromhex(request_id)
    grant = wait_until(
        lambda: next((g for g in e.client().get_proxy_grants(proxy, 0, 1000)["grants"]
                      if g["request_id"] == request_id), None),
        "the grant naming node03",
    )
    pk = umbral_pre.PublicKey.from_compressed_bytes
    verifying, delegating, receiving = (
        pk(bytes.fromhex(grant[k])) for k in ("verifying_pk", "delegating_pk", "receiving_pk")
    )
    kfrag = keywrap.open_kfrag(
        keys.account_seed, bytes.fromhex(grant["kfrag"]), verifying, delegating, receiving
    )
    other = keywrap.wrap_key(delegating, b"some other key")
    wrong = umbral_pre.reencrypt(umbral_pre.Capsule.from_bytes(other.capsule), kfrag)
    raw = keywrap.compute_umbral_public_key_bytes
    bad = keywrap.compute_signed_cfrag(
        keys.account_seed, rid, bytes.fromhex(grant["capsule"]), bytes(wrong),
        raw(verifying), raw(delegating), raw(receiving),
    )
    with NodeClient(e.node) as client:
        sender = TxSender(client, keys.account_seed)
        sender.submit_and_wait(TxKind.PUBLISH_CFRAG, [rid, bad])
    doc = e.client().get_access(rid)
    assert doc is not None and doc["grant"]["slashed_proxies"] == [proxy.hex()]
    slash_ppm = json.loads((e.cluster.home / "genesis.json").read_text())["params"][
        "slash_bad_cfrag_ppm"
    ]
    stake_after = int(e.client().get_account(proxy)["stake"])
    assert stake_before - stake_after == stake_before * slash_ppm // PPM > 0
    assert doc["status_name"] == "delivering"
    e.helpers.start_proxy("node02")  # the third honest proxy completes the delivery
    out = e.root / "out-a-slash.bin"
    e.data("fetch", request_id, e.consumer, "--out", str(out))
    assert out.read_bytes() == e.shared["plain_a"]


def _windows(plain: bytes) -> list[bytes]:
    return [plain[i : i + 32] for i in (0, 4097, MIB // 2 + 13, MIB - 32)]


def test_no_plaintext_or_key_in_node_storage_or_chain(env: Env) -> None:
    e = env
    plain = e.shared["plain_a"]
    wallet = load_wallet(e.consumer)
    rid = bytes.fromhex(e.shared["request_a"])
    key = _open_key(wallet, e.client().get_access(rid), rid)  # type: ignore[arg-type]
    needles = [*_windows(plain), key]
    e.helpers.kill_all()
    for name in e.cluster.names:
        e.cluster.stop(name)
    scanned = 0
    for path in sorted(e.cluster.home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            scanned += len(data)
            for needle in needles:
                assert needle not in data, f"secret bytes found in {path}"
    for path in sorted(load_wallet(e.provider).path.rglob("*")):
        if path.is_file():
            assert key not in path.read_bytes() and key.hex().encode() not in path.read_bytes()
    values = 0
    for name in e.cluster.names:
        db = plyvel.DB(str(e.cluster.node(name).config.data_path / "ledger"))
        try:
            for _k, value in db:
                values += 1
                for needle in needles:
                    assert needle not in value, f"secret bytes in {name}'s ledger"
        finally:
            db.close()
    assert scanned > 3 * MIB and values > 100  # the scan saw the blobs and the chain
