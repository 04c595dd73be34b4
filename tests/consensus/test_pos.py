"""PoS settlement machine."""

from __future__ import annotations

from consensus.checkpoint import compute_checkpoint_digest
from consensus.crypto import compute_public_key
from consensus.crypto import compute_seed_from_label as seed_of
from consensus.events import (
    Alert,
    BlockExecuted,
    Broadcast,
    EmitEvidence,
    MessageReceived,
    Send,
    SetTimer,
    SettleCheckpoint,
    TimerFired,
    ValidatorSetChanged,
)
from consensus.messages import CheckpointVote, SettledNotice
from consensus.pos import PosConfig, PosValidator
from consensus.votes import VoteKind, compute_vote

CHAIN = "pos-test"
SEEDS = [seed_of(f"pos-{i}") for i in range(4)]
KEYS = [compute_public_key(s) for s in SEEDS]
E = 3


def make(stakes: list[int]) -> list[PosValidator]:
    cfg = PosConfig(CHAIN, E, dict(zip(KEYS, stakes, strict=True)), committee_size=4)
    return [PosValidator(cfg, s) for s in SEEDS]


def block(h: int, nxt: dict[bytes, int] | None = None) -> BlockExecuted:
    return BlockExecuted(h, bytes([h]) * 32, bytes([h + 100]) * 32, nxt)


def run_epoch(
    vals: list[PosValidator], h: int, signers: list[int], nxt: dict[bytes, int] | None = None
) -> list[list[object]]:
    votes = []
    for i in signers:
        for a in vals[i].step(block(h, nxt)):
            if isinstance(a, Broadcast):
                votes.append(a.message.to_bytes())  # type: ignore[union-attr]
    out: list[list[object]] = [[] for _ in vals]
    for i, v in enumerate(vals):
        for data in votes:
            out[i] += v.step(MessageReceived(data, 0))
    return out


def settled(actions: list[object]) -> list[SettleCheckpoint]:
    return [a for a in actions if isinstance(a, SettleCheckpoint)]


def test_settles_only_with_more_than_two_thirds_of_stake() -> None:
    vals = make([10, 10, 10, 30])  # total 60; validators 0..2 hold exactly 1/2
    out = run_epoch(vals, E, [0, 1, 2])
    assert not any(settled(o) for o in out)
    vals = make([10, 10, 10, 30])
    out = run_epoch(vals, E, [0, 3])  # 40 of 60 = exactly 2/3: not enough
    assert not any(settled(o) for o in out)
    vals = make([10, 10, 10, 30])
    out = run_epoch(vals, E, [0, 1, 3])  # 50 of 60
    cps = [settled(o) for o in out]
    assert all(len(c) == 1 and c[0].checkpoint.height == E for c in cps)


def test_validator_set_changes_only_at_settled_boundary() -> None:
    vals = make([10, 10, 10, 10])
    new = {KEYS[0]: 10, KEYS[1]: 10, KEYS[2]: 10}  # validator 3 jailed / unbonded
    for v in vals:
        v.step(block(1, new))
        assert KEYS[3] in v.validators
    out = run_epoch(vals, E, [0, 1, 2])
    changed = [a for a in out[0] if isinstance(a, ValidatorSetChanged)]
    assert changed and changed[0].epoch == 2 and KEYS[3] not in changed[0].validators
    assert sorted(changed[0].committee) == sorted(new)
    assert vals[0].validators == new
    # epoch 2 settles with the new set: 3 of 3 remaining
    out = run_epoch(vals, 2 * E, [0, 1, 2])
    assert settled(out[0])


def test_refuses_block_conflicting_with_settled_checkpoint() -> None:
    vals = make([10, 10, 10, 10])
    run_epoch(vals, E, [0, 1, 2, 3])
    fork = BlockExecuted(E, b"\xee" * 32, b"\xef" * 32)
    acts = vals[0].step(fork)
    assert any(isinstance(a, Alert) for a in acts)
    assert not any(isinstance(a, Broadcast) for a in acts)


def test_double_signed_checkpoint_is_evidence() -> None:
    vals = make([10, 10, 10, 10])
    bh = bytes([E]) * 32
    msgs = []
    for sd in (b"\x01" * 32, b"\x02" * 32):
        d = compute_checkpoint_digest(bh, sd)
        v = compute_vote(SEEDS[3], KEYS[3], CHAIN, VoteKind.POS_CHECKPOINT, 1, E, d)
        msgs.append(CheckpointVote(v, bh, sd).to_bytes())
    acts = vals[0].step(MessageReceived(msgs[0], 3)) + vals[0].step(MessageReceived(msgs[1], 3))
    ev = [a for a in acts if isinstance(a, EmitEvidence)]
    assert len(ev) == 1 and ev[0].evidence.offender == KEYS[3]


def test_restart_keeps_settled_state_and_signed_records() -> None:
    vals = make([10, 10, 10, 10])
    disk: dict[str, bytes] = {}
    out = run_epoch(vals, E, [0, 1, 2, 3])
    from consensus.events import Persist

    for a in out[0]:
        if isinstance(a, Persist) and a.value is not None:
            disk[a.key] = a.value
    cfg = vals[0].cfg
    again = PosValidator(cfg, SEEDS[0], disk)
    assert again.settled_epoch == 1


def test_settled_by_notice_before_executing_waits_for_the_validator_set() -> None:
    vals = make([10, 10, 10, 10])
    new = {KEYS[0]: 10, KEYS[1]: 10, KEYS[2]: 10}
    # validators 0..2 execute the epoch (with a set change) and settle it
    for v in vals[:3]:
        v.step(block(1, new))
    out = run_epoch(vals[:3], E, [0, 1, 2])
    cp = settled(out[0])[0].checkpoint
    from consensus.messages import SettledNotice

    # validator 3 executed nothing yet; it settles from a notice
    late = vals[3]
    late.step(MessageReceived(SettledNotice(cp).to_bytes(), 0))
    assert late.settled_epoch == 1
    assert KEYS[3] in late.validators, "set change not known before the block is executed"
    acts = late.step(block(1, new)) + late.step(block(2)) + late.step(block(E))
    assert any(isinstance(a, ValidatorSetChanged) for a in acts)
    assert late.validators == new
    assert not any(isinstance(a, Broadcast) for a in acts), "a jailed validator does not vote"


def _vote_of(i: int, epoch: int) -> bytes:
    """Validator ``i``'s checkpoint vote for the boundary block of ``epoch`` (see block())."""
    h = epoch * E
    bh, sd = bytes([h]) * 32, bytes([h + 100]) * 32
    d = compute_checkpoint_digest(bh, sd)
    v = compute_vote(SEEDS[i], KEYS[i], CHAIN, VoteKind.POS_CHECKPOINT, epoch, h, d)
    return CheckpointVote(v, bh, sd).to_bytes()


def _notices(actions: list[object]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.message, SettledNotice)]


def test_a_late_vote_gets_a_notice_only_when_its_sender_is_behind() -> None:
    vals = make([10, 10, 10, 10])
    run_epoch(vals, E, [0, 1, 2])  # 3 of 4 settle epoch 1 without validator 3
    assert vals[0].settled_epoch == 1
    # validator 3's vote arrives after the others settled: the usual race
    assert not _notices(vals[0].step(MessageReceived(_vote_of(3, 1), 3)))
    # the same vote again (its retry: validator 3 is still unsettled) is answered
    again = _notices(vals[0].step(MessageReceived(_vote_of(3, 1), 3)))
    assert len(again) == 1 and again[0].to == 3
    run_epoch(vals, 2 * E, [0, 1, 2])
    assert vals[0].settled_epoch == 2
    # a vote for epoch 1 now comes from a validator a whole epoch behind
    notices = _notices(vals[0].step(MessageReceived(_vote_of(3, 1), 3)))
    assert len(notices) == 1 and notices[0].to == 3
    assert notices[0].message.checkpoint.epoch == 1  # type: ignore[attr-defined]


def test_a_vote_is_re_broadcast_only_after_staying_unsettled_for_retry_ms() -> None:
    val = make([10, 10, 10, 10])[0]
    armed = [a for a in val.start() if isinstance(a, SetTimer)]
    signed = val.step(block(E))
    assert [a for a in signed if isinstance(a, Broadcast)]
    rearmed = [a for a in signed if isinstance(a, SetTimer)]
    assert len(rearmed) == 1 and rearmed[0].token != armed[0].token
    # the timer armed before the vote was signed no longer fires a retry
    stale = val.step(TimerFired("pos-retry", armed[0].token))
    assert not [a for a in stale if isinstance(a, Broadcast)]
    # retry_ms after signing, the still unsettled vote goes out again
    retry = val.step(TimerFired("pos-retry", rearmed[0].token))
    sent = [a for a in retry if isinstance(a, Broadcast)]
    assert len(sent) == 1 and isinstance(sent[0].message, CheckpointVote)
