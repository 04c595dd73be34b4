"""Verify-once cache for signed votes.

A vote arrives many times (broadcast, relayed inside prepares, certificates and
view changes); its Ed25519 signature is checked once per process and the
result remembered in a bounded LRU cache keyed by the exact signed bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

from consensus.crypto import is_valid_signature
from consensus.votes import Vote

# A vote is re-seen within a few blocks (prepares relay the pre-prepare, QCs,
# view changes carry at most 2 windows: under 1,000 distinct votes in a new
# view): 4,096 entries, about 0.7 KB each over both caches, stay near 3 MB and
# fill within minutes; 131,072 grew a node's memory for hours.
VERIFY_CACHE_SIZE = 1 << 12
# Votes this process signed itself are valid by construction: a replica whose
# own vote comes back in the leader's bundle does not check its signature
# (two of the 15 checks of a block on a replica that is not the leader).
SIGNED_REMEMBERED = 256

_signed_votes: OrderedDict[Vote, None] = OrderedDict()


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
        return vote in _signed_votes or _is_valid_vote(vote)
    except TypeError:  # unhashable field: not a well-formed vote
        return False


def remember_signed_vote(vote: Vote) -> Vote:
    """Record ``vote``, just signed by this process, as valid (bounded); return it.

    Only for votes made with :func:`consensus.votes.compute_vote` from the
    signer's own seed: :func:`is_valid_vote` then answers True without a check.
    """
    _signed_votes[vote] = None
    _signed_votes.move_to_end(vote)
    if len(_signed_votes) > SIGNED_REMEMBERED:
        _signed_votes.popitem(last=False)
    return vote


def is_valid_signed(signer: bytes, message: bytes, signature: bytes) -> bool:
    """Return True iff ``signature`` by ``signer`` over ``message`` verifies (cached)."""
    if not (isinstance(signer, bytes) and isinstance(signature, bytes)):
        return False
    return _is_valid(signer, bytes(message), signature)
