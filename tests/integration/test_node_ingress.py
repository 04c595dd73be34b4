"""Bad input at a running node's edges: every HTTP rejection is a 4xx with a
clear JSON error, garbage or strangers on libp2p are dropped and logged, and
after each the node still confirms a valid transaction.

One 4 PBFT + 2 PoS cluster serves the whole module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import (
    CHAIN_ID,
    RECEIVER,
    REPO,
    Cluster,
    start_cluster,
    wait_for_level,
    wait_until,
)

from ledger.tx import TxKind, compute_signed_tx
from node.client import Signer
from node.testnet import get_client_seeds

INTRUDER = Path(__file__).with_name("p2p_intruder.py")
TARGET = "node00"
_next_client = iter(range(1, 32))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 4 PBFT + 2 PoS cluster shared by the module; killed at the end."""
    running = start_cluster(tmp_path_factory.mktemp("ingress") / "testnet", pbft=4, pos=2)
    try:
        yield running
    finally:
        running.kill_all()


def _signer(cluster: Cluster) -> Signer:
    """A funded client account no other test of this module uses."""
    seed = get_client_seeds(cluster.home)[next(_next_client)]
    signer = Signer(seed, CHAIN_ID)
    signer.nonce = cluster.client(TARGET).get_account(signer.public_key)["nonce"]
    return signer


def _check_still_serving(cluster: Cluster, name: str = TARGET) -> None:
    """A valid transfer submitted to ``name`` is confirmed."""
    tx_hash = cluster.client(name).submit(_signer(cluster).sign_transfer(RECEIVER, 1))
    wait_for_level(cluster, [name], [tx_hash], "confirmed")


def _post(cluster: Cluster, path: str, content: bytes, content_type: str) -> httpx.Response:
    url = cluster.node(TARGET).config.http_url + path
    return httpx.post(url, content=content, headers={"content-type": content_type}, timeout=30)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code"),
    [
        ("/v1/tx", b'{"tx": "not hex at all"}', "application/json", "bad_hex"),
        ("/v1/tx", b"{not json", "application/json", "malformed_body"),
        ("/v1/tx", b'{"wrong": "shape"}', "application/json", "malformed_body"),
        ("/v1/tx", b"[1, 2, 3]", "application/json", "malformed_body"),
        ("/v1/tx", b'{"tx": 42}', "application/json", "malformed_body"),
        ("/v1/txs", b'{"txs": "abcd"}', "application/json", "malformed_body"),
        ("/v1/txs", b'{"txs": []}', "application/json", "malformed_body"),
        ("/v1/txs", b'{"txs": [null]}', "application/json", "malformed_body"),
        ("/v1/txs", b"\xff\xfe\x00", "application/json", "malformed_body"),
        ("/v1/tx", b"\x00garbage bytes", "application/octet-stream", "malformed"),
        ("/v1/tx", b"", "application/octet-stream", "malformed"),
        ("/v1/txs/status", b'{"hashes": []}', "application/json", "malformed_body"),
        ("/v1/txs/status", b'{"hashes": ["abcd"]}', "application/json", "bad_hash"),
        ("/v1/txs/status", b'{"hashes": [7]}', "application/json", "bad_hash"),
        ("/v1/txs/status", b"[1]", "application/json", "malformed_body"),
    ],
)
def test_malformed_body_is_400_with_json_error(
    cluster: Cluster, path: str, body: bytes, content_type: str, code: str
) -> None:
    response = _post(cluster, path, body, content_type)
    assert response.status_code == 400, response.text
    doc = response.json()
    assert doc["error"] == code, doc
    assert isinstance(doc["detail"], str) and doc["detail"]


def test_malformed_bodies_leave_the_node_serving(cluster: Cluster) -> None:
    for body in (b"{", b"[]", b'{"txs": {}}', b"\x00" * 100):
        assert _post(cluster, "/v1/txs", body, "application/json").status_code == 400
    _check_still_serving(cluster)


def test_oversized_tx_is_400_and_oversized_body_is_413(cluster: Cluster) -> None:
    signer = _signer(cluster)
    big = compute_signed_tx(
        signer.seed, CHAIN_ID, TxKind.TRANSFER, signer.nonce, [RECEIVER, 1, b"\x00" * 9000]
    )
    response = _post(cluster, "/v1/tx", big, "application/octet-stream")
    assert response.status_code == 400
    assert response.json()["error"] == "oversized"
    batch = cluster.client(TARGET).submit_many([big])
    assert batch[0]["error"] == "oversized"
    huge = b"\x00" * (1024 * 1024 + 1)
    response = _post(cluster, "/v1/tx", huge, "application/octet-stream")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    _check_still_serving(cluster)


def test_bad_signature_is_rejected(cluster: Cluster) -> None:
    raw = bytearray(_signer(cluster).sign_transfer(RECEIVER, 1))
    raw[-1] ^= 0x01
    response = _post(cluster, "/v1/tx", bytes(raw), "application/octet-stream")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_signature"
    _check_still_serving(cluster)


def test_wrong_chain_is_rejected(cluster: Cluster) -> None:
    signer = _signer(cluster)
    other = Signer(signer.seed, "some-other-chain", signer.nonce)
    raw = other.sign_transfer(RECEIVER, 1)
    response = _post(cluster, "/v1/tx", raw, "application/octet-stream")
    assert response.status_code == 400
    assert response.json()["error"] == "wrong_chain"
    _check_still_serving(cluster)


def test_replayed_nonce_is_rejected(cluster: Cluster) -> None:
    signer = _signer(cluster)
    client = cluster.client(TARGET)
    first = client.submit(signer.sign_transfer(RECEIVER, 1))
    wait_for_level(cluster, [TARGET], [first], "confirmed")
    signer.nonce -= 1
    replay = signer.sign_transfer(RECEIVER, 2)  # same nonce, different transaction
    for name in (TARGET, "node03", "node05"):  # a replica and a PoS node alike
        response = httpx.post(
            cluster.node(name).config.http_url + "/v1/tx",
            json={"tx": replay.hex()},
            timeout=30,
        )
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"] == "replayed_nonce", (name, response.text)
    # Resubmitting the confirmed transaction itself is answered with its hash, not re-run.
    assert client.get_tx(first)["status"] in ("confirmed", "settled")
    _check_still_serving(cluster)


def test_batch_status_answers_each_hash_in_order(cluster: Cluster) -> None:
    signer = _signer(cluster)
    client = cluster.client(TARGET)
    first = client.submit(signer.sign_transfer(RECEIVER, 1))
    wait_for_level(cluster, [TARGET], [first], "confirmed")
    unknown = b"\x42" * 32
    hashes = [first.hex(), unknown.hex(), first.hex()]
    body = json.dumps({"hashes": hashes}).encode()
    response = _post(cluster, "/v1/txs/status", body, "application/json")
    assert response.status_code == 200, response.text
    statuses = response.json()["statuses"]
    single = client.get_tx(first)
    assert statuses[1] is None
    assert statuses[0]["status"] in ("confirmed", "settled") and statuses[0] == statuses[2]
    assert statuses[0]["height"] == single["height"]
    too_many = json.dumps({"hashes": [unknown.hex()] * 1001}).encode()
    response = _post(cluster, "/v1/txs/status", too_many, "application/json")
    assert response.status_code == 400 and response.json()["error"] == "malformed_body"


def _run_intruder(cluster: Cluster, target: str, mode: str, home: str | None) -> str:
    config = cluster.node(target).config
    genesis = cluster.home / "genesis.json"
    member = next(
        v for v in json.loads(genesis.read_text())["validators"] if v["name"] == target
    )
    identity = ["--stranger"] if home is None else ["--home", home]
    proc = subprocess.run(
        [sys.executable, str(INTRUDER), "--peer-id", member["peer_id"],
         "--addr", f"/ip4/127.0.0.1/tcp/{config.p2p_port}", "--mode", mode, *identity],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_garbage_from_a_member_is_logged_and_dropped(cluster: Cluster) -> None:
    # Member node05's identity is borrowed, so node05 is stopped first (one connection
    # per peer); the garbage goes to a replica and to a PoS validator.
    borrowed = "node05"
    cluster.stop(borrowed)
    try:
        home = str(cluster.node(borrowed).config.home)
        for target in ("node00", "node04"):
            before = cluster.get_log(target)
            _run_intruder(cluster, target, "junk", home)
            wait_until(
                lambda: cluster.get_log(target).count("event=bad_frame")  # noqa: B023
                >= before.count("event=bad_frame") + 5,  # noqa: B023
                f"{target} to log the junk frames",
                timeout=60,
            )
            mid = cluster.get_log(target)
            out = _run_intruder(cluster, target, "oversized", home)
            assert "outcome=closed" in out or "outcome=eof" in out, out
            wait_until(
                lambda: cluster.get_log(target).count("event=bad_frame")  # noqa: B023
                > mid.count("event=bad_frame"),  # noqa: B023
                f"{target} to log the oversized frame",
                timeout=60,
            )
            log = cluster.get_log(target)[len(before) :]
            assert f"event=bad_frame peer={borrowed}" in log
            assert cluster.node(target).get_pid() is not None, cluster.describe()
            assert "Traceback" not in log, log[-3000:]
            _check_still_serving(cluster, target)
    finally:
        cluster.start(borrowed)


def test_unknown_peer_is_rejected_and_logged(cluster: Cluster) -> None:
    before = cluster.get_log(TARGET)
    out = _run_intruder(cluster, TARGET, "frames", None)
    stranger = out.split("peer_id=", 1)[1].split()[0]
    wait_until(
        lambda: f"event=peer_rejected peer_id={stranger}" in cluster.get_log(TARGET),
        "the stranger to be rejected in the log",
        timeout=60,
    )
    assert "outcome=still_open" not in out, out
    log = cluster.get_log(TARGET)[len(before):]
    assert "Traceback" not in log
    _check_still_serving(cluster)


def test_cli_tx_and_query_use_the_client(cluster: Cluster) -> None:
    url = cluster.node(TARGET).config.http_url
    index = next(_next_client)
    receiver = bytes(range(32))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "node.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )

    sent = cli(
        "tx",
        "transfer",
        "--node",
        url,
        "--testnet",
        str(cluster.home),
        "--client",
        str(index),
        "--to",
        receiver.hex(),
        "--amount",
        "7",
        "--wait",
        "confirmed",
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert '"status": "confirmed"' in sent.stdout or '"status": "settled"' in sent.stdout
    account = cli("query", "account", receiver.hex(), "--node", url)
    assert account.returncode == 0, account.stdout + account.stderr
    assert '"balance": 7' in account.stdout
    bad = cli("query", "block", "not-a-number", "--node", url)
    assert bad.returncode == 1 and "bad argument" in bad.stdout
