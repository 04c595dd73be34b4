"""Job data edge: sealed keys and models, the sealed-key dataset source, job HTTP routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consensus.crypto import compute_hash, compute_public_key, compute_seed_from_label
from node.blobstore import BlobStore
from node.http_api import create_app
from node.jobdata import (
    JobDataError,
    SealedKeySource,
    compute_key_entries,
    get_buyer_key,
    get_buyer_key_path,
    get_sealed_key_from_job,
    open_sealed,
    process_save_buyer_key,
    process_store_encrypted,
    seal_to_account,
)

EXECUTOR = compute_seed_from_label("executor")
OTHER = compute_seed_from_label("other")
BUYER = compute_seed_from_label("buyer")


def test_sealed_bytes_open_only_for_their_account() -> None:
    sealed = seal_to_account(compute_public_key(EXECUTOR), b"model weights")
    assert open_sealed(EXECUTOR, sealed) == b"model weights"
    with pytest.raises(JobDataError):
        open_sealed(OTHER, sealed)
    with pytest.raises(JobDataError):
        seal_to_account(b"short", b"x")


def job_doc(cipher_hash: bytes, content_hash: bytes, entries: list[list[bytes]]) -> dict[str, Any]:
    """The parts of a GET /v1/jobs/{id} document an executor reads."""
    return {
        "validation_cipher_hash": cipher_hash.hex(),
        "validation_hash": content_hash.hex(),
        "keys": [{"executor": a.hex(), "sealed_key": k.hex()} for a, k in entries],
    }


def test_validation_comes_from_the_key_sealed_to_the_executor_in_the_job_doc(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "blobs")
    plaintext = b"dataset bytes" * 100
    key, content_hash, cipher_hash = process_store_encrypted(store, plaintext)
    assert content_hash == compute_hash(plaintext)
    assert store.get_bytes(cipher_hash.hex()) != plaintext  # stored encrypted
    source = SealedKeySource(store, EXECUTOR)
    me, other = compute_public_key(EXECUTOR), compute_public_key(OTHER)
    with pytest.raises(JobDataError, match="no validation key sealed to this executor"):
        source.get_validation(job_doc(cipher_hash, content_hash, []))
    only_other = compute_key_entries(key, [other])
    with pytest.raises(JobDataError, match="no validation key sealed to this executor"):
        source.get_validation(job_doc(cipher_hash, content_hash, only_other))
    entries = compute_key_entries(key, [other, me])
    assert [e[0] for e in entries] == [other, me] and all(len(e[1]) == 80 for e in entries)
    assert source.get_validation(job_doc(cipher_hash, content_hash, entries)) == plaintext
    with pytest.raises(JobDataError, match="on-chain hash"):
        source.get_validation(job_doc(cipher_hash, bytes(32), entries))
    # the other executor's entry does not open for this one
    with pytest.raises(JobDataError, match="do not open"):
        source.get_validation(job_doc(cipher_hash, content_hash, [[me, entries[0][1]]]))
    wrong = [[me, seal_to_account(me, bytes(32))]]  # a key, but not this blob's
    with pytest.raises(JobDataError, match="does not decrypt"):
        source.get_validation(job_doc(cipher_hash, content_hash, wrong))
    short = [[me, seal_to_account(me, bytes(16))]]
    with pytest.raises(JobDataError, match="wrong size"):
        source.get_validation(job_doc(cipher_hash, content_hash, short))
    with pytest.raises(JobDataError, match="too large"):
        source.get_validation(job_doc(cipher_hash, content_hash, [[me, bytes(257)]]))
    bad_hex = job_doc(cipher_hash, content_hash, [])
    bad_hex["keys"] = [{"executor": me.hex(), "sealed_key": "zz"}]
    with pytest.raises(JobDataError, match="not hex"):
        get_sealed_key_from_job(bad_hex, me)


def test_missing_blob_is_fetched_and_rehashed(tmp_path: Path) -> None:
    origin = BlobStore(tmp_path / "origin")
    plaintext = b"validation" * 50
    key, content_hash, cipher_hash = process_store_encrypted(origin, plaintext)
    fetched: list[str] = []

    def fetch(name: str, dest: Path) -> None:
        fetched.append(name)
        dest.write_bytes(origin.get_bytes(name))

    source = SealedKeySource(BlobStore(tmp_path / "mine"), EXECUTOR, fetch)
    doc = job_doc(cipher_hash, content_hash, compute_key_entries(key, [source.account]))
    assert source.get_validation(doc) == plaintext and fetched == [cipher_hash.hex()]
    assert source.get_validation(doc) == plaintext and len(fetched) == 1  # now local


def test_buyer_keeps_its_copy_of_the_key_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "buyer" / "job-keys"
    key, cipher_hash = bytes(range(32)), bytes([9] * 32)
    path = process_save_buyer_key(state_dir, cipher_hash, BUYER, key)
    assert path == get_buyer_key_path(state_dir, cipher_hash)
    assert path.stat().st_mode & 0o777 == 0o600
    assert state_dir.stat().st_mode & 0o777 == 0o700
    assert key not in path.read_bytes()  # sealed to the buyer, not in the clear
    assert get_buyer_key(state_dir, cipher_hash, BUYER) == key
    with pytest.raises(JobDataError, match="do not open"):
        get_buyer_key(state_dir, cipher_hash, OTHER)
    with pytest.raises(JobDataError, match="no copy"):
        get_buyer_key(state_dir, bytes(32), BUYER)


class FakeService:
    max_body_bytes = 1024

    def __init__(self) -> None:
        self.job_id = bytes([5] * 32)

    def get_job(self, job_id: bytes) -> dict[str, Any] | None:
        return {"job_id": job_id.hex(), "status": "open"} if job_id == self.job_id else None

    def get_executor(self, account: bytes) -> dict[str, Any] | None:
        return None


def test_job_routes_answer_documents_404_and_400() -> None:
    service = FakeService()
    http = TestClient(create_app(service))  # type: ignore[arg-type]
    response = http.get(f"/v1/jobs/{service.job_id.hex()}")
    assert response.status_code == 200 and response.json()["status"] == "open"
    assert http.get(f"/v1/jobs/{'ab' * 32}").json()["error"] == "unknown_job"
    assert http.get("/v1/jobs/xyz").status_code == 400
    assert http.get(f"/v1/jobs/{'ab' * 31}").json()["error"] == "bad_length"
    assert http.get(f"/v1/executors/{'ab' * 32}").json()["error"] == "unknown_executor"


class FakeChainClient:
    """Just enough of NodeClient for ``dmchain job keys``: one job, submitted txs recorded."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.sent: list[bytes] = []

    def get_job(self, job_id: bytes) -> dict[str, Any]:
        return self.job

    def get_status(self) -> dict[str, Any]:
        return {"chain_id": "test-chain"}

    def get_account(self, account: bytes) -> dict[str, Any]:
        return {"nonce": len(self.sent)}

    def submit(self, raw: bytes) -> bytes:
        self.sent.append(raw)
        return compute_hash(raw)

    def wait(self, tx_hash: bytes, status: str, timeout: float) -> dict[str, Any]:
        return {"hash": tx_hash.hex(), "status": "confirmed"}


def test_job_keys_posts_only_for_executors_without_a_key(tmp_path: Path) -> None:
    import argparse

    from ledger.tx import TxKind, decode_tx
    from node import cmd_job

    key, cipher_hash, job_id = bytes([3] * 32), bytes([4] * 32), bytes([5] * 32)
    state_dir = tmp_path / "buyer-state"
    key_file = tmp_path / "buyer.key"
    key_file.write_text(BUYER.hex())
    process_save_buyer_key(state_dir, cipher_hash, BUYER, key)
    old, new = compute_public_key(EXECUTOR), compute_public_key(OTHER)
    job = {
        "buyer": compute_public_key(BUYER).hex(),
        "validation_cipher_hash": cipher_hash.hex(),
        "assigned": [{"executor": old.hex()}, {"executor": new.hex()}],
        "keys": [{"executor": old.hex(), "sealed_key": seal_to_account(old, key).hex()}],
    }
    fake = FakeChainClient(job)
    parser = argparse.ArgumentParser()
    cmd_job.add_arguments(parser)
    args = parser.parse_args(["keys", job_id.hex(), "--key", str(key_file),
                              "--state-dir", str(state_dir)])
    assert cmd_job._keys(args, fake) == 0  # type: ignore[arg-type]
    assert len(fake.sent) == 1
    tx = decode_tx(fake.sent[0])
    assert tx.kind == TxKind.JOB_KEYS and tx.sender == compute_public_key(BUYER)
    assert tx.args.job_id == job_id
    [[executor, sealed]] = tx.args.entries
    assert executor == new and open_sealed(OTHER, sealed) == key
    # without the buyer's copy nothing is posted
    args.state_dir = tmp_path / "elsewhere"
    assert cmd_job._keys(args, fake) == 1  # type: ignore[arg-type]
    assert len(fake.sent) == 1
    # default state directory: job-keys next to the --key file
    args.state_dir = None
    assert cmd_job._state_dir(args) == tmp_path / "job-keys"


class LedgerClient:
    """An in-process NodeClient for ``dmchain job expire`` / ``executor unregister``.

    Each submitted transaction is applied in its own block by the real ledger
    rules; ``wait`` answers the receipt the way a node does (``failed`` with
    the rule's reason, else ``confirmed``); documents come from node.jobs_doc.
    """

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.receipts: dict[bytes, Any] = {}

    def get_status(self) -> dict[str, Any]:
        from ledger_helpers import CHAIN

        return {"chain_id": CHAIN}

    def get_account(self, account: bytes) -> dict[str, Any]:
        return {"nonce": self.chain.state.get_account(account).nonce}

    def submit(self, raw: bytes) -> bytes:
        from ledger.tx import decode_tx

        [receipt] = self.chain.run([decode_tx(raw)])
        self.receipts[receipt.tx_hash] = receipt
        return bytes(receipt.tx_hash)

    def wait(self, tx_hash: bytes, status: str, timeout: float) -> dict[str, Any]:
        receipt = self.receipts[tx_hash]
        doc = {"hash": tx_hash.hex(), "status": "confirmed" if receipt.ok else "failed"}
        return doc if receipt.ok else doc | {"reason": receipt.reason}

    def get_job(self, job_id: bytes) -> dict[str, Any]:
        from node.client import ClientError
        from node.jobs_doc import get_job_doc

        doc = get_job_doc(self.chain.state, job_id)
        if doc is None:
            raise ClientError("unknown_job", "no such job")
        return doc

    def get_executor(self, account: bytes) -> dict[str, Any]:
        from node.client import ClientError
        from node.jobs_doc import get_executor_doc

        doc = get_executor_doc(self.chain.state, account)
        if doc is None:
            raise ClientError("unknown_executor", "no such executor")
        return doc


def _jobs_rules() -> Any:
    """The job fixtures of tests/ledger/test_jobs_rules.py (imported as a module, not collected)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))
    import test_jobs_rules

    return test_jobs_rules


def test_job_expire_cli_prints_the_refund_or_the_chains_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from ledger import queries as q
    from ledger.records import JOB_EXPIRED
    from node import cmd_job

    jr = _jobs_rules()
    chain, assets, grants = jr.setup({"job_timeout": 3})
    job_id = jr.submit(chain, jr.spec_bytes(assets), grants).result
    anyone = jr.OTHER_BUYER  # any account may expire a job past its deadline
    key_file = tmp_path / "anyone.key"
    key_file.write_text(anyone.seed.hex())
    client = LedgerClient(chain)
    parser = argparse.ArgumentParser()
    cmd_job.add_arguments(parser)
    args = parser.parse_args(["expire", job_id.hex(), "--key", str(key_file)])
    buyer_before = q.get_account(chain.state, jr.BUYER.pub).balance

    assert cmd_job._expire(args, client) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert out.startswith("job: refused: ") and "open until height" in out, out
    assert q.get_job(chain.state, job_id).status != JOB_EXPIRED  # type: ignore[union-attr]

    while chain.state.height <= q.get_job(chain.state, job_id).deadline:  # type: ignore[union-attr]
        chain.run([])
    assert cmd_job._expire(args, client) == 0  # type: ignore[arg-type]
    doc = json.loads(capsys.readouterr().out)
    assert doc["job_id"] == job_id.hex() and doc["status"] == "expired"
    assert doc["refund"] == jr.BID and doc["buyer"] == jr.BUYER.pub.hex()
    assert q.get_account(chain.state, jr.BUYER.pub).balance - buyer_before == jr.BID
    jr.check_supply(chain)

    assert cmd_job._expire(args, client) == 1  # type: ignore[arg-type]
    assert capsys.readouterr().out.strip() == "job: refused: job is expired"
    args = parser.parse_args(["expire", ("ab" * 32), "--key", str(key_file)])
    assert cmd_job._expire(args, client) == 1  # type: ignore[arg-type]
    assert capsys.readouterr().out.strip() == "job: refused: no such job"
    args = parser.parse_args(["expire", "abcd", "--key", str(key_file)])
    assert cmd_job._expire(args, client) == 1  # type: ignore[arg-type]
    assert "32 bytes" in capsys.readouterr().out


def test_executor_unregister_cli_returns_the_stake_or_prints_the_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from ledger import queries as q
    from node import cmd_executor
    from node.wallet import process_create_wallet

    jr = _jobs_rules()
    chain, assets, grants = jr.setup({"job_timeout": 2})
    job_id = jr.submit(chain, jr.spec_bytes(assets), grants).result
    busy = jr.key_of(q.get_job(chain.state, job_id).assigned[0])  # type: ignore[union-attr]
    wallet = tmp_path / "wallet"
    process_create_wallet(wallet, busy.seed)
    client = LedgerClient(chain)
    parser = argparse.ArgumentParser()
    cmd_executor.add_arguments(parser)
    args = parser.parse_args(["unregister", "--wallet", str(wallet)])
    stake = q.get_executor(chain.state, busy.pub).stake  # type: ignore[union-attr]
    balance = q.get_account(chain.state, busy.pub).balance

    assert cmd_executor.unregister(args, client) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out.strip()
    assert out == "executor: refused: executor is assigned to 1 open job(s)", out
    assert q.get_executor(chain.state, busy.pub).stake == stake  # type: ignore[union-attr]

    chain.run([])
    chain.run([])
    assert chain.run1(jr.OTHER_BUYER, jr.TxKind.EXPIRE_JOB, [job_id]).ok  # job closed
    assert cmd_executor.unregister(args, client) == 0  # type: ignore[arg-type]
    doc = json.loads(capsys.readouterr().out)
    assert doc["account"] == busy.pub.hex() and doc["returned_stake"] == stake == 20 * jr.TOKEN
    assert q.get_account(chain.state, busy.pub).balance - balance == stake
    ex = q.get_executor(chain.state, busy.pub)
    assert ex is not None and ex.stake == 0 and not ex.active
    jr.check_supply(chain)

    assert cmd_executor.unregister(args, client) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out.strip()
    assert out == "executor: refused: sender is not a registered executor", out
    args = parser.parse_args(["unregister", "--wallet", str(tmp_path / "none")])
    assert cmd_executor.unregister(args, client) == 1  # type: ignore[arg-type]
    assert "not a wallet directory" in capsys.readouterr().out
