"""Messages, certificates and checkpoints: round trips, verification, bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec
from consensus.certificate import QuorumCertificate, compute_certificate, get_certificate_error
from consensus.checkpoint import (
    SettledCheckpoint,
    compute_checkpoint_digest,
    compute_committee,
    compute_leader_order,
    get_settled_checkpoint_error,
)
from consensus.crypto import compute_hash, compute_hash_parts, compute_public_key
from consensus.crypto import compute_seed_from_label as seed_of
from consensus.messages import (
    CheckpointVote,
    Commit,
    CommittedBlock,
    FetchRequest,
    FetchResponse,
    MessageError,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    SettledNotice,
    ViewChange,
    decode_message,
)
from consensus.votes import Vote, VoteKind, compute_vote

CHAIN = "wire-test"
SEEDS = [seed_of(f"wire-{i}") for i in range(10)]
KEYS = [compute_public_key(s) for s in SEEDS]
F = 3


def vote(i: int, kind: VoteKind, rnd: int, pos: int, digest: bytes) -> Vote:
    return compute_vote(SEEDS[i], KEYS[i], CHAIN, kind, rnd, pos, digest)


def qc(view: int = 2, seq: int = 5, digest: bytes = b"\x07" * 32, n: int = 7) -> QuorumCertificate:
    return compute_certificate(
        view, seq, digest, [vote(i, VoteKind.PBFT_COMMIT, view, seq, digest) for i in range(n)]
    )


def all_messages() -> list[object]:
    payload = b"block"
    d = compute_hash(payload)
    pp = vote(0, VoteKind.PBFT_PRE_PREPARE, 0, 1, d)
    proof = PreparedProof(
        pp, payload, tuple(vote(i, VoteKind.PBFT_PREPARE, 0, 1, d) for i in range(7))
    )
    vc = ViewChange.compute(
        SEEDS[1], KEYS[1], 1, 4, qc(0, 4), (proof.get_votes(),), (proof.payload,)
    )
    bh, sd = b"\x01" * 32, b"\x02" * 32
    cd = compute_checkpoint_digest(bh, sd)
    cp = SettledCheckpoint(
        1, 5, bh, sd, tuple(vote(i, VoteKind.POS_CHECKPOINT, 1, 5, cd) for i in range(6))
    )
    return [
        PrePrepare(pp, payload),
        Prepare(vote(2, VoteKind.PBFT_PREPARE, 0, 1, d), pp),
        Commit(vote(3, VoteKind.PBFT_COMMIT, 0, 1, d)),
        vc,
        NewView.compute(SEEDS[1], KEYS[1], 1, (vc,), (PrePrepare(pp, payload),)),
        FetchRequest.compute(SEEDS[4], KEYS[4], 3, 9),
        FetchResponse((CommittedBlock(5, payload, qc()),)),
        CheckpointVote(vote(5, VoteKind.POS_CHECKPOINT, 1, 5, cd), bh, sd),
        SettledNotice(cp),
    ]


@pytest.mark.parametrize("msg", all_messages(), ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: object) -> None:
    data = msg.to_bytes()  # type: ignore[attr-defined]
    assert decode_message(data) == msg
    assert decode_message(data).to_bytes() == data  # type: ignore[union-attr]


def test_signed_messages_verify_and_detect_tampering() -> None:
    vc = all_messages()[3]
    assert isinstance(vc, ViewChange) and vc.is_signed()
    bad = ViewChange(
        vc.new_view + 1, vc.stable_seq, vc.stable_qc, vc.prepared, vc.signer, vc.signature
    )
    assert not bad.is_signed()
    assert vc.without_payloads().is_signed()  # the payloads are outside the signature
    req = FetchRequest.compute(SEEDS[0], KEYS[0], 1, 2)
    assert req.is_signed()
    assert not FetchRequest(1, 3, KEYS[0], req.signature).is_signed()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_message_error(data: bytes) -> None:
    try:
        decode_message(data)
    except MessageError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=400))
def test_mutated_messages_raise_only_message_error(which: int, cut: int) -> None:
    data = all_messages()[which].to_bytes()  # type: ignore[attr-defined]
    for mutated in (data[:cut], data[:cut] + b"\x00" + data[cut + 1 :], data + b"\x00"):
        try:
            decode_message(mutated)
        except MessageError:
            pass


def test_view_change_payloads_travel_apart_from_the_signed_body() -> None:
    vc = all_messages()[3]
    assert isinstance(vc, ViewChange) and vc.payloads == (b"block",)
    assert vc.get_payload_error(1024) is None
    light = vc.without_payloads()
    assert light.payloads == () and light.get_payload_error(1024) is None
    assert len(light.to_bytes()) < len(vc.to_bytes())
    assert decode_message(light.to_bytes()) == light
    assert "does not match" in (vc.get_payload_error(4) or "")  # over the size limit
    swapped = replace(light, payloads=(b"other",))
    assert swapped.is_signed()
    assert "does not match" in (swapped.get_payload_error(1024) or "")
    extra = replace(light, payloads=(b"block", b"more"))
    assert "do not match" in (extra.get_payload_error(1024) or "")
    nv = NewView.compute(SEEDS[1], KEYS[1], 1, (vc,), ())
    assert decode_message(nv.to_bytes()).view_changes == (light,)  # type: ignore[union-attr]
    stuffed = codec.decode(nv.to_bytes())
    stuffed[1][1][0][3] = [b"block"]
    with pytest.raises(MessageError, match="carries no payloads"):
        decode_message(codec.encode(stuffed))


def test_structurally_wrong_values_are_refused() -> None:
    for value in ([], [99], [1, "x", b""], [3, [1, 2]], [7, [[1, b"", [0, 0, b"", []]]]], "str"):
        with pytest.raises(MessageError):
            decode_message(codec.encode(value))


def test_certificate_verifier() -> None:
    good = qc()
    assert get_certificate_error(good, KEYS, F, CHAIN) is None
    assert QuorumCertificate.from_wire(codec.decode(codec.encode(good.to_wire()))) == good
    assert "signers" in (get_certificate_error(qc(n=6), KEYS, F, CHAIN) or "")
    dup = QuorumCertificate(good.view, good.seq, good.digest, good.votes[:6] + good.votes[:1])
    assert get_certificate_error(dup, KEYS, F, CHAIN) is not None
    other = QuorumCertificate(good.view, good.seq, b"\x08" * 32, good.votes)
    assert get_certificate_error(other, KEYS, F, CHAIN) is not None
    assert get_certificate_error(good, KEYS[1:], F, CHAIN) is not None
    forged = good.votes[0]
    forged = Vote(
        forged.chain_id,
        forged.kind,
        forged.round,
        forged.position,
        forged.digest,
        forged.signer,
        b"\x01" * 64,
    )
    bad = QuorumCertificate(good.view, good.seq, good.digest, (forged, *good.votes[1:]))
    assert get_certificate_error(bad, KEYS, F, CHAIN) == "certificate vote has a bad signature"
    prepares = tuple(vote(i, VoteKind.PBFT_PREPARE, 2, 5, good.digest) for i in range(7))
    assert get_certificate_error(QuorumCertificate(2, 5, good.digest, prepares), KEYS, F, CHAIN)


def test_checkpoint_digest_contract() -> None:
    bh, sd = b"\x01" * 32, b"\x02" * 32
    assert compute_checkpoint_digest(bh, sd) == compute_hash_parts(b"checkpoint", bh, sd)


def test_settled_checkpoint_needs_strictly_more_than_two_thirds() -> None:
    bh, sd = b"\x01" * 32, b"\x02" * 32
    d = compute_checkpoint_digest(bh, sd)
    stakes = {KEYS[i]: 10 for i in range(6)}  # total 60, 2/3 = 40
    votes4 = tuple(vote(i, VoteKind.POS_CHECKPOINT, 3, 15, d) for i in range(4))
    cp4 = SettledCheckpoint(3, 15, bh, sd, votes4)
    assert "more than 2/3" in (get_settled_checkpoint_error(cp4, stakes, CHAIN) or "")
    cp5 = SettledCheckpoint(3, 15, bh, sd, (*votes4, vote(4, VoteKind.POS_CHECKPOINT, 3, 15, d)))
    assert get_settled_checkpoint_error(cp5, stakes, CHAIN) is None
    assert SettledCheckpoint.from_wire(codec.decode(codec.encode(cp5.to_wire()))) == cp5
    heavy = dict(stakes)
    heavy[KEYS[5]] = 100
    assert get_settled_checkpoint_error(cp5, heavy, CHAIN) is not None
    wrong = SettledCheckpoint(3, 15, bh, b"\x03" * 32, cp5.votes)
    assert get_settled_checkpoint_error(wrong, stakes, CHAIN) is not None


def test_leader_order_is_deterministic_and_seeded_by_settled_hash() -> None:
    stakes = {k: 10 + i for i, k in enumerate(KEYS)}
    a = compute_leader_order(stakes, b"\x01" * 32)
    assert a == compute_leader_order(dict(reversed(list(stakes.items()))), b"\x01" * 32)
    assert sorted(a) == sorted(stakes)
    assert a != compute_leader_order(stakes, b"\x02" * 32)
    committee = compute_committee(stakes, 4, b"\x01" * 32)
    assert sorted(committee) == sorted(KEYS[6:])


def test_decode_cache_keeps_only_small_messages() -> None:
    from consensus import messages
    from consensus.crypto import compute_hash, compute_public_key, compute_seed_from_label
    from consensus.votes import VoteKind, compute_vote

    seed = compute_seed_from_label("cache")
    pk = compute_public_key(seed)
    big = b"x" * (messages.DECODE_CACHE_MAX_BYTES + 1)
    vote = compute_vote(seed, pk, "c", VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(big))
    messages._decode_cached.cache_clear()
    large = messages.PrePrepare(vote, big).to_bytes()
    small = messages.Commit(vote).to_bytes()
    assert messages.decode_message(large) == messages.decode_message(large)
    assert messages._decode_cached.cache_info().currsize == 0
    assert messages.decode_message(small) is messages.decode_message(small)
    assert messages._decode_cached.cache_info().currsize == 1
