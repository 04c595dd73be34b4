"""Merkle tree over chunk leaves: paths verify, and only for the right position."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import compute_hash
from pre.commitment import (
    CommitmentError,
    compute_leaf,
    compute_merkle_path,
    compute_root_from_path,
    compute_tree_root,
    get_commitment_parts,
)
from pre.commitment import _node as node


def _leaves(n: int) -> list[bytes]:
    return [compute_leaf(i, compute_hash(b"c%d" % i), compute_hash(b"p%d" % i)) for i in range(n)]


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(_rfc6962_root(leaves[:k]), _rfc6962_root(leaves[k:]))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_every_path_verifies(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    root = compute_tree_root(leaves)
    assert root == _rfc6962_root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = compute_merkle_path(leaves, index)
    assert compute_root_from_path(leaves[index], index, n, path) == root
    if n > 1:
        other = (index + 1) % n
        assert compute_root_from_path(leaves[index], other, n, path) != root
        assert compute_root_from_path(leaves[other], index, n, path) != root


def test_wrong_shapes_rejected() -> None:
    leaves = _leaves(5)
    path = compute_merkle_path(leaves, 2)
    assert compute_root_from_path(leaves[2], 2, 5, path[:-1]) is None
    assert compute_root_from_path(leaves[2], 2, 5, [*path, path[0]]) is None
    assert compute_root_from_path(leaves[2], 5, 5, path) is None
    assert compute_root_from_path(leaves[2], 2, 0, path) is None
    with pytest.raises(CommitmentError):
        compute_merkle_path(leaves, 5)


def test_commitment_size_checked() -> None:
    with pytest.raises(CommitmentError):
        get_commitment_parts(b"x" * 63)
    key_part, root_part = get_commitment_parts(bytes(range(64)))
    assert key_part == bytes(range(32)) and root_part == bytes(range(32, 64))
