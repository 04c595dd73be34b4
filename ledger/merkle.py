"""Merkle root over transaction hashes, inclusion proofs and their verification.

Leaves are ``H(0x00 || tx_hash)`` and inner nodes ``H(0x01 || left || right)``
(domain separated, so a leaf can never pose as a node). An odd node at the end
of a level is carried up unchanged (never duplicated, so two different lists
can never share a root). The root of an empty list is ``H(b"")``.

A proof is the list of ``(sibling_is_left, sibling_hash)`` pairs from the leaf
to the root; auditors check it with :func:`is_valid_inclusion_proof`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_PROOF_DEPTH = 64


def _leaf(tx_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + tx_hash).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def compute_merkle_root(tx_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle root of ``tx_hashes`` (order matters)."""
    if not tx_hashes:
        return hashlib.sha256(b"").digest()
    level = [_leaf(h) for h in tx_hashes]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def compute_inclusion_proof(tx_hashes: Sequence[bytes], index: int) -> list[tuple[bool, bytes]]:
    """Return the inclusion proof of ``tx_hashes[index]``; raises IndexError if out of range."""
    if not 0 <= index < len(tx_hashes):
        raise IndexError(f"leaf index {index} out of range 0..{len(tx_hashes) - 1}")
    proof: list[tuple[bool, bytes]] = []
    level = [_leaf(h) for h in tx_hashes]
    pos = index
    while len(level) > 1:
        if pos % 2 == 1:
            proof.append((True, level[pos - 1]))
        elif pos + 1 < len(level):
            proof.append((False, level[pos + 1]))
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        pos //= 2
    return proof


def is_valid_inclusion_proof(
    tx_hash: bytes, proof: Sequence[tuple[bool, bytes]], root: bytes
) -> bool:
    """Return True iff ``proof`` shows ``tx_hash`` is a leaf of the tree with ``root``.

    Never raises on malformed proofs: they simply give False.
    """
    if len(proof) > MAX_PROOF_DEPTH:
        return False
    node = _leaf(tx_hash)
    for step in proof:
        if not isinstance(step, tuple) or len(step) != 2:
            return False
        is_left, sibling = step
        if not isinstance(sibling, bytes) or len(sibling) != 32:
            return False
        node = _node(sibling, node) if is_left else _node(node, sibling)
    return node == root
