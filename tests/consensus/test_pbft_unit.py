"""Unit tests of the PBFT machine driven synchronously (4 replicas, f = 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pbft_harness import CHAIN, Harness

from consensus.certificate import compute_certificate, get_certificate_error
from consensus.crypto import compute_hash, compute_public_key, compute_seed_from_label
from consensus.events import Alert, EmitEvidence, MessageReceived
from consensus.messages import (
    Commit,
    CommittedBlock,
    FetchResponse,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    VoteBundle,
    decode_message,
)
from consensus.pbft import PbftConfig, PbftReplica
from consensus.votes import VoteKind, compute_vote


def test_normal_case_commits_window_in_order_with_certificates() -> None:
    h = Harness()
    h.start_work()
    h.propose()
    h.deliver_all()
    for i in range(h.n):
        seqs = [c.seq for c in h.commits[i]]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= h.cfg.window
        for c in h.commits[i]:
            assert get_certificate_error(c.qc, h.cfg.committee, h.cfg.f, CHAIN) is None
            assert c.qc.digest == compute_hash(c.payload)
    # several sequence numbers were in flight at once (a window, not one block)
    assert len(h.commits[0]) >= 4


def test_checkpoint_truncates_log_and_window_advances() -> None:
    h = Harness()
    h.start_work()
    for _ in range(6):
        h.propose()
        h.deliver_all()
    r = h.replicas[1]
    assert r.executed >= 12
    assert r.stable_seq == r.executed - r.executed % h.cfg.checkpoint_interval
    assert all(seq > r.stable_seq for seq in r._pre_prepares)
    assert all(key[1] > r.stable_seq for key in r._prepares)
    assert not any(
        k.startswith("pbft/signed/") and int(k.rsplit("/", 1)[1]) <= r.stable_seq
        for k in h.disks[1]
    )


def _prepare_without_commits() -> Harness:
    """Return 4 replicas whose first blocks prepared everywhere but committed nowhere."""
    h = Harness()
    h.start_work()
    h.drop = lambda src, dst, msg: isinstance(msg, Commit)
    h.propose(b"first")
    h.deliver_all()
    return h


def test_view_change_keeps_prepared_but_uncommitted_block() -> None:
    h = _prepare_without_commits()
    assert all(not h.commits[i] for i in range(h.n))
    prepared = {seq: p.pre_prepare.digest for seq, p in h.replicas[1]._prepared.items()}
    assert prepared, "blocks should be prepared"
    h.drop = lambda src, dst, msg: False
    for i in range(h.n):
        h.fire(i)
    # each view change carries the prepared payloads to the new leader (replica 1) only
    vcs = [(src, dst, m) for src, dst, m in h.queue if isinstance(m, ViewChange)]
    assert len(vcs) == h.n * (h.n - 1)
    for src, dst, m in vcs:
        assert m.prepared and m.get_payload_error(h.cfg.max_payload) is None
        assert len(m.payloads) == (len(m.prepared) if dst == 1 else 0), (src, dst)
    while h.queue and not any(i == 1 for i, _req in h.pending_proposals):
        src, dst, msg = h.queue.pop(0)
        h.step(dst, MessageReceived(msg.to_bytes(), src))
    # when the new leader asks for fresh proposals it holds the re-proposed blocks
    # (so their transactions are not proposed a second time)
    leader = h.replicas[1]
    carried = leader.get_uncommitted_payloads()
    assert carried, "the new view re-proposes prepared blocks"
    assert carried == [b"first%d" % seq for seq in sorted(prepared) if seq > leader.executed]
    h.deliver_all()
    assert all(r.view == 1 and not r.in_view_change for r in h.replicas)
    h.propose(b"second")
    h.deliver_all()
    for i in range(h.n):
        got = {c.seq: c.qc.digest for c in h.commits[i]}
        for seq, digest in prepared.items():
            assert got[seq] == digest, "a prepared block must survive the view change"


def test_leader_crash_mid_round_view_change_recovers() -> None:
    h = Harness()
    h.start_work()
    h.propose()
    # the leader's pre-prepares reach only replica 1, then the leader crashes
    h.drop = lambda src, dst, msg: src == 0 and dst != 1
    h.deliver_all()
    h.down.add(0)
    for i in range(1, h.n):
        h.fire(i)
    h.deliver_all()
    assert all(h.replicas[i].view == 1 for i in range(1, h.n))
    h.propose(b"after")
    h.deliver_all()
    lens = [len(h.commits[i]) for i in range(1, h.n)]
    assert min(lens) >= 1
    first = [c.qc.digest for c in h.commits[1]]
    for i in (2, 3):
        assert [c.qc.digest for c in h.commits[i]][: len(first)] == first[: len(h.commits[i])]


@pytest.mark.parametrize("collect_votes", [True, False])
def test_equivocating_pre_prepare_yields_evidence(collect_votes: bool) -> None:
    h = Harness(collect_votes=collect_votes)
    leader_seed = h.seeds[0]
    pk = h.cfg.committee[0]
    a, b = b"payload-a", b"payload-b"
    va = compute_vote(leader_seed, pk, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(a))
    vb = compute_vote(leader_seed, pk, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(b))
    h.step(1, MessageReceived(PrePrepare(va, a).to_bytes(), 0))
    h.step(2, MessageReceived(PrePrepare(vb, b).to_bytes(), 0))
    h.deliver_all()
    if collect_votes:
        # prepares went to the leader only; leaving the stalled view exposes them
        assert not any(h.evidence[i] for i in range(1, h.n))
        for i in range(1, h.n):
            h.fire(i)
        h.deliver_all()
    got = [e.evidence for i in range(1, h.n) for e in h.evidence[i]]
    assert got, "the relayed pre-prepare votes must expose the equivocation"
    assert all(e.offender == pk for e in got)


def test_restart_never_signs_conflicting_vote() -> None:
    h = Harness()
    seed, pk = h.seeds[0], h.cfg.committee[0]
    pa = b"a"
    va = compute_vote(seed, pk, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(pa))
    h.step(1, MessageReceived(PrePrepare(va, pa).to_bytes(), 0))
    restarted = PbftReplica(h.cfg, h.seeds[1], dict(h.disks[1]))
    h.replicas[1] = restarted
    h.queue.clear()
    pb = b"b"
    vb = compute_vote(seed, pk, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(pb))
    h.step(1, MessageReceived(PrePrepare(vb, pb).to_bytes(), 0))
    prepares = [m for (_s, _d, m) in h.queue if isinstance(m, Prepare)]
    assert all(p.vote.digest == va.digest for p in prepares)


def test_garbage_and_forged_messages_are_dropped() -> None:
    h = Harness()
    r = h.replicas[1]
    for data in (b"", b"\x06\x01\x03\x02", b"\xff" * 64, PrePrepare.__name__.encode()):
        r.step(MessageReceived(data, 0))
    # a pre-prepare signed by a non-leader is ignored
    seed, pk = h.seeds[2], h.cfg.committee[2]
    v = compute_vote(seed, pk, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(b"x"))
    r.step(MessageReceived(PrePrepare(v, b"x").to_bytes(), 2))
    assert not r._pre_prepares
    # a view change with a bad signature is ignored
    vc = ViewChange.compute(seed, pk, 1, 0, None, ())
    forged = ViewChange(vc.new_view, vc.stable_seq, None, (), pk, b"\x00" * 64)
    r.step(MessageReceived(forged.to_bytes(), 2))
    assert pk not in r._view_changes.get(1, {})
    nv = NewView.compute(seed, pk, 1, (vc,), ())
    r.step(MessageReceived(nv.to_bytes(), 2))
    assert r.view == 0


def test_view_change_with_a_payload_that_does_not_match_is_dropped() -> None:
    h = _prepare_without_commits()
    h.queue.clear()
    h.fire(2)
    sent = [m for _src, dst, m in h.queue if dst == 1 and isinstance(m, ViewChange)]
    assert len(sent) == 1 and sent[0].payloads
    bad = replace(sent[0], payloads=(b"not the block",) * len(sent[0].payloads))
    leader = h.replicas[1]
    alerts = leader.step(MessageReceived(bad.to_bytes(), 2))
    assert any(isinstance(a, Alert) and "does not match" in a.reason for a in alerts)
    assert h.cfg.committee[2] not in leader._view_changes.get(1, {})
    leader.step(MessageReceived(sent[0].to_bytes(), 2))
    assert h.cfg.committee[2] in leader._view_changes[1]


def test_byzantine_signer_cannot_grow_tallies_without_bound() -> None:
    h = Harness()
    r = h.replicas[1]
    seed, pk = h.seeds[3], h.cfg.committee[3]
    leader_seed, leader = h.seeds[0], h.cfg.committee[0]
    pp = compute_vote(
        leader_seed, leader, CHAIN, VoteKind.PBFT_PRE_PREPARE, 0, 1, compute_hash(b"x")
    )
    evidence = []
    for k in range(20):
        d = compute_hash(b"junk%d" % k)
        v = compute_vote(seed, pk, CHAIN, VoteKind.PBFT_PREPARE, 0, 1, d)
        actions = r.step(MessageReceived(Prepare(v, pp).to_bytes(), 3))
        evidence += [a for a in actions if isinstance(a, EmitEvidence)]
    slots = [key for key, votes in r._prepares.items() if pk in votes]
    assert len(slots) == 3
    assert len(evidence) == 1 and evidence[0].evidence.offender == pk


@pytest.mark.parametrize("collect_votes", [True, False])
def test_votes_travel_through_the_leader_only_when_it_collects(collect_votes: bool) -> None:
    h = Harness(n=10, collect_votes=collect_votes)
    sent: list[tuple[int, int, type]] = []

    def record(src: int, dst: int, msg: object) -> bool:
        sent.append((src, dst, type(msg)))
        return False

    h.drop = record
    h.start_work()
    h.propose()
    h.deliver_all()
    blocks = len(h.commits[1])
    assert blocks >= h.cfg.window and all(len(h.commits[i]) == blocks for i in range(h.n))
    votes = [(s, d) for s, d, kind in sent if kind in (Prepare, Commit)]
    bundles = [(s, d) for s, d, kind in sent if kind is VoteBundle]
    if collect_votes:
        # each non-leader sends its prepare and commit to the leader (0); the leader
        # relays one prepare bundle and one commit bundle per block to the others
        assert all(d == 0 for _s, d in votes)
        assert len(votes) == 2 * (h.n - 1) * blocks
        assert all(s == 0 for s, _d in bundles)
        assert len(bundles) == 2 * (h.n - 1) * blocks
        assert len(sent) == 5 * (h.n - 1) * blocks  # with the pre-prepares
    else:
        assert not bundles
        assert len(votes) >= 2 * (h.n - 1) ** 2 * blocks


def test_largest_fetch_response_fits_the_message_limit() -> None:
    """With the node's parameters (10 replicas, window 6, 40 KiB payloads) and a
    fetch batch of 32, a fetch response of full blocks is within the decode
    limit (the limit once covered only new views: 0.74 MB here)."""
    seeds = [compute_seed_from_label(f"limit-{i}") for i in range(10)]
    keys = tuple(compute_public_key(s) for s in seeds)
    cfg = PbftConfig(
        CHAIN, keys, window=6, checkpoint_interval=3, max_payload=40 * 1024, fetch_batch=32
    )
    replica = PbftReplica(cfg, seeds[0])
    blocks = []
    for seq in range(1, cfg.fetch_batch + 1):
        payload = bytes([seq]) * cfg.max_payload
        digest = compute_hash(payload)
        votes = [
            compute_vote(seeds[i], keys[i], CHAIN, VoteKind.PBFT_COMMIT, 0, seq, digest)
            for i in range(cfg.quorum)
        ]
        blocks.append(CommittedBlock(seq, payload, compute_certificate(0, seq, digest, votes)))
    data = FetchResponse(tuple(blocks)).to_bytes()
    assert decode_message(data, max_size=replica._max_message) == FetchResponse(tuple(blocks))


def test_lagging_replica_keeps_fetching_while_the_cluster_commits() -> None:
    """A replica cut off from pre-prepares and fetch answers sees the others
    commit (their commit votes reach it) and does not ask for a view change
    while their height rises; once it stops rising, it does."""
    h = Harness()
    h.start_work()
    lagging = h.replicas[3]
    h.drop = lambda src, dst, msg: dst == 3 and isinstance(msg, (PrePrepare, FetchResponse))
    for round_ in range(4):
        h.propose(b"r%d-" % round_)
        h.deliver_all()
        assert len(h.commits[0]) > round_
        h.fire(3)
        h.deliver_all()
        assert not lagging.in_view_change and lagging.view == 0, round_
    assert lagging.executed == 0
    h.fire(3)  # the others' height did not move since the last firing
    assert lagging.in_view_change
