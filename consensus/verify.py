"""Verify-once cache for signed votes.

A vote arrives many times (broadcast, relayed inside prepares, certificates and
view changes); its Ed25519 signature is checked once per process and the
result remembered in a bounded LRU cache keyed by the exact signed bytes.
"""

from __future__ import annotations

from functools import lru_cache

from consensus.crypto import is_valid_signature
from consensus.votes import Vote

# A vote is re-seen within a few blocks (prepares relay the pre-prepare, QCs,
# view changes carry at most 2 windows: under 1,000 distinct votes in a new
# view): 4,096 entries, about 0.7 KB each over both caches, stay near 3 MB and
# fill within minutes; 131,072 grew a node's memory for hours.
VERIFY_CACHE_SIZE = 1 << 12


@lru_cache(maxsize=VERIFY_CACHE_SIZE)
def _is_valid(signer: bytes, message: bytes, signature: bytes) -> bool:
    return is_valid_signature(signer, message, signature)


@lru_cache(maxsize=VERIFY_CACHE_SIZE)
def _is_valid_vote(vote: Vote) -> bool:
    return vote.is_well_formed() and _is_valid(vote.signer, vote.signing_bytes(), vote.signature)


def is_valid_vote(vote: Vote, chain_id: str) -> bool:
    """Return True iff ``vote`` is well formed, for ``chain_id`` and correctly signed.

    The signature check runs at most once per distinct vote while it stays cached.
    """
    if vote.chain_id != chain_id:
        return False
    try:
        return _is_valid_vote(vote)
    except TypeError:  # unhashable field: not a well-formed vote
        return False


def is_valid_signed(signer: bytes, message: bytes, signature: bytes) -> bool:
    """Return True iff ``signature`` by ``signer`` over ``message`` verifies (cached)."""
    if not (isinstance(signer, bytes) and isinstance(signature, bytes)):
        return False
    return _is_valid(signer, bytes(message), signature)
