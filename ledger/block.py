"""Blocks and headers.

A header commits to: chain id, height, parent block hash, the Merkle root of
the transaction hashes (:mod:`ledger.merkle`), the state digest *before* this
block's transactions (the digest after the parent, like Tendermint's app hash:
the leader proposes before executing), the epoch (``height // epoch_length``),
the proposer's consensus key, an informational proposer timestamp that no rule
reads, and the optional last settled checkpoint digest (empty when none).

``block_hash = SHA-256(canonical header encoding)``. The PBFT certificate is
stored beside the block by :mod:`ledger.chain` and is not part of the hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus import codec
from consensus.crypto import compute_hash, compute_hash_parts

from ledger.errors import BlockError, TxError
from ledger.merkle import compute_merkle_root
from ledger.tx import Tx, decode_tx

HEADER_DOMAIN = "dmchain/header/v1"
MAX_BLOCK_TXS = 20_000
MAX_BLOCK_SIZE = codec.MAX_ENCODED_SIZE  # the encoded block must fit the codec's bound
MAX_BLOCK_TX_BYTES = MAX_BLOCK_SIZE - 64 * 1024  # room for the header and list framing


@dataclass(frozen=True, slots=True)
class Header:
    """A block header; see the module docstring for what each field commits to."""

    chain_id: str
    height: int
    parent_hash: bytes
    tx_root: bytes
    state_digest: bytes
    epoch: int
    proposer: bytes
    timestamp_ms: int = 0
    last_checkpoint: bytes = b""

    def to_wire(self) -> list[Any]:
        """Return the header as a codec-encodable list."""
        return [
            HEADER_DOMAIN,
            self.chain_id,
            self.height,
            self.parent_hash,
            self.tx_root,
            self.state_digest,
            self.epoch,
            self.proposer,
            self.timestamp_ms,
            self.last_checkpoint,
        ]

    def encode(self) -> bytes:
        """Return the canonical header encoding."""
        return codec.encode(self.to_wire())

    def block_hash(self) -> bytes:
        """Return the block hash (SHA-256 of the canonical header)."""
        return compute_hash(self.encode())

    @staticmethod
    def from_wire(value: Any) -> Header:
        """Parse :meth:`to_wire` output; raises BlockError when malformed."""
        if not isinstance(value, list) or len(value) != 10 or value[0] != HEADER_DOMAIN:
            raise BlockError("malformed header")
        _, chain_id, height, parent, root, digest, epoch, proposer, ts, ckpt = value
        ok = (
            isinstance(chain_id, str)
            and type(height) is int
            and height >= 0
            and isinstance(parent, bytes)
            and len(parent) == 32
            and isinstance(root, bytes)
            and len(root) == 32
            and isinstance(digest, bytes)
            and len(digest) == 32
            and type(epoch) is int
            and epoch >= 0
            and isinstance(proposer, bytes)
            and len(proposer) <= 32
            and type(ts) is int
            and ts >= 0
            and isinstance(ckpt, bytes)
            and len(ckpt) in (0, 32)
        )
        if not ok:
            raise BlockError("malformed header fields")
        return Header(chain_id, height, parent, root, digest, epoch, proposer, ts, ckpt)


@dataclass(frozen=True, slots=True)
class Block:
    """A header and its ordered transactions (decoded; ``raw`` bytes kept)."""

    header: Header
    txs: tuple[Tx, ...]
    _hash: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def block_hash(self) -> bytes:
        """Return the block hash (cached)."""
        if not self._hash:
            self._hash.append(self.header.block_hash())
        return self._hash[0]

    def encode(self) -> bytes:
        """Return the canonical block encoding."""
        return codec.encode([self.header.to_wire(), [tx.raw for tx in self.txs]])


def decode_block(data: bytes) -> Block:
    """Decode a block; raises BlockError on malformed input or any malformed transaction."""
    try:
        value = codec.decode(data, max_size=MAX_BLOCK_SIZE)
    except codec.CodecError as exc:
        raise BlockError(f"undecodable block: {exc}") from exc
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], list):
        raise BlockError("malformed block")
    header = Header.from_wire(value[0])
    if len(value[1]) > MAX_BLOCK_TXS:
        raise BlockError(f"block holds {len(value[1])} transactions, limit {MAX_BLOCK_TXS}")
    try:
        txs = tuple(decode_tx(raw) for raw in value[1])
    except TxError as exc:
        raise BlockError(f"block holds a malformed transaction: {exc}") from exc
    return Block(header, txs)


def compute_block_tx_bytes(txs: tuple[Tx, ...] | list[Tx]) -> int:
    """Return the bytes the transactions take in an encoded block (with framing)."""
    return sum(len(tx.raw) + 4 for tx in txs)


def compute_tx_root(txs: tuple[Tx, ...] | list[Tx]) -> bytes:
    """Return the Merkle root over the transactions' hashes."""
    return compute_merkle_root([tx.tx_hash for tx in txs])


def compute_block(
    chain_id: str,
    height: int,
    parent_hash: bytes,
    state_digest: bytes,
    epoch: int,
    txs: list[Tx],
    *,
    proposer: bytes = b"",
    timestamp_ms: int = 0,
    last_checkpoint: bytes = b"",
) -> Block:
    """Return a block over ``txs`` with its Merkle root filled in."""
    if len(txs) > MAX_BLOCK_TXS:
        raise BlockError(f"{len(txs)} transactions exceed the block limit {MAX_BLOCK_TXS}")
    if compute_block_tx_bytes(txs) > MAX_BLOCK_TX_BYTES:
        raise BlockError(f"transactions exceed the block size limit {MAX_BLOCK_TX_BYTES}")
    header = Header(
        chain_id,
        height,
        parent_hash,
        compute_tx_root(txs),
        state_digest,
        epoch,
        proposer,
        timestamp_ms,
        last_checkpoint,
    )
    return Block(header, tuple(txs))


def compute_checkpoint_digest(block_hash: bytes, state_digest: bytes) -> bytes:
    """Return the checkpoint digest that PoS validators sign for a block."""
    return compute_hash_parts(b"checkpoint", block_hash, state_digest)
