"""Signed votes: the unit of accountability in both consensus layers.

Every vote a validator casts (a PBFT pre-prepare, prepare or commit, or a PoS
checkpoint vote) is a :class:`Vote`: a kind, a round (``view``/``epoch``), a
position (``seq``/``height``), the digest voted for, the signer's public key
and an Ed25519 signature over :meth:`Vote.signing_bytes`. Two valid votes of
one kind by one key for the same round and position with different digests
are equivocation (see :mod:`consensus.evidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any

from consensus import codec
from consensus.crypto import (
    DIGEST_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    compute_signature,
    is_valid_signature,
)

VOTE_DOMAIN = "dmchain/vote/v1"


class VoteKind(IntEnum):
    """What a vote is for. The numeric values are part of the signed bytes."""

    PBFT_PRE_PREPARE = 1
    PBFT_PREPARE = 2
    PBFT_COMMIT = 3
    POS_CHECKPOINT = 4


@dataclass(frozen=True, slots=True)
class Vote:
    """One signed vote. ``round`` is the PBFT view or the PoS epoch;
    ``position`` is the PBFT sequence number or the checkpoint height."""

    chain_id: str
    kind: VoteKind
    round: int
    position: int
    digest: bytes
    signer: bytes
    signature: bytes

    def signing_bytes(self) -> bytes:
        """Return the canonical bytes that the signature covers."""
        return compute_vote_signing_bytes(
            self.chain_id, self.kind, self.round, self.position, self.digest
        )

    def is_well_formed(self) -> bool:
        """Return True iff every field has the right type and size."""
        return (
            isinstance(self.chain_id, str)
            and isinstance(self.kind, VoteKind)
            and isinstance(self.round, int)
            and isinstance(self.position, int)
            and self.round >= 0
            and self.position >= 0
            and isinstance(self.digest, bytes)
            and len(self.digest) == DIGEST_SIZE
            and isinstance(self.signer, bytes)
            and len(self.signer) == PUBLIC_KEY_SIZE
            and isinstance(self.signature, bytes)
            and len(self.signature) == SIGNATURE_SIZE
        )

    def is_valid(self) -> bool:
        """Return True iff the vote is well formed and its signature verifies."""
        return self.is_well_formed() and is_valid_signature(
            self.signer, self.signing_bytes(), self.signature
        )

    def to_wire(self) -> list[Any]:
        """Return the vote as a codec-encodable list."""
        return [
            self.chain_id,
            int(self.kind),
            self.round,
            self.position,
            self.digest,
            self.signer,
            self.signature,
        ]

    @staticmethod
    def from_wire(value: Any) -> Vote:
        """Parse :meth:`to_wire` output; raises ValueError on malformed input."""
        if not isinstance(value, list) or len(value) != 7:
            raise ValueError("vote must be a list of 7 fields")
        chain_id, kind, rnd, pos, digest, signer, signature = value
        try:
            vote_kind = VoteKind(kind)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"unknown vote kind {kind!r}") from exc
        vote = Vote(chain_id, vote_kind, rnd, pos, digest, signer, signature)
        if not vote.is_well_formed():
            raise ValueError("malformed vote fields")
        return vote


# The replicas' votes on one (kind, round, position, digest) share their signed
# bytes: a replica checks about 2n votes per block over 2-3 distinct ones.
SIGNING_BYTES_CACHE = 64


@lru_cache(maxsize=SIGNING_BYTES_CACHE, typed=True)
def compute_vote_signing_bytes(
    chain_id: str, kind: VoteKind, round_: int, position: int, digest: bytes
) -> bytes:
    """Return the domain-separated canonical bytes a vote signature covers (cached)."""
    return codec.encode([VOTE_DOMAIN, chain_id, int(kind), round_, position, digest])


def compute_vote(
    seed: bytes,
    signer: bytes,
    chain_id: str,
    kind: VoteKind,
    round_: int,
    position: int,
    digest: bytes,
) -> Vote:
    """Return a vote signed with private ``seed`` whose public key is ``signer``."""
    signature = compute_signature(
        seed, compute_vote_signing_bytes(chain_id, kind, round_, position, digest)
    )
    return Vote(chain_id, kind, round_, position, digest, signer, signature)
