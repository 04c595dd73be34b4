"""Block payloads: what the PBFT leader proposes and the replicas agree on.

A payload is ``codec([PAYLOAD_DOMAIN, timestamp_ms, proposer, [raw tx, ...]])``.
The empty payload ``b""`` is the null block a new leader uses to fill a gap
after a view change. Every node turns a committed payload into the same
ledger block (:func:`compute_payload_txs` is deterministic: transactions that
do not decode are dropped in the same way everywhere), so the ledger block is
derived from, not carried beside, the agreed payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus import codec
from ledger.errors import TxError
from ledger.tx import Tx, decode_tx

PAYLOAD_DOMAIN = "dmchain/payload/v1"
PAYLOAD_OVERHEAD = 128


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload; ``raw_txs`` keep their order.

    ``is_exact`` is True iff ``compute_payload(timestamp_ms, proposer,
    list(raw_txs))`` gives back the decoded bytes: the payload was well formed
    and every item of its transaction list was bytes (the codec accepts only
    canonical encodings, so a value that decodes encodes to the same bytes).
    """

    timestamp_ms: int
    proposer: bytes
    raw_txs: tuple[bytes, ...]
    is_exact: bool = False


def compute_payload(timestamp_ms: int, proposer: bytes, raw_txs: list[bytes]) -> bytes:
    """Return the canonical payload bytes."""
    return codec.encode([PAYLOAD_DOMAIN, timestamp_ms, proposer, raw_txs])


def compute_payload_size(raw_txs_bytes: int, count: int) -> int:
    """Return an upper bound of the encoded size for ``count`` txs of total ``raw_txs_bytes``."""
    return PAYLOAD_OVERHEAD + raw_txs_bytes + 5 * count


def decode_payload(data: bytes) -> Payload:
    """Decode a committed payload; malformed payloads become an empty block.

    Never raises: a committed payload is agreed by the replicas, so every node
    must derive the same (possibly empty) block from it.
    """
    if not data:
        return Payload(0, b"", ())
    try:
        value = codec.decode(data)
    except codec.CodecError:
        return Payload(0, b"", ())
    if (
        not isinstance(value, list)
        or len(value) != 4
        or value[0] != PAYLOAD_DOMAIN
        or type(value[1]) is not int
        or value[1] < 0
        or not isinstance(value[2], bytes)
        or len(value[2]) > 32
        or not isinstance(value[3], list)
    ):
        return Payload(0, b"", ())
    raws = tuple(raw for raw in value[3] if type(raw) is bytes)
    return Payload(value[1], value[2], raws, is_exact=len(raws) == len(value[3]))


def compute_payload_txs(payload: Payload) -> list[Tx]:
    """Return the payload's transactions that decode, in order, without duplicates."""
    txs: list[Tx] = []
    seen: set[bytes] = set()
    for raw in payload.raw_txs:
        try:
            tx = decode_tx(raw)
        except TxError:
            continue
        if tx.tx_hash in seen:
            continue
        seen.add(tx.tx_hash)
        txs.append(tx)
    return txs
