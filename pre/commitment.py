"""What the chain stores about an encrypted asset besides its two hashes.

An asset record holds ``content_hash`` (SHA-256 of the plaintext),
``cipher_hash`` (SHA-256 of the ciphertext blob) and an opaque 64-byte
``commitment``::

    commitment = key_commitment (32 bytes) || chunk_root (32 bytes)

* ``key_commitment`` is a domain-separated hash of the 32-byte symmetric key,
  so a key revealed in a dispute can be checked against the record.
* ``chunk_root`` binds the blob header, the content hash, the chunk count and
  a Merkle tree over one leaf per chunk::

      leaf_i = H(tag, i, H(cipher_chunk_i), H(plain_chunk_i))

  The tree has the RFC 6962 shape (no duplicated nodes, an unpaired last node
  is promoted), so any chunk can be shown to belong to the asset with a path
  of at most ``ceil(log2(n))`` hashes.

Every function here is pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.crypto import DIGEST_SIZE, compute_hash, compute_hash_parts

KEY_COMMITMENT_SIZE = 32
CHUNK_ROOT_SIZE = 32
COMMITMENT_SIZE = KEY_COMMITMENT_SIZE + CHUNK_ROOT_SIZE
MAX_PATH_LENGTH = 64

_KEY_TAG = b"dmchain/pre/key-commitment/v1"
_LEAF_TAG = b"dmchain/pre/chunk-leaf/v1"
_NODE_TAG = b"dmchain/pre/chunk-node/v1"
_ROOT_TAG = b"dmchain/pre/chunk-root/v1"
_EMPTY_TAG = b"dmchain/pre/chunk-empty/v1"


class CommitmentError(ValueError):
    """Raised for a malformed commitment or an impossible Merkle request."""


def compute_key_commitment(key: bytes) -> bytes:
    """Return the 32-byte domain-separated hash that commits to ``key``."""
    return compute_hash_parts(_KEY_TAG, bytes(key))


def compute_leaf(index: int, cipher_chunk_hash: bytes, plain_chunk_hash: bytes) -> bytes:
    """Return the Merkle leaf for chunk ``index`` (its position is bound in the leaf)."""
    if index < 0 or index >= 1 << 64:
        raise CommitmentError(f"chunk index {index} out of range")
    return compute_hash_parts(
        _LEAF_TAG, index.to_bytes(8, "big"), cipher_chunk_hash, plain_chunk_hash
    )


def compute_leaf_from_chunk(index: int, cipher_chunk: bytes, plain_chunk_hash: bytes) -> bytes:
    """Return the leaf for ``index`` given the ciphertext chunk and committed plain hash."""
    return compute_leaf(index, compute_hash(cipher_chunk), plain_chunk_hash)


def _node(left: bytes, right: bytes) -> bytes:
    return compute_hash_parts(_NODE_TAG, left, right)


def _compute_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2 == 1:
            above.append(below[-1])
        levels.append(above)
    return levels


def compute_tree_root(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle root over ``leaves`` (RFC 6962 shape); a fixed tag when empty."""
    if not leaves:
        return compute_hash(_EMPTY_TAG)
    return _compute_levels(leaves)[-1][0]


def compute_merkle_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion path of ``leaves[index]``, bottom-up.

    Raises CommitmentError if ``index`` is not a position in ``leaves``.
    """
    if not 0 <= index < len(leaves):
        raise CommitmentError(f"chunk index {index} not in 0..{len(leaves) - 1}")
    path: list[bytes] = []
    position = index
    for level in _compute_levels(leaves)[:-1]:
        sibling = position ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        position >>= 1
    return path


def compute_root_from_path(
    leaf: bytes, index: int, count: int, path: Sequence[bytes]
) -> bytes | None:
    """Return the tree root implied by ``leaf`` at ``index`` of ``count`` and ``path``.

    Follows RFC 9162 section 2.1.3.2; returns None when the path has the wrong
    shape for (index, count), so a caller compares the result with the root.
    """
    if count < 1 or not 0 <= index < count or len(path) > MAX_PATH_LENGTH:
        return None
    fn = index
    sn = count - 1
    result = leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return result


def compute_chunk_root(header: bytes, content_hash: bytes, count: int, tree_root: bytes) -> bytes:
    """Return the 32-byte chunk root binding header, content hash, chunk count and tree."""
    if count < 0 or count >= 1 << 64:
        raise CommitmentError(f"chunk count {count} out of range")
    return compute_hash_parts(_ROOT_TAG, header, content_hash, count.to_bytes(8, "big"), tree_root)


def compute_commitment(key: bytes, chunk_root: bytes) -> bytes:
    """Return the 64-byte asset commitment ``key_commitment || chunk_root``."""
    if len(chunk_root) != CHUNK_ROOT_SIZE:
        raise CommitmentError(f"chunk root must be {CHUNK_ROOT_SIZE} bytes")
    return compute_key_commitment(key) + chunk_root


def get_commitment_parts(commitment: bytes) -> tuple[bytes, bytes]:
    """Return ``(key_commitment, chunk_root)``; raises CommitmentError on a wrong size."""
    if not isinstance(commitment, (bytes, bytearray)) or len(commitment) != COMMITMENT_SIZE:
        raise CommitmentError(f"commitment must be {COMMITMENT_SIZE} bytes")
    raw = bytes(commitment)
    return raw[:KEY_COMMITMENT_SIZE], raw[KEY_COMMITMENT_SIZE:]


class CommitmentBuilder:
    """Collects one leaf per chunk while an asset is encrypted or scanned.

    Memory is 32 bytes per chunk; the number of chunks is bounded by
    ``max_chunks``.
    """

    def __init__(self, header: bytes, max_chunks: int) -> None:
        self.header = bytes(header)
        self.max_chunks = max_chunks
        self.leaves: list[bytes] = []
        self.plain_chunk_hashes: list[bytes] = []

    def process_chunk(self, cipher_chunk: bytes, plain_chunk_hash: bytes) -> None:
        """Append the leaf of the next chunk; raises CommitmentError past the bound."""
        if len(self.leaves) >= self.max_chunks:
            raise CommitmentError(f"asset has more than {self.max_chunks} chunks")
        if len(plain_chunk_hash) != DIGEST_SIZE:
            raise CommitmentError("plain chunk hash must be 32 bytes")
        index = len(self.leaves)
        self.leaves.append(compute_leaf_from_chunk(index, cipher_chunk, plain_chunk_hash))
        self.plain_chunk_hashes.append(bytes(plain_chunk_hash))

    def compute_chunk_root(self, content_hash: bytes) -> bytes:
        """Return the chunk root over every chunk added so far."""
        return compute_chunk_root(
            self.header, content_hash, len(self.leaves), compute_tree_root(self.leaves)
        )

    def compute_commitment(self, key: bytes, content_hash: bytes) -> bytes:
        """Return the 64-byte commitment for ``key`` and the chunks added so far."""
        return compute_commitment(key, self.compute_chunk_root(content_hash))
