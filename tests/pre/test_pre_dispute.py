"""Dispute proofs: a cheating provider is provable, an honest one is not."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import decode, encode
from consensus.crypto import compute_hash
from pre.aead import HEADER_SIZE, TAG_SIZE, encrypt_bytes
from pre.commitment import CommitmentBuilder
from pre.dispute import (
    MAX_PROOF_SIZE,
    DisputeError,
    compute_dispute_proof,
    compute_dispute_proof_for,
    find_first_bad_chunk,
    get_dispute_error,
)

KEY = bytes(range(1, 33))
NONCE = b"\x07" * 8
CS = 256


def _chunks(blob: bytes) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    step = CS + TAG_SIZE
    return [body[i : i + step] for i in range(0, len(body), step)]


def _cheat(
    committed: bytes, delivered_blob: bytes, header: bytes
) -> tuple[bytes, bytes, list[bytes]]:
    """Commit to the plain chunks of ``committed`` but over the chunks of ``delivered_blob``."""
    plain_hashes = [compute_hash(committed[i : i + CS]) for i in range(0, len(committed), CS)]
    builder = CommitmentBuilder(header, 1 << 20)
    for cipher_chunk, plain_hash in zip(_chunks(delivered_blob), plain_hashes, strict=True):
        builder.process_chunk(cipher_chunk, plain_hash)
    content_hash = compute_hash(committed)
    return builder.compute_commitment(KEY, content_hash), content_hash, plain_hashes


@pytest.fixture
def cheating_asset() -> dict[str, object]:
    committed = bytes((i * 13) % 251 for i in range(CS * 9 + 50))
    delivered = bytearray(committed)
    delivered[CS * 4 + 3] ^= 0xFF  # chunk 4 differs
    blob, sealed = encrypt_bytes(KEY, NONCE, bytes(delivered), CS)
    commitment, content_hash, plain_hashes = _cheat(committed, blob, sealed.header)
    bad = find_first_bad_chunk(KEY, io.BytesIO(blob), plain_hashes, commitment, content_hash)
    assert bad is not None
    return {
        "blob": blob,
        "commitment": commitment,
        "content_hash": content_hash,
        "bad": bad,
        "proof": compute_dispute_proof_for(KEY, bad),
    }


def test_valid_proof_for_different_bytes(cheating_asset: dict[str, Any]) -> None:
    bad = cheating_asset["bad"]
    assert bad.index == 4
    assert "other bytes" in bad.reason
    proof = cheating_asset["proof"]
    assert len(proof) <= MAX_PROOF_SIZE
    assert (
        get_dispute_error(proof, cheating_asset["commitment"], cheating_asset["content_hash"])
        is None
    )


def test_valid_proof_for_chunk_that_does_not_decrypt() -> None:
    plain = bytes(CS * 3)
    blob, sealed = encrypt_bytes(KEY, NONCE, plain, CS)
    chunks = _chunks(blob)
    chunks[1] = bytes(len(chunks[1]))  # garbage in place of chunk 1
    bad_blob = blob[:HEADER_SIZE] + b"".join(chunks)
    commitment, content_hash, plain_hashes = _cheat(plain, bad_blob, sealed.header)
    bad = find_first_bad_chunk(KEY, io.BytesIO(bad_blob), plain_hashes, commitment, content_hash)
    assert bad is not None and bad.index == 1 and "fails to decrypt" in bad.reason
    assert get_dispute_error(compute_dispute_proof_for(KEY, bad), commitment, content_hash) is None


def _tamper(proof: bytes, **changes: object) -> bytes:
    fields = decode(proof)
    fields.update(changes)
    return encode(fields)


def test_tampered_proofs_refused(cheating_asset: dict[str, Any]) -> None:
    proof = cheating_asset["proof"]
    commitment = cheating_asset["commitment"]
    content_hash = cheating_asset["content_hash"]
    fields = decode(proof)

    def err(p: bytes) -> str:
        return str(get_dispute_error(p, commitment, content_hash))

    assert "key commitment" in err(_tamper(proof, key=bytes(32)))
    assert "not in the asset's committed chunk root" in err(_tamper(proof, index=3))
    bad_path = [bytes(32), *fields["path"][1:]]
    assert "not in the asset's committed chunk root" in err(_tamper(proof, path=bad_path))
    assert "wrong shape" in err(_tamper(proof, path=fields["path"][:-1]))
    assert "not in the asset's committed chunk root" in err(_tamper(proof, plain_hash=bytes(32)))
    assert "content hash" in str(get_dispute_error(proof, commitment, b"short"))
    other_content = str(get_dispute_error(proof, commitment, bytes(32)))
    assert "not in the asset's committed chunk root" in other_content
    short_commitment = str(get_dispute_error(proof, commitment[:63], content_hash))
    assert "commitment is malformed" in short_commitment
    assert "does not decode" in err(proof[:-1])


def test_good_chunk_is_not_a_dispute(cheating_asset: dict[str, Any]) -> None:
    bad = cheating_asset["bad"]
    blob = cheating_asset["blob"]
    good_index = 2
    good_chunk = _chunks(blob)[good_index]
    committed_plain_hash = compute_hash(
        bytes((i * 13) % 251 for i in range(CS * 9 + 50))[good_index * CS : (good_index + 1) * CS]
    )
    proof = compute_dispute_proof(
        KEY, bad.header, bad.leaves, good_index, good_chunk, committed_plain_hash
    )
    reason = get_dispute_error(proof, cheating_asset["commitment"], cheating_asset["content_hash"])
    assert reason is not None and "nothing to dispute" in reason


def test_honest_asset_scans_clean_and_yields_no_valid_proof() -> None:
    plain = bytes(range(256)) * 11
    blob, sealed = encrypt_bytes(KEY, NONCE, plain, CS)
    hashes = list(sealed.plain_chunk_hashes)
    assert (
        find_first_bad_chunk(KEY, io.BytesIO(blob), hashes, sealed.commitment, sealed.content_hash)
        is None
    )
    builder = CommitmentBuilder(sealed.header, 1 << 20)
    for chunk, h in zip(_chunks(blob), hashes, strict=True):
        builder.process_chunk(chunk, h)
    for index in (0, len(hashes) - 1):
        proof = compute_dispute_proof(
            KEY, sealed.header, builder.leaves, index, _chunks(blob)[index], hashes[index]
        )
        reason = get_dispute_error(proof, sealed.commitment, sealed.content_hash)
        assert reason is not None and "nothing to dispute" in reason


def test_scan_refuses_what_it_cannot_prove() -> None:
    plain = bytes(CS * 2)
    blob, sealed = encrypt_bytes(KEY, NONCE, plain, CS)
    hashes = list(sealed.plain_chunk_hashes)
    with pytest.raises(DisputeError, match="key commitment"):
        find_first_bad_chunk(
            bytes(32), io.BytesIO(blob), hashes, sealed.commitment, sealed.content_hash
        )
    with pytest.raises(DisputeError, match="do not reproduce"):
        find_first_bad_chunk(
            KEY, io.BytesIO(blob), [bytes(32), hashes[1]], sealed.commitment, sealed.content_hash
        )
    with pytest.raises(DisputeError, match="more than"):
        find_first_bad_chunk(
            KEY, io.BytesIO(blob), hashes[:1], sealed.commitment, sealed.content_hash
        )


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=80), st.binary(max_size=40))
def test_never_raises_on_random_bytes(proof: bytes, commitment: bytes, content_hash: bytes) -> None:
    assert isinstance(get_dispute_error(proof, commitment, content_hash), str)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "v": st.one_of(st.just(1), st.integers(), st.booleans()),
            "key": st.binary(min_size=0, max_size=40),
            "header": st.binary(min_size=16, max_size=16),
            "index": st.one_of(st.integers(min_value=-2, max_value=5), st.booleans()),
            "count": st.integers(min_value=-2, max_value=1 << 21),
            "cipher_chunk": st.binary(max_size=300),
            "plain_hash": st.binary(min_size=31, max_size=33),
            "path": st.lists(st.binary(min_size=31, max_size=33), max_size=70),
        }
    )
)
def test_never_raises_on_well_formed_garbage(fields: dict[str, Any]) -> None:
    commitment = bytes(64)
    assert isinstance(get_dispute_error(encode(fields), commitment, bytes(32)), str)


def _module_cheat() -> tuple[bytes, bytes, bytes]:
    committed = bytes(CS * 5 + 9)
    delivered = bytearray(committed)
    delivered[-1] = 1
    blob, sealed = encrypt_bytes(KEY, NONCE, bytes(delivered), CS)
    commitment, content_hash, plain_hashes = _cheat(committed, blob, sealed.header)
    bad = find_first_bad_chunk(KEY, io.BytesIO(blob), plain_hashes, commitment, content_hash)
    assert bad is not None and bad.index == 5
    return compute_dispute_proof_for(KEY, bad), commitment, content_hash


VALID_PROOF, VALID_COMMITMENT, VALID_CONTENT_HASH = _module_cheat()


def test_final_chunk_proof_is_valid() -> None:
    assert get_dispute_error(VALID_PROOF, VALID_COMMITMENT, VALID_CONTENT_HASH) is None


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.binary(max_size=300),
    st.text(max_size=10),
    st.lists(st.binary(max_size=40), max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(decode(VALID_PROOF))), _ANY_VALUE)
def test_one_field_mutated_never_raises(name: str, value: object) -> None:
    fields = decode(VALID_PROOF)
    changed = fields[name] != value or type(fields[name]) is not type(value)
    fields[name] = value
    result = get_dispute_error(encode(fields), VALID_COMMITMENT, VALID_CONTENT_HASH)
    if changed:
        assert isinstance(result, str)
