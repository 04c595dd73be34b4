"""Blob endpoints of the node API: streamed put, hash and size checks, verified reads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from node.blobstore import BlobStore
from node.http_api import create_app


class _BlobOnlyService:
    """The part of a node the blob routes use: a real blob store on disk."""

    max_body_bytes = 1024

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def get_blob_store(self) -> BlobStore:
        return self.store


def _client(tmp_path: Path, limit: int = 64 * 1024) -> tuple[httpx.AsyncClient, BlobStore]:
    store = BlobStore(tmp_path / "blobs", max_blob_size=limit)
    app = create_app(_BlobOnlyService(store))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://node"), store


async def test_put_get_head_roundtrip(tmp_path: Path) -> None:
    client, store = _client(tmp_path)
    data = bytes(range(256)) * 100
    name = hashlib.sha256(data).hexdigest()
    async with client:
        r = await client.put(f"/v1/blobs/{name}", content=data)
        assert r.status_code == 201 and r.json() == {"name": name, "size": len(data)}
        r = await client.get(f"/v1/blobs/{name}")
        assert r.status_code == 200 and r.content == data
        r = await client.head(f"/v1/blobs/{name}")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(data)
        r = await client.get(f"/v1/blobs/{'0' * 64}")
        assert r.status_code == 404 and r.json()["error"] == "unknown_blob"
    assert store.has(name)


async def test_put_refuses_wrong_hash_bad_name_and_oversize(tmp_path: Path) -> None:
    client, store = _client(tmp_path, limit=1000)
    data = b"x" * 500
    async with client:
        r = await client.put(f"/v1/blobs/{'ab' * 32}", content=data)
        assert r.status_code == 400 and r.json()["error"] == "hash_mismatch"
        r = await client.put("/v1/blobs/../../etc", content=data)
        assert r.status_code in (400, 404)
        r = await client.put(f"/v1/blobs/{'AB' * 32}", content=data)
        assert r.status_code == 400 and r.json()["error"] == "bad_blob_name"
        big = b"y" * 1001
        r = await client.put(f"/v1/blobs/{hashlib.sha256(big).hexdigest()}", content=big)
        assert r.status_code == 413 and r.json()["error"] == "blob_too_large"

        async def stream() -> Any:  # no content-length: the limit applies while streaming
            for _ in range(3):
                yield b"z" * 400

        body = b"z" * 1200
        r = await client.put(f"/v1/blobs/{hashlib.sha256(body).hexdigest()}", content=stream())
        assert r.status_code == 413
    assert store.list_names() == []
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


async def test_tampered_blob_is_never_served(tmp_path: Path) -> None:
    client, store = _client(tmp_path)
    data = b"ciphertext" * 1000
    name = store.put_bytes(data)
    path = tmp_path / "blobs" / "blobs" / name[:2] / name
    path.write_bytes(b"C" + data[1:])
    async with client:
        r = await client.get(f"/v1/blobs/{name}")
        assert r.status_code == 503 and r.json()["error"] == "blob_corrupt"
        assert b"ciphertext" not in r.content
        r = await client.get(f"/v1/blobs/{name}")
        assert r.status_code == 404
    assert (tmp_path / "blobs" / "quarantine" / name).exists()
