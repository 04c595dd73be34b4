"""Chunked AES-GCM: round trips, chunk boundaries, and every kind of tampering."""

from __future__ import annotations

import hashlib
import io

import pytest

from consensus.crypto import compute_hash
from pre.aead import (
    HEADER_SIZE,
    TAG_SIZE,
    AeadError,
    compute_header,
    compute_sealed_manifest,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    get_header,
    get_manifest,
)
from pre.commitment import compute_key_commitment, get_commitment_parts

KEY = bytes(range(32))
NONCE = b"\x01" * 8
CS = 64


def _chunks(blob: bytes, chunk_size: int = CS) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    step = chunk_size + TAG_SIZE
    return [body[i : i + step] for i in range(0, len(body), step)]


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 3 * CS, 3 * CS + 7])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    plain = bytes((i * 7) % 256 for i in range(size))
    blob, result = encrypt_bytes(KEY, NONCE, plain, CS)
    assert decrypt_bytes(KEY, blob) == plain
    assert result.content_hash == hashlib.sha256(plain).digest()
    assert result.cipher_hash == hashlib.sha256(blob).digest()
    assert result.plain_size == size
    assert result.cipher_size == len(blob)
    assert result.chunk_count == max(1, -(-size // CS))
    assert len(blob) == HEADER_SIZE + size + TAG_SIZE * result.chunk_count
    assert len(result.commitment) == 64
    assert get_commitment_parts(result.commitment)[0] == compute_key_commitment(KEY)
    assert result.plain_chunk_hashes[0] == compute_hash(plain[:CS])


def test_stream_round_trip_matches_bytes() -> None:
    plain = bytes(range(256)) * 40
    src, dst = io.BytesIO(plain), io.BytesIO()
    sealed = encrypt_stream(KEY, NONCE, src, dst, CS)
    blob, same = encrypt_bytes(KEY, NONCE, plain, CS)
    assert dst.getvalue() == blob
    assert sealed == same
    out = io.BytesIO()
    opened = decrypt_stream(KEY, io.BytesIO(blob), out)
    assert out.getvalue() == plain
    assert opened.content_hash == sealed.content_hash
    assert opened.chunk_count == sealed.chunk_count


def test_wrong_key_fails() -> None:
    blob, _ = encrypt_bytes(KEY, NONCE, b"secret data" * 20, CS)
    with pytest.raises(AeadError, match="chunk 0 failed authentication"):
        decrypt_bytes(bytes(32), blob)


def test_swapped_chunks_fail() -> None:
    blob, _ = encrypt_bytes(KEY, NONCE, bytes(range(200)) * 2, CS)
    chunks = _chunks(blob)
    chunks[0], chunks[1] = chunks[1], chunks[0]
    with pytest.raises(AeadError, match="chunk 0"):
        decrypt_bytes(KEY, blob[:HEADER_SIZE] + b"".join(chunks))


def test_truncation_at_chunk_boundary_fails() -> None:
    blob, _ = encrypt_bytes(KEY, NONCE, bytes(5 * CS), CS)
    chunks = _chunks(blob)
    with pytest.raises(AeadError, match="chunk 3 failed"):
        decrypt_bytes(KEY, blob[:HEADER_SIZE] + b"".join(chunks[:4]))


def test_appended_chunk_fails() -> None:
    blob, _ = encrypt_bytes(KEY, NONCE, bytes(2 * CS), CS)
    chunks = _chunks(blob)
    with pytest.raises(AeadError):
        decrypt_bytes(KEY, blob + chunks[0])


def test_flipped_bit_fails_and_header_checked() -> None:
    blob, _ = encrypt_bytes(KEY, NONCE, bytes(3 * CS), CS)
    tampered = bytearray(blob)
    tampered[HEADER_SIZE + CS + 20] ^= 1
    with pytest.raises(AeadError, match="chunk 1 failed"):
        decrypt_bytes(KEY, bytes(tampered))
    bad_nonce = bytearray(blob)
    bad_nonce[10] ^= 1
    with pytest.raises(AeadError):
        decrypt_bytes(KEY, bytes(bad_nonce))
    with pytest.raises(AeadError, match="not a dmchain"):
        decrypt_bytes(KEY, b"XXXX" + blob[4:])
    with pytest.raises(AeadError, match="no complete final chunk"):
        decrypt_bytes(KEY, blob[:HEADER_SIZE])


def test_bad_arguments_rejected() -> None:
    with pytest.raises(AeadError, match="32 bytes"):
        encrypt_bytes(b"short", NONCE, b"x")
    with pytest.raises(AeadError, match="asset nonce"):
        compute_header(CS, b"x")
    with pytest.raises(AeadError, match="chunk size"):
        compute_header(1, NONCE)
    assert get_header(compute_header(CS, NONCE)).chunk_size == CS


def test_manifest_round_trip_and_tamper() -> None:
    _, result = encrypt_bytes(KEY, NONCE, bytes(3 * CS + 1), CS)
    sealed = compute_sealed_manifest(KEY, result.header, result.plain_chunk_hashes)
    assert get_manifest(KEY, result.header, sealed) == result.plain_chunk_hashes
    with pytest.raises(AeadError, match="manifest failed"):
        get_manifest(bytes(32), result.header, sealed)
    with pytest.raises(AeadError, match="manifest failed"):
        get_manifest(KEY, result.header, sealed[:-1] + bytes([sealed[-1] ^ 1]))
