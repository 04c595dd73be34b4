"""Content-addressed blob store: round trip, verified reads, limits and path safety."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from node.blobstore import (
    BlobCorruptError,
    BlobHashMismatchError,
    BlobNameError,
    BlobNotFoundError,
    BlobStore,
    BlobTooLargeError,
    is_blob_name,
)


def _stored_path(store: BlobStore, name: str) -> Path:
    return store.root / "blobs" / name[:2] / name


def test_round_trip_bytes_and_stream(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = bytes(range(256)) * 1000
    name = store.put_bytes(data)
    assert name == hashlib.sha256(data).hexdigest()
    assert store.has(name) and store.get_size(name) == len(data)
    assert store.get_bytes(name) == data
    assert b"".join(store.iter_blob(name, chunk_size=1000)) == data
    out = io.BytesIO()
    assert store.copy_to(name, out) == len(data)
    assert out.getvalue() == data
    assert store.put_stream(io.BytesIO(data), expected_sha256=name) == name
    assert store.list_names() == [name]
    assert store.is_intact(name)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_empty_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    name = store.put_bytes(b"")
    assert store.get_bytes(name) == b""


def test_tampered_file_detected_and_quarantined(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    name = store.put_bytes(b"ciphertext" * 10_000)
    path = _stored_path(store, name)
    raw = bytearray(path.read_bytes())
    raw[5000] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorruptError, match="corrupt"):
        store.get_bytes(name)
    assert not store.has(name)
    assert (tmp_path / "quarantine" / name).exists()
    with pytest.raises(BlobNotFoundError):
        store.get_bytes(name)


def test_streaming_read_of_tampered_file_never_completes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    name = store.put_bytes(b"x" * 200_000)
    _stored_path(store, name).write_bytes(b"y" * 200_000)
    out = io.BytesIO()
    with pytest.raises(BlobCorruptError):
        store.copy_to(name, out)
    assert not store.is_intact(name)


def test_oversize_refused_and_nothing_left(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_blob_size=1000)
    store.put_bytes(b"a" * 1000)
    with pytest.raises(BlobTooLargeError):
        store.put_bytes(b"a" * 1001)
    with pytest.raises(BlobTooLargeError):
        store.put_stream(io.BytesIO(b"a" * 5000))
    assert len(store.list_names()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_expected_hash_mismatch_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobHashMismatchError):
        store.put_bytes(b"data", expected_sha256="0" * 64)
    assert store.list_names() == []


@pytest.mark.parametrize(
    "name",
    ["../" + "a" * 61, "a" * 63, "A" * 64, "a" * 65, "/etc/passwd", "", "a" * 62 + "/x", "g" * 64],
)
def test_traversal_and_bad_names_refused(tmp_path: Path, name: str) -> None:
    store = BlobStore(tmp_path)
    assert not is_blob_name(name)
    with pytest.raises(BlobNameError):
        store.get_bytes(name)
    with pytest.raises(BlobNameError):
        store.has(name)
    with pytest.raises(BlobNameError):
        store.delete(name)
    with pytest.raises(BlobNameError):
        store.put_bytes(b"x", expected_sha256=name)


def test_delete_and_missing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    name = store.put_bytes(b"bye")
    assert store.delete(name)
    assert not store.delete(name)
    assert not store.has(name)
    with pytest.raises(BlobNotFoundError):
        store.get_bytes(name)
    with pytest.raises(BlobNotFoundError):
        list(store.iter_blob("f" * 64))


def test_stale_temp_files_removed_on_open(tmp_path: Path) -> None:
    BlobStore(tmp_path)
    (tmp_path / "tmp" / "put-leftover").write_bytes(b"partial")
    BlobStore(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_lowered_limit_refuses_in_memory_read_without_quarantine(tmp_path: Path) -> None:
    name = BlobStore(tmp_path).put_bytes(b"z" * 2000)
    small = BlobStore(tmp_path, max_blob_size=1000)
    with pytest.raises(BlobTooLargeError):
        small.get_bytes(name)
    assert small.has(name) and small.is_intact(name)
