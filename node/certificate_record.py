"""The certificate record a node stores beside each executed block.

A PBFT commit certificate signs the digest of the agreed payload; the ledger
block is derived from that payload (``node/payload.py``). To serve a block to
a peer that syncs, a node needs the certificate and the exact payload bytes.

The block already holds the payload's proposer, timestamp and raw
transactions. When those rebuild the payload byte for byte (every block whose
transactions all decoded, verified and appear once), the record holds only
the certificate, ``[qc]``, and the payload is rebuilt from the stored block
on demand. Any other payload (a null block, a transaction dropped at
execution, a non-canonical encoding) is kept whole: ``[qc, payload]``. Records
of either form read back; storing the payload only where it is needed keeps
it out of the ledger twice (it was about 39 % of the ledger's bytes).
"""

from __future__ import annotations

from consensus import codec
from consensus.certificate import QuorumCertificate
from ledger.block import Block, Header
from ledger.errors import BlockError
from node.payload import Payload, compute_payload


class CertificateRecordError(ValueError):
    """A stored certificate record or the block beside it is malformed."""


def compute_certificate_record(
    qc: QuorumCertificate, payload: bytes, decoded: Payload, block: Block
) -> bytes:
    """Return the record to store for ``block``, executed from ``payload`` under ``qc``;
    ``decoded`` is ``decode_payload(payload)``.

    The payload is left out exactly when :func:`get_record_payload` rebuilds
    it, byte for byte, from the encoding of ``block``: when the payload is
    exact (:class:`node.payload.Payload`) and the block kept its timestamp,
    proposer and every one of its transactions, in order. Nothing is encoded
    again to find out.
    """
    header = block.header
    rebuildable = (
        decoded.is_exact
        and header.timestamp_ms == decoded.timestamp_ms
        and header.proposer == decoded.proposer
        and [tx.raw for tx in block.txs] == list(decoded.raw_txs)
    )
    if rebuildable:
        return codec.encode([qc.get_encoded_wire()])
    return codec.encode([qc.get_encoded_wire(), payload])


def _decode_record(record: bytes) -> tuple[object, bytes | None]:
    try:
        value = codec.decode(record)
    except codec.CodecError as exc:
        raise CertificateRecordError(f"undecodable certificate record: {exc}") from exc
    if not isinstance(value, list) or len(value) not in (1, 2):
        raise CertificateRecordError("certificate record must be [qc] or [qc, payload]")
    if len(value) == 1:
        return value[0], None
    if not isinstance(value[1], bytes):
        raise CertificateRecordError("certificate record payload must be bytes")
    return value[0], value[1]


def get_record_certificate(record: bytes) -> QuorumCertificate:
    """Return the certificate of a stored record (either form).

    Raises CertificateRecordError or CertificateError when it is malformed.
    """
    return QuorumCertificate.from_wire(_decode_record(record)[0])


def get_record_payload(record: bytes, block_bytes: bytes) -> bytes:
    """Return the exact payload the block was executed from.

    ``block_bytes`` is the stored encoding of the same block
    (:meth:`ledger.block.Block.encode`); it is decoded only as far as the
    header and the raw transactions, not transaction by transaction. Raises
    CertificateRecordError when the record or the block is malformed.
    """
    _qc, payload = _decode_record(record)
    if payload is not None:
        return payload
    try:
        block = codec.decode(block_bytes)
    except codec.CodecError as exc:
        raise CertificateRecordError(f"undecodable stored block: {exc}") from exc
    if not isinstance(block, list) or len(block) != 2 or not isinstance(block[1], list):
        raise CertificateRecordError("malformed stored block")
    raws = block[1]
    if not all(isinstance(raw, bytes) for raw in raws):
        raise CertificateRecordError("stored block holds a transaction that is not bytes")
    try:
        header = Header.from_wire(block[0])
    except BlockError as exc:
        raise CertificateRecordError(f"malformed stored block header: {exc}") from exc
    return compute_payload(header.timestamp_ms, header.proposer, raws)
