"""Content-addressed blob store on disk for ciphertext blobs.

A blob is stored under its SHA-256 (64 lowercase hex characters) in
``<root>/blobs/<first two hex>/<hex>``. Writes stream into a temporary file in
``<root>/tmp``, hash and size-check on the way, fsync, and are renamed into
place, so a reader never sees a partial blob. Every read re-hashes the bytes:
a file tampered with on disk is reported with :class:`BlobCorruptError` and
moved to ``<root>/quarantine``, never served as if it were good.

Only names of exactly 64 hex characters are accepted, so no request can
reach a path outside the store.

The store may be given a quota on the total bytes of its blobs
(``max_total_bytes``). The running total is computed once from the directory
when the store opens and kept up to date on every put, delete and quarantine
under a lock, so concurrent puts can never together exceed the quota; a put
that would is refused with :class:`BlobStoreFullError`. Storing a blob that is
already present never counts its bytes twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import threading
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


class BlobStoreFullError(BlobStoreError):
    """Storing the blob would take the store past its total-bytes quota."""


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

    def __init__(
        self,
        root: Path | str,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
        max_total_bytes: int | None = None,
    ) -> None:
        """Open (creating if needed) the store at ``root``.

        ``max_total_bytes`` bounds the total size of stored blobs (None: no
        quota). The current total is computed once here from the directory.
        """
        if max_blob_size < 0:
            raise ValueError("max_blob_size must be non-negative")
        if max_total_bytes is not None and max_total_bytes < 0:
            raise ValueError("max_total_bytes must be non-negative")
        self.root = Path(root)
        self.max_blob_size = max_blob_size
        self.max_total_bytes = max_total_bytes
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self._quarantine = self.root / "quarantine"
        for directory in (self._blobs, self._tmp, self._quarantine):
            directory.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temp_files()
        self._lock = threading.Lock()
        self._total_bytes = self._compute_total_bytes()

    def _compute_total_bytes(self) -> int:
        total = 0
        for bucket in self._blobs.iterdir():
            if not bucket.is_dir():
                continue
            for entry in bucket.iterdir():
                if is_blob_name(entry.name) and entry.name[:2] == bucket.name:
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def get_total_bytes(self) -> int:
        """Return the total size in bytes of the blobs stored (quarantined ones excluded)."""
        with self._lock:
            return self._total_bytes

    def is_room_for(self, size: int) -> bool:
        """Return True iff a new blob of ``size`` bytes fits under the quota right now.

        Advisory only (for refusing early); the binding check happens when the
        blob is moved into place.
        """
        if self.max_total_bytes is None:
            return True
        with self._lock:
            return self._total_bytes + size <= self.max_total_bytes

    def _install(self, tmp_path: Path, name: str) -> None:
        """Move a verified temporary file into place as ``name``, enforcing the quota.

        A blob already present is replaced by the (identical, verified) new
        bytes and counted once; a new blob that would take the total past
        ``max_total_bytes`` raises BlobStoreFullError and nothing is stored.
        """
        final = self._path(name)
        size = tmp_path.stat().st_size
        with self._lock:
            try:
                previous: int | None = final.stat().st_size
            except FileNotFoundError:
                previous = None
            if (
                previous is None
                and self.max_total_bytes is not None
                and self._total_bytes + size > self.max_total_bytes
            ):
                raise BlobStoreFullError(
                    f"storing {size} bytes would exceed the blob store quota of "
                    f"{self.max_total_bytes} bytes ({self._total_bytes} in use)"
                )
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp_path, final)
            self._total_bytes += size - (previous or 0)

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

        Raises BlobTooLargeError past ``max_blob_size``, BlobHashMismatchError
        if ``expected_sha256`` is given and differs, and BlobStoreFullError past
        the quota; nothing is stored then. Storing a blob that already exists
        returns its name and does not count its bytes again.
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
            self._install(tmp_path, name)
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
        to ``name``, BlobTooLargeError past the size limit, BlobStoreFullError
        past the quota (a blob already present is not counted again). Returns
        ``name``.
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
            self._install(tmp_path, name)
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
        path = self._path(name)
        with self._lock, contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            os.replace(path, self._quarantine / name)
            self._total_bytes -= size

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
        """Delete blob ``name``; return True if it existed (its bytes leave the total)."""
        path = self._path(name)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return False
            self._total_bytes -= size
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
