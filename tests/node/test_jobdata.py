"""Job data edge: sealed keys and models, the sealed-key dataset source, job HTTP routes."""

from __future__ import annotations

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
    get_key_path,
    open_sealed,
    process_grant_key,
    process_store_encrypted,
    seal_to_account,
)

EXECUTOR = compute_seed_from_label("executor")
OTHER = compute_seed_from_label("other")


def test_sealed_bytes_open_only_for_their_account() -> None:
    sealed = seal_to_account(compute_public_key(EXECUTOR), b"model weights")
    assert open_sealed(EXECUTOR, sealed) == b"model weights"
    with pytest.raises(JobDataError):
        open_sealed(OTHER, sealed)
    with pytest.raises(JobDataError):
        seal_to_account(b"short", b"x")


def test_sealed_key_source_checks_key_blob_and_hash(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    plaintext = b"dataset bytes" * 100
    key, content_hash, cipher_hash = process_store_encrypted(store, plaintext)
    assert content_hash == compute_hash(plaintext)
    assert store.get_bytes(cipher_hash.hex()) != plaintext  # stored encrypted
    source = SealedKeySource(store, tmp_path / "keys", EXECUTOR)
    with pytest.raises(JobDataError, match="no data key"):
        source.get_plaintext(cipher_hash, content_hash)
    process_grant_key(tmp_path / "keys", cipher_hash, compute_public_key(OTHER), key)
    with pytest.raises(JobDataError, match="no data key"):
        source.get_plaintext(cipher_hash, content_hash)
    process_grant_key(tmp_path / "keys", cipher_hash, compute_public_key(EXECUTOR), key)
    assert source.get_plaintext(cipher_hash, content_hash) == plaintext
    with pytest.raises(JobDataError, match="on-chain hash"):
        source.get_plaintext(cipher_hash, bytes(32))
    path = get_key_path(tmp_path / "keys", cipher_hash, compute_public_key(EXECUTOR))
    path.write_bytes(seal_to_account(compute_public_key(EXECUTOR), bytes(32)))  # wrong key
    with pytest.raises(JobDataError, match="does not decrypt"):
        source.get_plaintext(cipher_hash, content_hash)


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
