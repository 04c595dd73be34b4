"""Proof that an encrypted asset does not match its on-chain commitment.

A consumer that received the symmetric key under a grant and found a chunk
that fails to decrypt, or decrypts to bytes other than the committed plain
chunk, publishes a dispute proof. Every validator checks it with
:func:`get_dispute_error`, which is pure, deterministic and bounded and never
raises on garbage input.

Proof (canonical codec dict, at most MAX_PROOF_SIZE bytes)::

    {"v": 1, "key": 32 B, "header": 16 B, "index": int, "count": int,
     "cipher_chunk": bytes, "plain_hash": 32 B, "path": [32 B, ...]}

A valid proof reveals the asset key, and therefore the asset, to everyone:
it is meant for a provider that published data inconsistent with its record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from consensus.codec import CodecError, decode, encode
from consensus.crypto import DIGEST_SIZE, compute_hash
from pre.aead import (
    HEADER_SIZE,
    KEY_SIZE,
    MAX_CHUNKS,
    TAG_SIZE,
    AeadError,
    compute_decrypted_chunk,
    get_header,
    read_exact,
    read_header,
)
from pre.commitment import (
    MAX_PATH_LENGTH,
    CommitmentError,
    compute_chunk_root,
    compute_key_commitment,
    compute_leaf_from_chunk,
    compute_merkle_path,
    compute_root_from_path,
    compute_tree_root,
    get_commitment_parts,
)

MAX_PROOF_SIZE = 64 * 1024
PROOF_VERSION = 1
_PROOF_KEYS = frozenset(
    {"v", "key", "header", "index", "count", "cipher_chunk", "plain_hash", "path"}
)


class DisputeError(ValueError):
    """Raised on the consumer side when no dispute proof can be built."""


@dataclass(frozen=True)
class BadChunk:
    """The first chunk of a downloaded asset that does not match its commitment."""

    index: int
    cipher_chunk: bytes
    plain_chunk_hash: bytes
    header: bytes
    leaves: tuple[bytes, ...]
    reason: str


def compute_dispute_proof(
    key: bytes,
    header: bytes,
    leaves: Sequence[bytes],
    index: int,
    cipher_chunk: bytes,
    plain_chunk_hash: bytes,
) -> bytes:
    """Return the encoded dispute proof for chunk ``index`` of the asset.

    ``leaves`` are all chunk leaves of the asset (from :func:`find_first_bad_chunk`).
    Raises DisputeError if the proof would exceed MAX_PROOF_SIZE.
    """
    try:
        path = compute_merkle_path(leaves, index)
        proof = encode(
            {
                "v": PROOF_VERSION,
                "key": bytes(key),
                "header": bytes(header),
                "index": index,
                "count": len(leaves),
                "cipher_chunk": bytes(cipher_chunk),
                "plain_hash": bytes(plain_chunk_hash),
                "path": path,
            }
        )
    except (CommitmentError, CodecError) as exc:
        raise DisputeError(f"cannot build dispute proof: {exc}") from exc
    if len(proof) > MAX_PROOF_SIZE:
        raise DisputeError(f"dispute proof is {len(proof)} bytes, limit {MAX_PROOF_SIZE}")
    return proof


def _is_bytes(value: Any, size: int | None = None) -> bool:
    return isinstance(value, bytes) and (size is None or len(value) == size)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _get_shape_error(fields: Any) -> str | None:
    if not isinstance(fields, dict) or set(fields) != _PROOF_KEYS:
        return "proof must be a dict with exactly the dispute proof fields"
    if fields["v"] != PROOF_VERSION or not _is_int(fields["v"]):
        return f"unsupported proof version {fields['v']!r}"
    if not _is_bytes(fields["key"], KEY_SIZE):
        return f"key must be {KEY_SIZE} bytes"
    if not _is_bytes(fields["header"], HEADER_SIZE):
        return f"header must be {HEADER_SIZE} bytes"
    if not _is_int(fields["index"]) or not _is_int(fields["count"]):
        return "index and count must be integers"
    if not 1 <= fields["count"] <= MAX_CHUNKS:
        return f"chunk count must be in 1..{MAX_CHUNKS}"
    if not 0 <= fields["index"] < fields["count"]:
        return "chunk index is not below the chunk count"
    if not _is_bytes(fields["cipher_chunk"]):
        return "cipher_chunk must be bytes"
    if not _is_bytes(fields["plain_hash"], DIGEST_SIZE):
        return f"plain_hash must be {DIGEST_SIZE} bytes"
    path = fields["path"]
    if not isinstance(path, list) or len(path) > MAX_PATH_LENGTH:
        return f"path must be a list of at most {MAX_PATH_LENGTH} hashes"
    if not all(_is_bytes(p, DIGEST_SIZE) for p in path):
        return f"every path entry must be {DIGEST_SIZE} bytes"
    return None


def get_dispute_error(proof: bytes, asset_commitment: bytes, content_hash: bytes) -> str | None:
    """Return None iff ``proof`` shows the asset is inconsistent with its commitment.

    Valid means: the revealed key matches the key commitment, the chunk is
    in the committed chunk root at the claimed position, and the chunk either
    fails to decrypt or decrypts to bytes whose hash differs from the
    committed plain-chunk hash. Otherwise returns the reason. Pure; never
    raises, whatever the input.
    """
    if not _is_bytes(content_hash, DIGEST_SIZE):
        return f"content hash must be {DIGEST_SIZE} bytes"
    try:
        key_commitment, chunk_root = get_commitment_parts(asset_commitment)
    except CommitmentError as exc:
        return f"asset commitment is malformed: {exc}"
    if not isinstance(proof, bytes):
        return "proof must be bytes"
    if len(proof) > MAX_PROOF_SIZE:
        return f"proof is {len(proof)} bytes, limit {MAX_PROOF_SIZE}"
    try:
        fields = decode(proof, max_size=MAX_PROOF_SIZE)
    except CodecError as exc:
        return f"proof does not decode: {exc}"
    shape_error = _get_shape_error(fields)
    if shape_error is not None:
        return shape_error
    key: bytes = fields["key"]
    header: bytes = fields["header"]
    index: int = fields["index"]
    count: int = fields["count"]
    cipher_chunk: bytes = fields["cipher_chunk"]
    plain_hash: bytes = fields["plain_hash"]
    if compute_key_commitment(key) != key_commitment:
        return "key does not match the asset's key commitment"
    try:
        chunk_size = get_header(header).chunk_size
    except AeadError as exc:
        return f"header is invalid: {exc}"
    is_final = index == count - 1
    if not is_final and len(cipher_chunk) != chunk_size + TAG_SIZE:
        return "a non-final chunk must hold exactly chunk_size + 16 bytes"
    if not TAG_SIZE <= len(cipher_chunk) <= chunk_size + TAG_SIZE:
        return "final chunk length is impossible for this chunk size"
    leaf = compute_leaf_from_chunk(index, cipher_chunk, plain_hash)
    tree_root = compute_root_from_path(leaf, index, count, fields["path"])
    if tree_root is None:
        return "Merkle path has the wrong shape for this index and chunk count"
    if compute_chunk_root(header, content_hash, count, tree_root) != chunk_root:
        return "chunk is not in the asset's committed chunk root"
    try:
        plain = compute_decrypted_chunk(key, header, index, is_final, cipher_chunk)
    except AeadError:
        return None
    if compute_hash(plain) != plain_hash:
        return None
    return "chunk decrypts to its committed plaintext hash: nothing to dispute"


def find_first_bad_chunk(
    key: bytes,
    src: BinaryIO,
    plain_chunk_hashes: Sequence[bytes],
    asset_commitment: bytes,
    content_hash: bytes,
) -> BadChunk | None:
    """Scan a downloaded blob and return its first chunk that contradicts the commitment.

    Returns None when every chunk decrypts to its committed plain hash and the
    whole plaintext hashes to ``content_hash``. Raises DisputeError when the
    mismatch cannot be proved with a chunk proof: the key is not the
    committed one, the blob is structurally broken, or blob and manifest do
    not reproduce the committed chunk root; or when every chunk matches but
    the content hash does not. Holds two chunks and one leaf per chunk in memory.
    """
    try:
        key_commitment, chunk_root = get_commitment_parts(asset_commitment)
        header = read_header(src)
        chunk_size = get_header(header).chunk_size
    except (CommitmentError, AeadError) as exc:
        raise DisputeError(str(exc)) from exc
    if compute_key_commitment(key) != key_commitment:
        raise DisputeError("key does not match the asset's key commitment")
    count = len(plain_chunk_hashes)
    if not 1 <= count <= MAX_CHUNKS:
        raise DisputeError(f"manifest must list 1..{MAX_CHUNKS} chunk hashes")
    step = chunk_size + TAG_SIZE
    leaves: list[bytes] = []
    content_hasher = hashlib.sha256()
    first_bad: tuple[int, bytes, str] | None = None
    for index in range(count):
        cipher_chunk = read_exact(src, step)
        is_final = index == count - 1
        if len(cipher_chunk) < TAG_SIZE or (not is_final and len(cipher_chunk) != step):
            raise DisputeError(f"blob ends at chunk {index} but the manifest lists {count}")
        plain_hash = plain_chunk_hashes[index]
        leaves.append(compute_leaf_from_chunk(index, cipher_chunk, plain_hash))
        if first_bad is not None:
            continue
        try:
            plain = compute_decrypted_chunk(key, header, index, is_final, cipher_chunk)
        except AeadError:
            first_bad = (index, cipher_chunk, "chunk fails to decrypt")
            continue
        if compute_hash(plain) != plain_hash:
            first_bad = (index, cipher_chunk, "chunk decrypts to other bytes than committed")
            continue
        content_hasher.update(plain)
    if src.read(1):
        raise DisputeError(f"blob holds more than the {count} chunks the manifest lists")
    tree_root = compute_tree_root(leaves)
    if compute_chunk_root(header, content_hash, count, tree_root) != chunk_root:
        raise DisputeError("blob and manifest do not reproduce the committed chunk root")
    if first_bad is None:
        if content_hasher.digest() != content_hash:
            raise DisputeError("every chunk matches its commitment but the content hash differs")
        return None
    index, cipher_chunk, reason = first_bad
    return BadChunk(
        index=index,
        cipher_chunk=cipher_chunk,
        plain_chunk_hash=bytes(plain_chunk_hashes[index]),
        header=header,
        leaves=tuple(leaves),
        reason=reason,
    )


def compute_dispute_proof_for(key: bytes, bad: BadChunk) -> bytes:
    """Return the encoded dispute proof for a chunk found by :func:`find_first_bad_chunk`."""
    return compute_dispute_proof(
        key, bad.header, bad.leaves, bad.index, bad.cipher_chunk, bad.plain_chunk_hash
    )
