"""PoS settlement checkpoints, validator-set helpers and leader order.

A checkpoint vote is a :class:`~consensus.votes.Vote` of kind POS_CHECKPOINT
with round = epoch, position = height and digest =
:func:`compute_checkpoint_digest`. A checkpoint signed by validators holding
strictly more than 2/3 of the bonded stake is settled and final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consensus.crypto import DIGEST_SIZE, PUBLIC_KEY_SIZE, compute_hash_parts
from consensus.verify import is_valid_vote
from consensus.votes import Vote, VoteKind

MAX_VALIDATORS = 1024


class CheckpointError(ValueError):
    """Raised when a checkpoint or validator set does not parse."""


def compute_checkpoint_digest(block_hash: bytes, state_digest: bytes) -> bytes:
    """Return the digest a checkpoint vote signs for (block_hash, state_digest)."""
    return compute_hash_parts(b"checkpoint", block_hash, state_digest)


def is_stake_quorum(signed_stake: int, total_stake: int) -> bool:
    """Return True iff ``signed_stake`` is strictly more than 2/3 of ``total_stake``."""
    return total_stake > 0 and 3 * signed_stake > 2 * total_stake


@dataclass(frozen=True, slots=True)
class SettledCheckpoint:
    """A checkpoint with the votes that settle it (sorted by signer)."""

    epoch: int
    height: int
    block_hash: bytes
    state_digest: bytes
    votes: tuple[Vote, ...]

    @property
    def digest(self) -> bytes:
        """The digest the votes sign."""
        return compute_checkpoint_digest(self.block_hash, self.state_digest)

    def to_wire(self) -> list[Any]:
        """Return the checkpoint as a codec-encodable list."""
        return [
            self.epoch,
            self.height,
            self.block_hash,
            self.state_digest,
            [v.to_wire() for v in self.votes],
        ]

    @staticmethod
    def from_wire(value: Any) -> SettledCheckpoint:
        """Parse :meth:`to_wire` output; raises CheckpointError on malformed input."""
        if not isinstance(value, list) or len(value) != 5:
            raise CheckpointError("checkpoint must be a list of 5 fields")
        epoch, height, block_hash, state_digest, votes = value
        for n in (epoch, height):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise CheckpointError("checkpoint epoch/height must be non-negative integers")
        for d in (block_hash, state_digest):
            if not isinstance(d, bytes) or len(d) != DIGEST_SIZE:
                raise CheckpointError("checkpoint hashes must be 32 bytes")
        if not isinstance(votes, list) or len(votes) > MAX_VALIDATORS:
            raise CheckpointError("checkpoint votes must be a bounded list")
        try:
            parsed = tuple(Vote.from_wire(v) for v in votes)
        except ValueError as exc:
            raise CheckpointError(f"bad vote in checkpoint: {exc}") from exc
        return SettledCheckpoint(epoch, height, block_hash, state_digest, parsed)


def get_settled_checkpoint_error(
    cp: SettledCheckpoint, validators: Mapping[bytes, int], chain_id: str
) -> str | None:
    """Return None iff ``cp`` carries valid checkpoint votes by distinct members of
    ``validators`` (public key -> bonded stake) holding > 2/3 of the total stake."""
    total = sum(validators.values())
    signed = 0
    seen: set[bytes] = set()
    digest = cp.digest
    for vote in cp.votes:
        if vote.kind != VoteKind.POS_CHECKPOINT:
            return "checkpoint holds a vote that is not a checkpoint vote"
        if (vote.round, vote.position, vote.digest) != (cp.epoch, cp.height, digest):
            return "checkpoint vote is for another epoch, height or digest"
        if vote.signer not in validators:
            return "checkpoint vote by a non-validator"
        if vote.signer in seen:
            return "checkpoint holds two votes by one signer"
        if not is_valid_vote(vote, chain_id):
            return "checkpoint vote has a bad signature"
        seen.add(vote.signer)
        signed += validators[vote.signer]
    if not is_stake_quorum(signed, total):
        return f"checkpoint signed by stake {signed} of {total}, needs more than 2/3"
    return None


def validators_to_wire(validators: Mapping[bytes, int]) -> list[Any]:
    """Return a validator set as a canonical list of [public_key, stake] pairs."""
    return [[pk, validators[pk]] for pk in sorted(validators)]


def validators_from_wire(value: Any) -> dict[bytes, int]:
    """Parse :func:`validators_to_wire` output; raises CheckpointError if malformed."""
    if not isinstance(value, list) or len(value) > MAX_VALIDATORS:
        raise CheckpointError("validator set must be a bounded list")
    out: dict[bytes, int] = {}
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise CheckpointError("validator entry must be [public_key, stake]")
        pk, stake = item
        if not isinstance(pk, bytes) or len(pk) != PUBLIC_KEY_SIZE or pk in out:
            raise CheckpointError("validator key must be 32 unique bytes")
        if not isinstance(stake, int) or isinstance(stake, bool) or stake <= 0:
            raise CheckpointError("validator stake must be a positive integer")
        out[pk] = stake
    return out


def compute_leader_order(stakes: Mapping[bytes, int], settled_hash: bytes) -> tuple[bytes, ...]:
    """Return the members of ``stakes`` in leader order.

    Pure and integer-only: each key gets the score hash(settled_hash, key) // stake
    (a stake-weighted lottery seeded by the last settled checkpoint); lower
    scores lead first, ties broken by key.
    """

    def score(pk: bytes) -> tuple[int, bytes]:
        h = int.from_bytes(compute_hash_parts(b"leader-order", settled_hash, pk), "big")
        return (h // max(stakes[pk], 1), pk)

    return tuple(sorted(stakes, key=score))


def compute_committee(
    stakes: Mapping[bytes, int], size: int, settled_hash: bytes
) -> tuple[bytes, ...]:
    """Return the PBFT committee for the next epoch: the ``size`` largest stakes
    (ties by key), in :func:`compute_leader_order` order."""
    top = sorted(stakes, key=lambda pk: (-stakes[pk], pk))[:size]
    return compute_leader_order({pk: stakes[pk] for pk in top}, settled_hash)
