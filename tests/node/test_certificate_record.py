"""Certificate records: the payload is stored only where the block cannot rebuild it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus import codec
from consensus.certificate import QuorumCertificate, compute_certificate
from consensus.crypto import compute_hash, compute_public_key
from consensus.crypto import compute_seed_from_label as seed_of
from consensus.votes import VoteKind, compute_vote
from ledger.block import Block, compute_block
from ledger.tx import TxKind, compute_signed_tx, is_valid_tx_signature
from node.certificate_record import (
    CertificateRecordError,
    compute_certificate_record,
    get_record_certificate,
    get_record_payload,
)
from node.payload import compute_payload, compute_payload_txs, decode_payload

CHAIN = "record-test"
SEEDS = [seed_of(f"record-{i}") for i in range(7)]
PROPOSER = compute_public_key(SEEDS[0])


def _raw_transfer(i: int) -> bytes:
    return compute_signed_tx(SEEDS[i % 7], CHAIN, TxKind.TRANSFER, i, [PROPOSER, 1 + i])


def _certify(payload: bytes, seq: int = 9) -> QuorumCertificate:
    digest = compute_hash(payload)
    votes = [
        compute_vote(s, compute_public_key(s), CHAIN, VoteKind.PBFT_COMMIT, 1, seq, digest)
        for s in SEEDS
    ]
    return compute_certificate(1, seq, digest, votes)


def _execute(payload: bytes) -> Block:
    """Derive the ledger block from a payload the way a node executes it."""
    decoded = decode_payload(payload)
    txs = [tx for tx in compute_payload_txs(decoded) if is_valid_tx_signature(tx)]
    return compute_block(
        CHAIN,
        9,
        b"\x01" * 32,
        b"\x02" * 32,
        0,
        txs,
        proposer=decoded.proposer,
        timestamp_ms=decoded.timestamp_ms,
    )


def test_record_of_a_rebuildable_payload_holds_only_the_certificate() -> None:
    payload = compute_payload(1_700_000_000_123, PROPOSER, [_raw_transfer(i) for i in range(5)])
    qc = _certify(payload)
    block = _execute(payload)
    record = compute_certificate_record(qc, payload, decode_payload(payload), block)
    assert len(codec.decode(record)) == 1
    assert len(record) < len(codec.encode([qc.to_wire(), payload]))
    assert get_record_certificate(record) == qc
    rebuilt = get_record_payload(record, block.encode())
    assert rebuilt == payload
    assert compute_hash(rebuilt) == qc.digest


def _bad_signature(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


@pytest.mark.parametrize(
    "raws",
    [
        pytest.param([_raw_transfer(1), _bad_signature(_raw_transfer(2))], id="bad-signature"),
        pytest.param([_raw_transfer(1), _raw_transfer(1)], id="duplicate"),
        pytest.param([_raw_transfer(1), b"\x00not a transaction"], id="undecodable"),
        pytest.param([_raw_transfer(1), 7], id="not-bytes"),
    ],
)
def test_payload_the_block_does_not_rebuild_is_kept_whole(raws: list[Any]) -> None:
    payload = compute_payload(5, PROPOSER, raws)
    qc = _certify(payload)
    block = _execute(payload)
    assert len(block.txs) == 1  # execution dropped one transaction
    record = compute_certificate_record(qc, payload, decode_payload(payload), block)
    assert len(codec.decode(record)) == 2
    assert get_record_payload(record, block.encode()) == payload
    assert get_record_certificate(record) == qc


def test_null_block_keeps_its_empty_payload() -> None:
    qc = _certify(b"")
    block = _execute(b"")
    record = compute_certificate_record(qc, b"", decode_payload(b""), block)
    assert get_record_payload(record, block.encode()) == b""


def test_records_that_carry_the_payload_still_read() -> None:
    payload = compute_payload(7, PROPOSER, [_raw_transfer(3)])
    qc = _certify(payload)
    record = codec.encode([qc.to_wire(), payload])
    assert get_record_certificate(record) == qc
    assert get_record_payload(record, b"unused when the record holds the payload") == payload


@pytest.mark.parametrize(
    "record",
    [
        b"\xff\xff garbage",
        codec.encode([]),
        codec.encode([1, 2, 3]),
        codec.encode(["qc", 5]),
    ],
)
def test_malformed_records_raise(record: bytes) -> None:
    with pytest.raises(ValueError):
        get_record_certificate(record)
    with pytest.raises(ValueError):
        get_record_payload(record, b"")


@pytest.mark.parametrize(
    "block_bytes",
    [
        b"\xff garbage",
        codec.encode([1]),
        codec.encode([["header"], [b"tx"]]),
        codec.encode([[], [1]]),
    ],
)
def test_malformed_stored_block_raises_record_error(block_bytes: bytes) -> None:
    record = codec.encode([_certify(b"x").to_wire()])
    with pytest.raises(CertificateRecordError):
        get_record_payload(record, block_bytes)


def test_certificate_encoded_once_is_its_wire_encoding() -> None:
    qc = _certify(b"payload")
    encoded = qc.get_encoded_wire()
    assert encoded == codec.encode(qc.to_wire())
    assert qc.get_encoded_wire() is encoded
    assert QuorumCertificate.from_wire(codec.decode(encoded)) == qc


_EXACT_PAYLOAD = compute_payload(1_700_000_000_123, PROPOSER, [_raw_transfer(i) for i in range(3)])


@given(st.integers(min_value=0), st.integers(0, 255), st.integers(0, 3))
def test_a_payload_is_exact_iff_its_parts_rebuild_it(where: int, byte: int, cut: int) -> None:
    """``is_exact`` (what lets a record leave the payload out) against a rebuild,
    over payloads with one byte changed and some bytes cut."""
    data = bytearray(_EXACT_PAYLOAD)
    data[where % len(data)] = byte
    data = data[: len(data) - cut]
    decoded = decode_payload(bytes(data))
    rebuilt = compute_payload(decoded.timestamp_ms, decoded.proposer, list(decoded.raw_txs))
    assert decoded.is_exact == (rebuilt == bytes(data))


@pytest.mark.parametrize(
    "value",
    [
        ["dmchain/payload/v1", 5, PROPOSER, [b"a", 7, b"b"]],
        ["dmchain/payload/v1", 5, PROPOSER, [b"a"], b"extra"],
        ["dmchain/payload/v1", True, PROPOSER, [b"a"]],
        ["another/domain", 5, PROPOSER, [b"a"]],
    ],
)
def test_payloads_that_do_not_rebuild_are_not_exact(value: list[Any]) -> None:
    assert decode_payload(codec.encode(value)).is_exact is False
    assert decode_payload(compute_payload(5, PROPOSER, [b"a", b"b"])).is_exact is True
