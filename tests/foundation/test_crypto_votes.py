"""Ed25519 helpers, signed votes and equivocation evidence."""

from __future__ import annotations

import pytest

from consensus.crypto import (
    compute_public_key,
    compute_seed_from_label,
    compute_signature,
    is_valid_signature,
)
from consensus.evidence import Evidence, get_evidence_error, is_valid_evidence
from consensus.invariant import InvariantError, require
from consensus.votes import Vote, VoteKind, compute_vote

CHAIN = "test-chain"
SEED = compute_seed_from_label("v0")
PK = compute_public_key(SEED)


def _vote(digest_byte: int, kind: VoteKind = VoteKind.PBFT_COMMIT, seq: int = 5) -> Vote:
    return compute_vote(SEED, PK, CHAIN, kind, 1, seq, bytes([digest_byte]) * 32)


def test_signature_round_trip_and_tamper() -> None:
    sig = compute_signature(SEED, b"hello")
    assert is_valid_signature(PK, b"hello", sig)
    assert not is_valid_signature(PK, b"hellO", sig)
    assert not is_valid_signature(PK, b"hello", bytes(64))
    assert not is_valid_signature(b"short", b"hello", sig)
    assert not is_valid_signature(PK, b"hello", sig[:-1])


def test_bad_seed_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        compute_public_key(b"x")


def test_vote_wire_round_trip() -> None:
    vote = _vote(1)
    assert vote.is_valid()
    assert Vote.from_wire(vote.to_wire()) == vote
    with pytest.raises(ValueError):
        Vote.from_wire([1, 2, 3])
    with pytest.raises(ValueError, match="kind"):
        Vote.from_wire([CHAIN, 99, 1, 5, bytes(32), PK, bytes(64)])


def test_equivocation_is_valid_evidence() -> None:
    ev = Evidence.from_votes(_vote(2), _vote(1))
    assert ev.first.digest < ev.second.digest
    assert is_valid_evidence(ev, CHAIN)
    assert ev.offender == PK
    assert Evidence.from_wire(ev.to_wire()) == ev
    assert ev.evidence_id() == Evidence.from_votes(_vote(1), _vote(2)).evidence_id()


def test_non_conflicting_pairs_are_not_evidence() -> None:
    other_seed = compute_seed_from_label("v1")
    other = compute_vote(
        other_seed, compute_public_key(other_seed), CHAIN, VoteKind.PBFT_COMMIT, 1, 5, b"\x02" * 32
    )
    cases = {
        "do not conflict": Evidence(_vote(1), _vote(1)),
        "different signers": Evidence(_vote(1), other),
        "different kinds": Evidence(_vote(1), _vote(2, VoteKind.PBFT_PREPARE)),
        "different rounds or positions": Evidence(_vote(1), _vote(2, seq=6)),
    }
    for reason, ev in cases.items():
        error = get_evidence_error(ev, CHAIN)
        assert error is not None and reason in error
    assert get_evidence_error(Evidence.from_votes(_vote(1), _vote(2)), "other") is not None
    forged = Vote(CHAIN, VoteKind.PBFT_COMMIT, 1, 5, b"\x03" * 32, PK, bytes(64))
    assert get_evidence_error(Evidence.from_votes(_vote(1), forged), CHAIN) == "bad signature"


def test_require_survives_and_raises() -> None:
    require(True, "fine")
    with pytest.raises(InvariantError, match="broken"):
        require(False, "broken")


def test_a_vote_this_process_signed_is_valid_without_a_signature_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from consensus import verify

    own = verify.remember_signed_vote(_vote(41, seq=9_001))
    forged = replace(_vote(42, seq=9_002), signature=bytes(64))

    def no_check(vote: Vote) -> bool:
        raise AssertionError("the signature of a vote this process signed was checked")

    monkeypatch.setattr(verify, "_is_valid_vote", no_check)
    assert verify.is_valid_vote(own, CHAIN)
    assert not verify.is_valid_vote(own, "another-chain")
    monkeypatch.undo()
    assert not verify.is_valid_vote(forged, CHAIN)  # only remembered votes skip the check


def test_remembered_signed_votes_are_bounded() -> None:
    from consensus import verify

    first = verify.remember_signed_vote(_vote(43, seq=10_000))
    for i in range(verify.SIGNED_REMEMBERED):
        verify.remember_signed_vote(_vote(44, seq=10_001 + i))
    assert len(verify._signed_votes) == verify.SIGNED_REMEMBERED
    assert first not in verify._signed_votes
    assert verify.is_valid_vote(first, CHAIN)  # still valid: checked the usual way
