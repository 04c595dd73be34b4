"""Total blob store quota: 507 refusals, no double counting, totals kept across restarts."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.blobstore import BlobStore, BlobStoreFullError
from node.config import ConfigError, Limits, parse_config
from node.http_api import create_app


class _BlobOnlyService:
    """The part of a node the blob routes use: a real blob store on disk."""

    max_body_bytes = 1024

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def get_blob_store(self) -> BlobStore:
        return self.store


def _client(store: BlobStore) -> httpx.AsyncClient:
    app = create_app(_BlobOnlyService(store))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node")


def _blob(fill: bytes, size: int) -> tuple[str, bytes]:
    data = (fill * size)[:size]
    return hashlib.sha256(data).hexdigest(), data


def _temp_files(store: BlobStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


async def test_put_past_the_quota_is_refused_with_507(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob_size=1000, max_total_bytes=1500)
    first, first_data = _blob(b"a", 1000)
    second, second_data = _blob(b"b", 600)
    third, third_data = _blob(b"c", 500)
    async with _client(store) as client:
        r = await client.put(f"/v1/blobs/{first}", content=first_data)
        assert r.status_code == 201
        with caplog.at_level(logging.INFO, logger="dmchain.http"):
            r = await client.put(f"/v1/blobs/{second}", content=second_data)
        assert r.status_code == 507 and r.json()["error"] == "blob_store_full"
        assert "quota 1500 bytes" in r.json()["detail"]
        assert any(
            "event=blob_refused" in rec.getMessage() and "reason=store_full" in rec.getMessage()
            for rec in caplog.records
        )

        async def stream() -> Any:  # no content-length: refused while streaming
            for _ in range(6):
                yield b"b" * 100

        r = await client.put(f"/v1/blobs/{second}", content=stream())
        assert r.status_code == 507 and r.json()["error"] == "blob_store_full"
        # exactly up to the quota still fits
        r = await client.put(f"/v1/blobs/{third}", content=third_data)
        assert r.status_code == 201
        r = await client.get(f"/v1/blobs/{second}")
        assert r.status_code == 404
    assert store.get_total_bytes() == 1500
    assert sorted(store.list_names()) == sorted([first, third])
    assert _temp_files(store) == []


async def test_re_put_of_a_stored_blob_succeeds_under_a_full_quota(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob_size=1000, max_total_bytes=1000)
    name, data = _blob(b"x", 1000)
    other, other_data = _blob(b"y", 1)
    async with _client(store) as client:
        assert (await client.put(f"/v1/blobs/{name}", content=data)).status_code == 201
        assert store.get_total_bytes() == 1000
        r = await client.put(f"/v1/blobs/{other}", content=other_data)
        assert r.status_code == 507
        for _ in range(2):
            r = await client.put(f"/v1/blobs/{name}", content=data)
            assert r.status_code == 201 and r.json() == {"name": name, "size": 1000}
        r = await client.get(f"/v1/blobs/{name}")
        assert r.status_code == 200 and r.content == data
    assert store.get_total_bytes() == 1000
    assert store.put_bytes(data) == name  # the direct path does not count it twice either
    assert store.get_total_bytes() == 1000
    assert _temp_files(store) == []


def test_total_is_recomputed_on_restart_and_follows_delete_and_quarantine(
    tmp_path: Path,
) -> None:
    root = tmp_path / "blobs"
    store = BlobStore(root, max_total_bytes=10_000)
    names = [store.put_bytes(bytes([i]) * (100 * (i + 1))) for i in range(4)]
    assert store.get_total_bytes() == 100 + 200 + 300 + 400
    (root / "tmp" / "put-leftover").write_bytes(b"z" * 5000)  # an interrupted write
    (root / "blobs" / "not-a-blob").mkdir(exist_ok=True)

    reopened = BlobStore(root, max_total_bytes=1100)
    assert reopened.get_total_bytes() == 1000
    name, data = _blob(b"n", 101)
    with pytest.raises(BlobStoreFullError):
        reopened.put_bytes(data)
    assert not reopened.has(name)

    assert reopened.delete(names[3])
    assert not reopened.delete(names[3])
    assert reopened.get_total_bytes() == 600
    path = root / "blobs" / names[2][:2] / names[2]
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    assert not reopened.is_intact(names[2])  # quarantined: its bytes leave the total
    assert reopened.get_total_bytes() == 300
    assert reopened.put_bytes(data) == name
    assert reopened.get_total_bytes() == 401
    assert BlobStore(root).get_total_bytes() == 401


def test_concurrent_puts_never_exceed_the_quota(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_total_bytes=5 * 1000)
    results: list[str] = []
    lock = threading.Lock()

    def put(i: int) -> None:
        try:
            store.put_bytes(i.to_bytes(2, "big") * 500)
            outcome = "stored"
        except BlobStoreFullError:
            outcome = "full"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("stored") == 5 and results.count("full") == 11
    assert store.get_total_bytes() == 5000 == sum(store.get_size(n) for n in store.list_names())


def test_config_blob_store_quota_default_and_validation(tmp_path: Path) -> None:
    base = {"name": "n0"}
    assert parse_config(base, tmp_path).limits.blob_store_max_bytes == 8 * 1024**3
    assert Limits().blob_store_max_bytes >= Limits().blob_max_bytes
    cfg = parse_config({**base, "limits": {"blob_store_max_bytes": 1 << 30}}, tmp_path)
    assert cfg.limits.blob_store_max_bytes == 1 << 30
    for bad in (0, -1, "8GiB", True):
        with pytest.raises(ConfigError, match=r"limits\.blob_store_max_bytes"):
            parse_config({**base, "limits": {"blob_store_max_bytes": bad}}, tmp_path)
    with pytest.raises(ConfigError, match=r"at least limits\.blob_max_bytes"):
        parse_config(
            {**base, "limits": {"blob_max_bytes": 2000, "blob_store_max_bytes": 1000}}, tmp_path
        )
