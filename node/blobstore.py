"""Content-addressed blob store on disk for ciphertext blobs.

A blob is stored under its SHA-256 (64 lowercase hex characters) in
``<root>/blobs/<first two hex>/<hex>``. Writes stream into a temporary file in
``<root>/tmp``, hash and size-check on the way, fsync, and are renamed into
place, so a reader never sees a partial blob. Every read re-hashes the bytes:
a file tampered with on disk is reported with :class:`BlobCorruptError` and
moved to ``<root>/quarantine``, never served as if it were good.

Only names of exactly 64 hex characters are accepted, so no request can
reach a path outside the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

DEFAULT_MAX_BLOB_SIZE = 256 * 1024 * 1024
READ_CHUNK_SIZE = 64 * 1024
MAX_LIST = 100_000
_HEX_NAME = re.compile(r"^[0-9a-f]{64}$")


class BlobStoreError(Exception):
    """Base class of blob store errors."""


class BlobNameError(BlobStoreError, ValueError):
    """The name is not 64 lowercase hex characters."""


class BlobNotFoundError(BlobStoreError, KeyError):
    """No blob with that hash is stored."""


class BlobTooLargeError(BlobStoreError, ValueError):
    """The blob exceeds the store's size limit."""


class BlobHashMismatchError(BlobStoreError, ValueError):
    """The written bytes do not hash to the expected SHA-256."""


class BlobCorruptError(BlobStoreError):
    """A stored file no longer hashes to its name; it has been quarantined."""


def is_blob_name(name: str) -> bool:
    """Return True iff ``name`` is 64 lowercase hex characters."""
    return isinstance(name, str) and _HEX_NAME.match(name) is not None


def _check_name(name: str) -> str:
    if not is_blob_name(name):
        raise BlobNameError("blob name must be 64 lowercase hex characters (a SHA-256)")
    return name


class BlobStore:
    """A directory of blobs named by their SHA-256."""

    def __init__(self, root: Path | str, max_blob_size: int = DEFAULT_MAX_BLOB_SIZE) -> None:
        if max_blob_size < 0:
            raise ValueError("max_blob_size must be non-negative")
        self.root = Path(root)
        self.max_blob_size = max_blob_size
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self._quarantine = self.root / "quarantine"
        for directory in (self._blobs, self._tmp, self._quarantine):
            directory.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temp_files()

    def remove_stale_temp_files(self) -> int:
        """Delete temporary files left by an interrupted write; return how many.

        Call only while no write is in progress (the store does at start-up).
        """
        removed = 0
        for entry in self._tmp.iterdir():
            if entry.is_file() and entry.name.startswith("put-"):
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    def _path(self, name: str) -> Path:
        name = _check_name(name)
        return self._blobs / name[:2] / name

    def put_stream(self, src: BinaryIO, expected_sha256: str | None = None) -> str:
        """Store the bytes of ``src`` and return their SHA-256 hex.

        Raises BlobTooLargeError past ``max_blob_size`` and BlobHashMismatchError
        if ``expected_sha256`` is given and differs; nothing is stored then.
        Storing a blob that already exists is a no-op that returns its name.
        """
        if expected_sha256 is not None:
            _check_name(expected_sha256)
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    part = src.read(READ_CHUNK_SIZE)
                    if not part:
                        break
                    size += len(part)
                    if size > self.max_blob_size:
                        raise BlobTooLargeError(
                            f"blob exceeds the limit of {self.max_blob_size} bytes"
                        )
                    hasher.update(part)
                    out.write(part)
                out.flush()
                os.fsync(out.fileno())
            name = hasher.hexdigest()
            if expected_sha256 is not None and name != expected_sha256:
                raise BlobHashMismatchError(f"blob hashes to {name}, expected {expected_sha256}")
            final = self._path(name)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_path, final)
            return name
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def create_temp_file(self) -> tuple[int, Path]:
        """Return ``(fd, path)`` of a new temporary file inside the store (for streamed puts)."""
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        return fd, Path(tmp_name)

    def adopt_temp_file(self, tmp_path: Path, name: str) -> str:
        """Move a fully written temporary file into place as blob ``name`` after re-hashing it.

        Raises BlobHashMismatchError (the file is deleted) if it does not hash
        to ``name``, BlobTooLargeError past the size limit. Returns ``name``.
        """
        _check_name(name)
        try:
            if tmp_path.stat().st_size > self.max_blob_size:
                raise BlobTooLargeError(f"blob exceeds the limit of {self.max_blob_size} bytes")
            hasher = hashlib.sha256()
            with tmp_path.open("rb") as handle:
                while part := handle.read(READ_CHUNK_SIZE * 16):
                    hasher.update(part)
            if hasher.hexdigest() != name:
                raise BlobHashMismatchError(f"blob hashes to {hasher.hexdigest()}, expected {name}")
            final = self._path(name)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_path, final)
            return name
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> str:
        """Store ``data`` and return its SHA-256 hex (see :meth:`put_stream`)."""
        if len(data) > self.max_blob_size:
            raise BlobTooLargeError(f"blob exceeds the limit of {self.max_blob_size} bytes")
        return self.put_stream(io.BytesIO(data), expected_sha256)

    def has(self, name: str) -> bool:
        """Return True iff a blob named ``name`` is stored (its content is not checked)."""
        return self._path(name).is_file()

    def get_size(self, name: str) -> int:
        """Return the stored size of blob ``name``; raises BlobNotFoundError."""
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFoundError(name) from exc

    def _quarantine_file(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.replace(self._path(name), self._quarantine / name)

    def iter_blob(self, name: str, chunk_size: int = READ_CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the bytes of blob ``name`` and re-verify its hash.

        Raises BlobNotFoundError if absent. If the file no longer hashes to
        its name, raises BlobCorruptError after the last chunk instead of
        finishing (so a transfer in progress must be aborted, not completed)
        and quarantines the file. Use :meth:`get_bytes` or :meth:`copy_to`
        when nothing may be handed on before the check.
        """
        path = self._path(name)
        hasher = hashlib.sha256()
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFoundError(name) from exc
        with handle:
            while True:
                part = handle.read(chunk_size)
                if not part:
                    break
                hasher.update(part)
                yield part
        if hasher.hexdigest() != name:
            self._quarantine_file(name)
            raise BlobCorruptError(f"blob {name} is corrupt on disk and was quarantined")

    def get_bytes(self, name: str) -> bytes:
        """Return blob ``name`` only after verifying its hash.

        Raises BlobNotFoundError or BlobCorruptError. Reads at most
        ``max_blob_size`` bytes into memory.
        """
        if self.get_size(name) > self.max_blob_size:
            raise BlobTooLargeError(f"blob {name} exceeds the limit of {self.max_blob_size} bytes")
        return b"".join(self.iter_blob(name))

    def copy_to(self, name: str, dst: BinaryIO) -> int:
        """Write blob ``name`` to ``dst`` and return its size.

        Raises BlobCorruptError at the end if it is corrupt; the caller
        discards ``dst`` then.
        """
        size = 0
        for part in self.iter_blob(name):
            dst.write(part)
            size += len(part)
        return size

    def is_intact(self, name: str) -> bool:
        """Return True iff blob ``name`` is stored and intact; a corrupt one is quarantined."""
        try:
            for _ in self.iter_blob(name):
                pass
        except (BlobCorruptError, BlobNotFoundError):
            return False
        return True

    def delete(self, name: str) -> bool:
        """Delete blob ``name``; return True if it existed."""
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def list_names(self, limit: int = MAX_LIST) -> list[str]:
        """Return up to ``limit`` stored blob names in sorted order (bounded by MAX_LIST)."""
        limit = min(limit, MAX_LIST)
        names: list[str] = []
        for bucket in sorted(self._blobs.iterdir()):
            if not bucket.is_dir():
                continue
            for entry in sorted(bucket.iterdir()):
                if len(names) >= limit:
                    return names
                if is_blob_name(entry.name) and entry.name[:2] == bucket.name:
                    names.append(entry.name)
        return names
