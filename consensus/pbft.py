"""PBFT replica (Castro-Liskov with batching) as a pure state machine.

``PbftReplica.step(event) -> list[Action]``; see ``consensus/README.md`` for
how a node drives it. Blocks are opaque payloads; the digest every vote signs
is ``compute_hash(payload)`` (view independent). An empty payload is a null
block the new leader uses to fill a gap after a view change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus import codec
from consensus.certificate import QuorumCertificate, compute_certificate
from consensus.crypto import compute_hash, compute_public_key
from consensus.detector import EquivocationDetector
from consensus.events import (
    Action,
    Alert,
    Broadcast,
    CancelTimer,
    CheckpointSettled,
    CommitBlock,
    EmitEvidence,
    Event,
    MessageReceived,
    Persist,
    ProposalReady,
    RequestProposal,
    Send,
    ServeBlocks,
    SetTimer,
    TimerFired,
    WorkAvailable,
)
from consensus.invariant import require
from consensus.messages import (
    Commit,
    FetchRequest,
    FetchResponse,
    Message,
    MessageError,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    VoteBundle,
    decode_message,
    get_message_votes,
)
from consensus.verify import is_valid_vote, remember_signed_vote
from consensus.votes import Vote, VoteKind, compute_vote

PBFT_KINDS = (VoteKind.PBFT_PRE_PREPARE, VoteKind.PBFT_PREPARE, VoteKind.PBFT_COMMIT)
MAX_FUTURE_VIEWS = 64
MAX_SETTLED_REMEMBERED = 256
MAX_DIGESTS_PER_SIGNER = 3
# Blocks whose votes the equivocation detector remembers (2n+1 distinct votes
# each): 20 times the span a view change can carry (2 windows of sequence
# numbers). With a fixed 20,000 votes a replica's memory grew for minutes.
DETECTOR_BLOCKS = 256


@dataclass(frozen=True, slots=True)
class PbftConfig:
    """Parameters of one PBFT channel. ``committee`` is in leader order:
    the leader of view v is ``committee[v % n]``.

    ``collect_votes`` (default): replicas send their prepare and commit votes to
    the leader only, and the leader relays each quorum as one ``VoteBundle``
    (about 5n messages per block instead of 2n^2); otherwise every replica
    broadcasts its votes. A replica accepts votes either way, so the two modes
    interoperate; the prepared and committed predicates are the same."""

    chain_id: str
    committee: tuple[bytes, ...]
    window: int = 12
    checkpoint_interval: int = 4
    max_payload: int = 256 * 1024
    base_timeout_ms: int = 500
    max_timeout_ms: int = 8000
    fetch_batch: int = 16
    collect_votes: bool = True
    weak_quorum_for_tests: bool = False

    @property
    def n(self) -> int:
        """Committee size."""
        return len(self.committee)

    @property
    def f(self) -> int:
        """Faults tolerated: floor((n - 1) / 3)."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Votes needed for prepared, committed and new-view: 2f+1 (2f if weakened)."""
        return 2 * self.f + (0 if self.weak_quorum_for_tests else 1)

    def get_error(self) -> str | None:
        """Return None iff the parameters are usable, else why not."""
        if self.n < 1 or len(set(self.committee)) != self.n:
            return "committee must hold distinct keys"
        if self.checkpoint_interval < 1 or self.window < 2 * self.checkpoint_interval:
            return "window must be at least twice the checkpoint interval"
        if self.base_timeout_ms < 1 or self.max_timeout_ms < self.base_timeout_ms:
            return "timeouts must be positive and max >= base"
        if self.fetch_batch < 1 or self.max_payload < 0:
            return "fetch_batch and max_payload must be positive"
        return None


NULL_DIGEST = compute_hash(b"")


def compute_new_view_plan(
    view_changes: Iterable[ViewChange],
) -> tuple[int, list[tuple[int, bytes]]]:
    """Return (min_s, [(seq, digest)]) the new leader must re-propose: min_s is
    the highest stable checkpoint; for each seq above it up to the highest
    prepared seq, the digest prepared in the highest view, else the null block's."""
    vcs = list(view_changes)
    min_s = max((vc.stable_seq for vc in vcs), default=0)
    best: dict[int, Vote] = {}
    for vc in vcs:
        for p in vc.prepared:
            pp = p.pre_prepare
            n = pp.position
            if n > min_s and (n not in best or pp.round > best[n].round):
                best[n] = pp
    max_s = max(best, default=min_s)
    plan = []
    for n in range(min_s + 1, max_s + 1):
        plan.append((n, best[n].digest if n in best else NULL_DIGEST))
    return min_s, plan


def get_known_payloads(
    view_changes: Iterable[ViewChange], proofs: Iterable[PreparedProof]
) -> dict[bytes, bytes]:
    """Return digest -> payload for the payloads attached to ``view_changes``
    (already checked against their digests) and those of ``proofs``."""
    known = {NULL_DIGEST: b""}
    for vc in view_changes:
        for p, payload in zip(vc.prepared, vc.payloads, strict=False):
            known[p.pre_prepare.digest] = payload
    for proof in proofs:
        known[proof.pre_prepare.digest] = proof.payload
    return known


class PbftReplica:
    """One PBFT replica. Construct, call :meth:`start`, then :meth:`step` per event."""

    def __init__(
        self, config: PbftConfig, seed: bytes, restored: Mapping[str, bytes] | None = None
    ) -> None:
        err = config.get_error()
        require(err is None, f"bad PBFT config: {err}")
        self.cfg = config
        self._seed = seed
        self.public_key = compute_public_key(seed)
        require(self.public_key in config.committee, "replica key is not in the committee")
        self.index = config.committee.index(self.public_key)
        self._members = frozenset(config.committee)
        self._index_of = {pk: i for i, pk in enumerate(config.committee)}
        self.view = 0
        self.in_view_change = False
        self.executed = 0
        self.stable_seq = 0
        self.stable_qc: QuorumCertificate | None = None
        self._exec_qcs: dict[int, QuorumCertificate] = {}
        self._exec_digests: dict[int, bytes] = {}
        self._pre_prepares: dict[int, tuple[Vote, bytes]] = {}
        self._early: dict[tuple[int, int], tuple[Vote, bytes]] = {}
        self._my_vc: ViewChange | None = None
        # Fresh proposals of the current view must be above this seq (new-view plan).
        self._view_floor = 0
        # The view whose new-view this replica knows (it may propose only in that view).
        self._proposing_view = 0
        self._my_nv: NewView | None = None
        self._prepares: dict[tuple[int, int, bytes], dict[bytes, Vote]] = {}
        self._commits: dict[tuple[int, int, bytes], dict[bytes, Vote]] = {}
        self._digests_signed: dict[tuple[int, int, int, bytes], int] = {}
        self._prepared: dict[int, PreparedProof] = {}
        self._committed: dict[int, tuple[bytes, QuorumCertificate]] = {}
        self._signed: dict[tuple[int, int], tuple[int, bytes]] = {}
        self._view_changes: dict[int, dict[bytes, ViewChange]] = {}
        self._vc_max_view: dict[bytes, int] = {}
        self._new_view_sent: set[int] = set()
        self._peer_progress: dict[bytes, int] = {}
        self._settled: dict[int, bytes] = {}
        self._requested: set[int] = set()
        self._next_seq = 1
        self._work_pending = False
        self._timeout_ms = config.base_timeout_ms
        self._tokens: dict[str, int] = {}
        self._armed: set[str] = set()
        self._fetch_busy = False
        self._fetch_at_timeout = -1
        self._peers_at_timeout = -1
        self._detector = EquivocationDetector(DETECTOR_BLOCKS * (2 * config.n + 1))
        self._out: list[Action] = []
        self._max_message = self._compute_max_message_size()
        if restored:
            self._restore(restored)

    # ------------------------------------------------------------ persistence

    def _restore(self, records: Mapping[str, bytes]) -> None:
        for key, raw in records.items():
            value = codec.decode(raw)
            if key == "pbft/view":
                self.view, self.in_view_change = int(value[0]), bool(value[1])
                self._proposing_view = 0 if self.view == 0 else -1
            elif key == "pbft/executed":
                self.executed = int(value[0])
                qc = QuorumCertificate.from_wire(value[1]) if value[1] is not None else None
                if qc is not None:
                    self._exec_qcs[qc.seq] = qc
                    self._exec_digests[qc.seq] = qc.digest
            elif key == "pbft/stable":
                self.stable_seq = int(value[0])
                self.stable_qc = QuorumCertificate.from_wire(value[1]) if value[1] else None
            elif key.startswith("pbft/signed/"):
                _, _, kind, seq = key.split("/")
                self._signed[(int(kind), int(seq))] = (int(value[0]), bytes(value[1]))
            elif key.startswith("pbft/prepared/"):
                proof = PreparedProof.from_wire(value)
                self._prepared[proof.pre_prepare.position] = proof
        self._next_seq = self.executed + 1
        self._view_floor = self.executed

    def _persist(self, key: str, value: object) -> None:
        self._out.append(Persist(key, None if value is None else codec.encode(value)))

    def _persist_view(self) -> None:
        self._persist("pbft/view", [self.view, self.in_view_change])

    # ------------------------------------------------------------ helpers

    def leader_of(self, view: int) -> bytes:
        """Return the public key of the leader of ``view``."""
        return self.cfg.committee[view % self.cfg.n]

    def is_leader(self) -> bool:
        """Return True iff this replica leads the current view."""
        return self.leader_of(self.view) == self.public_key

    def _sign(self, kind: VoteKind, view: int, seq: int, digest: bytes) -> Vote | None:
        """Sign unless it would conflict with a persisted earlier signature."""
        last = self._signed.get((int(kind), seq))
        if last is not None and (view < last[0] or (view == last[0] and digest != last[1])):
            self._out.append(Alert(f"refused to sign conflicting {kind.name} at seq {seq}"))
            return None
        if last != (view, digest):
            self._signed[(int(kind), seq)] = (view, digest)
            self._persist(f"pbft/signed/{int(kind)}/{seq}", [view, digest])
        return remember_signed_vote(
            compute_vote(self._seed, self.public_key, self.cfg.chain_id, kind, view, seq, digest)
        )

    def _arm(self, name: str, delay_ms: int) -> None:
        token = self._tokens.get(name, 0) + 1
        self._tokens[name] = token
        self._armed.add(name)
        self._out.append(SetTimer(name, delay_ms, token))

    def _disarm(self, name: str) -> None:
        if name in self._armed:
            self._armed.discard(name)
            self._tokens[name] = self._tokens.get(name, 0) + 1
            self._out.append(CancelTimer(name))

    def _is_valid(self, vote: Vote, kind: VoteKind) -> bool:
        return (
            vote.kind == kind
            and vote.signer in self._members
            and is_valid_vote(vote, self.cfg.chain_id)
        )

    def get_uncommitted_payloads(self) -> list[bytes]:
        """Return the payloads of the accepted pre-prepares above the executed
        height, in sequence order (a new view's re-proposals among them)."""
        return [self._pre_prepares[s][1] for s in sorted(self._pre_prepares) if s > self.executed]

    def _has_uncommitted(self) -> bool:
        return any(n > self.executed for n in self._pre_prepares)

    def _peer_height(self) -> int:
        """The (f+1)-th highest commit position seen: reached by an honest replica."""
        heights = sorted(self._peer_progress.values(), reverse=True)
        return heights[self.cfg.f] if len(heights) > self.cfg.f else 0

    # ------------------------------------------------------------ driver API

    def start(self) -> list[Action]:
        """Return the actions to run once after construction (or restart)."""
        self._out = []
        if self.in_view_change:
            self._start_view_change(self.view)
        elif self._work_pending or self._prepared:
            self._arm("progress", self._timeout_ms)
        return self._take()

    def step(self, event: Event) -> list[Action]:
        """Process one event; return the actions to execute in order."""
        self._out = []
        if isinstance(event, MessageReceived):
            self._on_bytes(event.data, event.sender)
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, ProposalReady):
            self._on_proposal(event)
        elif isinstance(event, WorkAvailable):
            self._work_pending = event.pending
            if event.pending and "progress" not in self._armed:
                self._arm("progress", self._timeout_ms)
            self._maybe_propose()
        elif isinstance(event, CheckpointSettled):
            self._on_settled(event)
        return self._take()

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ inputs

    def _on_bytes(self, data: bytes, sender: int) -> None:
        try:
            msg = decode_message(data, max_size=self._max_message)
        except MessageError as exc:
            self._out.append(Alert(f"dropped malformed message: {exc}"))
            return
        self._scan_votes(msg)
        if isinstance(msg, PrePrepare):
            self._on_pre_prepare(msg.vote, msg.payload)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg.vote)
        elif isinstance(msg, VoteBundle):
            self._on_vote_bundle(msg)
        elif isinstance(msg, Commit):
            self._on_commit(msg.vote)
        elif isinstance(msg, ViewChange):
            self._on_view_change(msg)
        elif isinstance(msg, NewView):
            self._on_new_view(msg)
        elif isinstance(msg, FetchRequest):
            self._on_fetch_request(msg)
        elif isinstance(msg, FetchResponse):
            self._on_fetch_response(msg, sender)

    def _compute_max_message_size(self) -> int:
        """Bound the largest message: a new view (2f+1 view changes without
        payloads and up to two windows of re-proposed payloads; a view change
        sent to the new leader carries at most those payloads and its own
        certificates) or a fetch response (``fetch_batch`` blocks, each with
        its certificate)."""
        per_vote = 200
        per_vc = 2 * self.cfg.window * per_vote * (self.cfg.quorum + 2) + 4096
        payloads = 2 * self.cfg.window * (self.cfg.max_payload + 256)
        new_view = self.cfg.quorum * per_vc + payloads
        per_block = self.cfg.max_payload + per_vote * self.cfg.quorum + 256
        fetch = self.cfg.fetch_batch * per_block
        return min(codec.MAX_ENCODED_SIZE, max(new_view, fetch) + 65536)

    def _scan_votes(self, msg: Message) -> None:
        for vote in get_message_votes(msg):
            if (
                vote.kind in PBFT_KINDS
                and vote.signer in self._members
                and is_valid_vote(vote, self.cfg.chain_id)
            ):
                evidence = self._detector.process_vote(vote)
                if evidence is not None:
                    self._out.append(EmitEvidence(evidence))

    def _on_settled(self, event: CheckpointSettled) -> None:
        self._settled[event.height] = event.block_hash
        while len(self._settled) > MAX_SETTLED_REMEMBERED:
            del self._settled[min(self._settled)]
        mine = self._exec_digests.get(event.height)
        if mine is not None and mine != event.block_hash:
            self._out.append(Alert(f"settled checkpoint conflicts with block {event.height}"))

    def _conflicts_settled(self, seq: int, digest: bytes) -> bool:
        settled = self._settled.get(seq)
        if settled is not None and settled != digest:
            self._out.append(Alert(f"refused block {seq}: conflicts with settled checkpoint"))
            return True
        return False

    # ------------------------------------------------------------ normal case

    def _in_window(self, seq: int) -> bool:
        """Sequence numbers this replica proposes: above the stable checkpoint, within W."""
        return self.stable_seq < seq <= self.stable_seq + self.cfg.window

    def _in_accept_window(self, seq: int) -> bool:
        """Sequence numbers accepted from peers: 2W, so a replica whose checkpoint
        lags the leader's by up to W still accepts the leader's whole window."""
        return self.stable_seq < seq <= self.stable_seq + 2 * self.cfg.window

    def _maybe_propose(self) -> None:
        if self.in_view_change or not self.is_leader() or not self._work_pending:
            return
        if self._proposing_view != self.view:
            return  # entered this view without its new-view: proposing could conflict
        self._next_seq = max(self._next_seq, self.stable_seq + 1, self._view_floor + 1)
        while self._in_window(self._next_seq):
            if self._next_seq not in self._pre_prepares:
                self._requested.add(self._next_seq)
                self._out.append(RequestProposal(self._next_seq))
            self._next_seq += 1

    def _on_proposal(self, event: ProposalReady) -> None:
        seq = event.seq
        if seq not in self._requested:
            return
        self._requested.discard(seq)
        if self.in_view_change or not self.is_leader() or not self._in_window(seq):
            return
        if seq in self._pre_prepares or len(event.payload) > self.cfg.max_payload:
            return
        digest = compute_hash(event.payload)
        vote = self._sign(VoteKind.PBFT_PRE_PREPARE, self.view, seq, digest)
        if vote is None:
            return
        self._out.append(Broadcast(PrePrepare(vote, event.payload)))
        self._accept_pre_prepare(vote, event.payload)

    def _on_pre_prepare(self, vote: Vote, payload: bytes) -> None:
        if not self._is_valid(vote, VoteKind.PBFT_PRE_PREPARE):
            return
        if vote.signer != self.leader_of(vote.round) or vote.round < self.view:
            return
        if len(payload) > self.cfg.max_payload or compute_hash(payload) != vote.digest:
            return
        if vote.round > self.view or self.in_view_change:
            self._buffer_pre_prepare(vote, payload)
            return
        if not self._in_accept_window(vote.position) or vote.position in self._pre_prepares:
            return
        if vote.position <= self._view_floor:
            return  # the new-view plan decided this seq; a fresh proposal may not
        self._accept_pre_prepare(vote, payload)

    def _buffer_pre_prepare(self, vote: Vote, payload: bytes) -> None:
        """Keep a pre-prepare of a view not yet entered (it may overtake its new-view)."""
        if vote.round > self.view + 2 or len(self._early) >= 4 * self.cfg.window:
            return
        self._early.setdefault((vote.round, vote.position), (vote, payload))

    def _replay_early(self) -> None:
        early, self._early = self._early, {}
        for (view, _seq), (vote, payload) in sorted(early.items()):
            if view == self.view:
                self._on_pre_prepare(vote, payload)
            elif view > self.view:
                self._early[(view, _seq)] = (vote, payload)

    def _accept_pre_prepare(self, vote: Vote, payload: bytes) -> None:
        seq = vote.position
        if self._conflicts_settled(seq, vote.digest):
            return
        if seq <= self.executed and self._exec_digests.get(seq) != vote.digest:
            self._out.append(Alert(f"refused pre-prepare conflicting with executed block {seq}"))
            return
        self._pre_prepares[seq] = (vote, payload)
        prepare = self._sign(VoteKind.PBFT_PREPARE, vote.round, seq, vote.digest)
        if prepare is not None:
            self._send_vote(Prepare(prepare, vote))
            self._add_vote(self._prepares, prepare)
        if "progress" not in self._armed:
            self._arm("progress", self._timeout_ms)
        self._check_prepared(seq)
        self._check_committed(seq)

    def _add_vote(self, table: dict[tuple[int, int, bytes], dict[bytes, Vote]], vote: Vote) -> None:
        """Tally a vote. A signer counts for at most MAX_DIGESTS_PER_SIGNER digests per
        slot, so memory per slot stays below that times n however a Byzantine signs."""
        key = (vote.round, vote.position, vote.digest)
        bucket = table.get(key)
        if bucket is None:
            slot = (int(vote.kind), vote.round, vote.position, vote.signer)
            used = self._digests_signed.get(slot, 0)
            if used >= MAX_DIGESTS_PER_SIGNER:
                return
            self._digests_signed[slot] = used + 1
            bucket = table[key] = {}
        elif vote.signer not in bucket:
            slot = (int(vote.kind), vote.round, vote.position, vote.signer)
            used = self._digests_signed.get(slot, 0)
            if used >= MAX_DIGESTS_PER_SIGNER:
                return
            self._digests_signed[slot] = used + 1
        bucket[vote.signer] = vote

    def _send_vote(self, msg: Prepare | Commit) -> None:
        """Send this replica's own vote: to the leader when it collects votes
        (the leader's own vote travels in its bundle), else to every replica."""
        leader = self.leader_of(msg.vote.round)
        if not self.cfg.collect_votes:
            self._out.append(Broadcast(msg))
        elif leader != self.public_key:
            self._out.append(Send(self._index_of[leader], msg))

    def _relay_quorum(self, pre_prepare: Vote, votes: Iterable[Vote]) -> None:
        """As the collecting leader of the votes' view, send a quorum to every replica."""
        if self.cfg.collect_votes and self.leader_of(pre_prepare.round) == self.public_key:
            self._out.append(Broadcast(VoteBundle(pre_prepare, tuple(votes))))

    def _on_vote_bundle(self, msg: VoteBundle) -> None:
        """Tally each vote of a relayed bundle as if its signer had sent it."""
        if len(msg.votes) > self.cfg.n:
            self._out.append(Alert(f"dropped vote bundle of {len(msg.votes)} votes"))
            return
        for vote in msg.votes:
            if vote.kind == VoteKind.PBFT_PREPARE:
                self._on_prepare(vote)
            elif vote.kind == VoteKind.PBFT_COMMIT:
                self._on_commit(vote)

    def _on_prepare(self, vote: Vote) -> None:
        if not self._is_valid(vote, VoteKind.PBFT_PREPARE):
            return
        if vote.round != self.view or not self._in_accept_window(vote.position):
            return
        self._add_vote(self._prepares, vote)
        self._check_prepared(vote.position)

    def _on_commit(self, vote: Vote) -> None:
        if not self._is_valid(vote, VoteKind.PBFT_COMMIT):
            return
        if vote.position > self._peer_progress.get(vote.signer, 0):
            self._peer_progress[vote.signer] = vote.position
        if vote.round == self.view and self._in_accept_window(vote.position):
            self._add_vote(self._commits, vote)
            self._check_committed(vote.position)
        elif self._peer_height() > self.stable_seq + 2 * self.cfg.window:
            self._fetch(vote.signer)

    def _check_prepared(self, seq: int) -> None:
        entry = self._pre_prepares.get(seq)
        if entry is None:
            return
        pp, payload = entry
        votes = self._prepares.get((pp.round, seq, pp.digest), {})
        if len(votes) < self.cfg.quorum:
            return
        have = self._prepared.get(seq)
        if have is not None and have.pre_prepare.round >= pp.round:
            return
        chosen = tuple(sorted(votes.values(), key=lambda v: v.signer)[: self.cfg.quorum])
        proof = PreparedProof(pp, payload, chosen)
        self._prepared[seq] = proof
        self._persist(f"pbft/prepared/{seq}", proof.to_wire())
        self._relay_quorum(pp, chosen)
        commit = self._sign(VoteKind.PBFT_COMMIT, pp.round, seq, pp.digest)
        if commit is not None:
            self._send_vote(Commit(commit))
            self._add_vote(self._commits, commit)
        self._check_committed(seq)

    def _check_committed(self, seq: int) -> None:
        entry = self._pre_prepares.get(seq)
        if entry is None or seq <= self.executed or seq in self._committed:
            return
        pp, payload = entry
        votes = self._commits.get((pp.round, seq, pp.digest), {})
        if len(votes) < self.cfg.quorum:
            return
        chosen = sorted(votes.values(), key=lambda v: v.signer)[: self.cfg.quorum]
        qc = compute_certificate(pp.round, seq, pp.digest, chosen)
        self._committed[seq] = (payload, qc)
        self._relay_quorum(pp, qc.votes)
        self._execute_ready()

    def _execute_ready(self) -> None:
        progressed = False
        while self.executed + 1 in self._committed:
            seq = self.executed + 1
            payload, qc = self._committed.pop(seq)
            if self._conflicts_settled(seq, qc.digest):
                break
            require(qc.seq == seq and qc.digest == compute_hash(payload), "bad commit record")
            self.executed = seq
            self._exec_qcs[seq] = qc
            self._exec_digests[seq] = qc.digest
            self._persist("pbft/executed", [seq, qc.get_encoded_wire()])
            self._out.append(CommitBlock(seq, payload, qc))
            progressed = True
        if not progressed:
            return
        self._timeout_ms = self.cfg.base_timeout_ms
        self._advance_stable()
        if self._work_pending or self._has_uncommitted():
            self._arm("progress", self._timeout_ms)
        else:
            self._disarm("progress")
        self._maybe_propose()

    def _advance_stable(self) -> None:
        k = self.cfg.checkpoint_interval
        target = self.executed - self.executed % k
        if target <= self.stable_seq:
            return
        self.stable_seq = target
        self.stable_qc = self._exec_qcs.get(target)
        self._persist(
            "pbft/stable",
            [target, None if self.stable_qc is None else self.stable_qc.get_encoded_wire()],
        )
        for table in (self._prepares, self._commits):
            for key in [key for key in table if key[1] <= target]:
                del table[key]
        for slot in [slot for slot in self._digests_signed if slot[2] <= target]:
            del self._digests_signed[slot]
        for seq in [s for s in self._pre_prepares if s <= target]:
            del self._pre_prepares[seq]
        for seq in [s for s in self._prepared if s <= target]:
            del self._prepared[seq]
            self._persist(f"pbft/prepared/{seq}", None)
        for rec in [rec for rec in self._signed if rec[1] <= target]:
            del self._signed[rec]
            self._persist(f"pbft/signed/{rec[0]}/{rec[1]}", None)
        keep_from = target - 4 * self.cfg.window
        for seq in [s for s in self._exec_qcs if s < keep_from]:
            del self._exec_qcs[seq]
            self._exec_digests.pop(seq, None)

    # ------------------------------------------------------------ block sync

    def _fetch(self, peer: bytes) -> None:
        if self._fetch_busy or peer not in self._index_of or peer == self.public_key:
            return
        self._fetch_busy = True
        req = FetchRequest.compute(
            self._seed, self.public_key, self.executed + 1, self.executed + self.cfg.fetch_batch
        )
        self._out.append(Send(self._index_of[peer], req))
        self._arm("fetch", self.cfg.base_timeout_ms)

    def _best_peer(self) -> bytes | None:
        best = max(
            (pk for pk in self._peer_progress if pk != self.public_key),
            key=lambda pk: (self._peer_progress[pk], pk),
            default=None,
        )
        return best

    def _on_fetch_request(self, req: FetchRequest) -> None:
        if req.signer not in self._members or not req.is_signed():
            return
        if req.from_seq > req.to_seq or req.from_seq > self.executed:
            return
        last = min(req.to_seq, self.executed, req.from_seq + self.cfg.fetch_batch - 1)
        self._out.append(ServeBlocks(self._index_of[req.signer], req.from_seq, last))

    def _on_fetch_response(self, resp: FetchResponse, sender: int) -> None:
        self._fetch_busy = False
        self._disarm("fetch")
        before = self.executed
        for block in resp.blocks[: self.cfg.fetch_batch]:
            if block.seq != self.executed + 1:
                continue
            qc = block.qc
            if qc.seq != block.seq or qc.digest != compute_hash(block.payload):
                break
            if self._qc_error(qc) is not None:
                break
            self._committed[block.seq] = (block.payload, qc)
            self._adopt_view(qc.view)
            self._execute_ready()
        if self.executed > before and self._peer_height() > self.executed:
            peer = self.cfg.committee[sender] if 0 <= sender < self.cfg.n else self._best_peer()
            if peer is not None:
                self._fetch(peer)

    def _qc_error(self, qc: QuorumCertificate) -> str | None:
        signers: set[bytes] = set()
        for vote in qc.votes:
            if (vote.round, vote.position, vote.digest) != (qc.view, qc.seq, qc.digest):
                return "vote for another block"
            if vote.signer in signers or not self._is_valid(vote, VoteKind.PBFT_COMMIT):
                return "bad vote"
            signers.add(vote.signer)
        return None if len(signers) >= self.cfg.quorum else "too few votes"

    def _adopt_view(self, view: int) -> None:
        """A valid certificate of ``view`` shows the cluster operates in it."""
        if view > self.view or (view == self.view and self.in_view_change):
            self.view = view
            self.in_view_change = False
            self._persist_view()
            self._pre_prepares.clear()
            self._requested.clear()
            self._next_seq = self.executed + 1
            self._view_floor = self.executed
            self._replay_early()

    # ------------------------------------------------------------ view change

    def _on_timer(self, event: TimerFired) -> None:
        if self._tokens.get(event.name) != event.token or event.name not in self._armed:
            return
        self._armed.discard(event.name)
        if event.name == "fetch":
            self._fetch_busy = False
            return
        if event.name != "progress":
            return
        if self.in_view_change:
            # Escalate only once 2f+1 replicas have left the current view (PBFT's rule
            # that keeps a minority from racing ahead); until then, catch up on blocks.
            # A replica that asked for a higher view has left this one too: counting
            # only requests for exactly this view deadlocks when some honest replicas
            # already escalated past a view whose leader is silent.
            if self._count_left_view(self.view) >= self.cfg.quorum:
                self._start_view_change(self.view + 1)
            else:
                self._catch_up()
                if self._my_vc is not None and self._my_vc.new_view == self.view:
                    self._send_view_change(self._my_vc)  # retransmit: it may be lost
                self._arm("progress", self._timeout_ms)
            return
        # Behind peers that are still committing: this replica lags (slow link or
        # host), the leader works. Fetch and wait again instead of asking for a
        # view change, for as long as the cluster's height keeps rising (a
        # laggard in view change would be lost to the quorum until a new view).
        peers = self._peer_height()
        if peers > self.executed and (
            self._fetch_at_timeout != self.executed or peers > self._peers_at_timeout
        ):
            self._fetch_at_timeout = self.executed
            self._peers_at_timeout = peers
            peer = self._best_peer()
            if peer is not None:
                self._fetch_busy = False
                self._fetch(peer)
            self._arm("progress", self._timeout_ms)
            return
        if self._work_pending or self._has_uncommitted():
            self._start_view_change(self.view + 1)

    def _count_left_view(self, view: int) -> int:
        """Return how many replicas asked for ``view`` or a higher one."""
        return sum(1 for v in self._vc_max_view.values() if v >= view)

    def _catch_up(self) -> None:
        """Fetch committed blocks if an honest peer (f+1 reports) is ahead."""
        if self._peer_height() > self.executed:
            peer = self._best_peer()
            if peer is not None:
                self._fetch_busy = False
                self._fetch(peer)

    def _start_view_change(self, target: int) -> None:
        require(target >= self.view, "view never decreases")
        self._expose_pre_prepares()
        self.view = target
        self.in_view_change = True
        self._persist_view()
        self._pre_prepares.clear()
        self._requested.clear()
        for table in (self._prepares, self._commits):
            for key in [key for key in table if key[0] < target]:
                del table[key]
        for slot in [slot for slot in self._digests_signed if slot[1] < target]:
            del self._digests_signed[slot]
        proofs = [self._prepared[s] for s in sorted(self._prepared) if s > self.stable_seq]
        vc = ViewChange.compute(
            self._seed,
            self.public_key,
            target,
            self.stable_seq,
            self.stable_qc,
            tuple(p.get_votes() for p in proofs),
            tuple(p.payload for p in proofs),
        )
        self._send_view_change(vc)
        self._my_vc = vc
        self._store_view_change(vc)
        self._arm("progress", self._timeout_ms)
        self._timeout_ms = min(self._timeout_ms * 2, self.cfg.max_timeout_ms)
        self._check_new_view(target)

    def _expose_pre_prepares(self) -> None:
        """On leaving a view whose leader collected the votes, broadcast this
        replica's prepares of the blocks it has not executed, each relaying the
        leader's pre-prepare vote: a leader that sent conflicting pre-prepares
        to different replicas is then seen by every replica (equivocation
        evidence), as it is when every replica broadcasts its prepares."""
        if not self.cfg.collect_votes:
            return
        for seq in sorted(self._pre_prepares):
            pp, _payload = self._pre_prepares[seq]
            mine = self._prepares.get((pp.round, seq, pp.digest), {}).get(self.public_key)
            if seq > self.executed and mine is not None:
                self._out.append(Broadcast(Prepare(mine, pp)))

    def _send_view_change(self, vc: ViewChange) -> None:
        """Send ``vc`` with its payloads to the leader of its view and without
        them to every other replica (they need only the signed certificates)."""
        leader = self._index_of[self.leader_of(vc.new_view)]
        light = vc.without_payloads()
        for i in range(self.cfg.n):
            if i != self.index:
                self._out.append(Send(i, vc if i == leader else light))

    def _store_view_change(self, vc: ViewChange) -> None:
        self._view_changes.setdefault(vc.new_view, {})[vc.signer] = vc
        if vc.new_view > self._vc_max_view.get(vc.signer, -1):
            self._vc_max_view[vc.signer] = vc.new_view

    def _vc_error(self, vc: ViewChange) -> str | None:
        if vc.signer not in self._members or not vc.is_signed():
            return "bad view-change signature"
        if vc.stable_seq == 0:
            if vc.stable_qc is not None:
                return "genesis checkpoint carries a certificate"
        elif vc.stable_qc is None or vc.stable_qc.seq != vc.stable_seq:
            return "stable checkpoint without its certificate"
        elif self._qc_error(vc.stable_qc) is not None:
            return "bad stable checkpoint certificate"
        if len(vc.prepared) > 2 * self.cfg.window:
            return "too many prepared proofs"
        seen: set[int] = set()
        for p in vc.prepared:
            pp = p.pre_prepare
            if pp.position in seen:
                return "two proofs for one seq"
            seen.add(pp.position)
            if not (vc.stable_seq < pp.position <= vc.stable_seq + 2 * self.cfg.window):
                return "prepared proof outside the window"
            if pp.round >= vc.new_view or pp.signer != self.leader_of(pp.round):
                return "prepared proof from a wrong view or leader"
            if not self._is_valid(pp, VoteKind.PBFT_PRE_PREPARE):
                return "bad pre-prepare in proof"
            signers = set()
            for v in p.prepares:
                if (v.round, v.position, v.digest) != (pp.round, pp.position, pp.digest):
                    return "prepare for another block"
                if v.signer in signers or not self._is_valid(v, VoteKind.PBFT_PREPARE):
                    return "bad prepare in proof"
                signers.add(v.signer)
            if len(signers) < self.cfg.quorum:
                return "too few prepares in proof"
        return vc.get_payload_error(self.cfg.max_payload)

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.new_view > self.view + MAX_FUTURE_VIEWS:
            return
        err = self._vc_error(vc)
        if err is not None:
            self._out.append(Alert(f"dropped view change: {err}"))
            return
        if vc.stable_seq < self.executed and vc.signer != self.public_key:
            last = min(self.executed, vc.stable_seq + self.cfg.fetch_batch)
            self._out.append(ServeBlocks(self._index_of[vc.signer], vc.stable_seq + 1, last))
        if vc.new_view < self.view:
            return
        nv = self._my_nv
        if (
            vc.new_view == self.view
            and not self.in_view_change
            and nv is not None
            and nv.view == self.view
            and vc.signer != self.public_key
        ):
            self._out.append(Send(self._index_of[vc.signer], nv))  # it missed the new view
        self._store_view_change(vc)
        higher = sorted((v for v in self._vc_max_view.values() if v > self.view), reverse=True)
        if len(higher) > self.cfg.f:
            self._start_view_change(higher[self.cfg.f])
        self._check_new_view(vc.new_view)

    def _check_new_view(self, view: int) -> None:
        if view != self.view or not self.in_view_change or view in self._new_view_sent:
            return
        if self.leader_of(view) != self.public_key:
            return
        vcs = self._view_changes.get(view, {})
        if len(vcs) < self.cfg.quorum:
            return
        # Only view changes whose prepared payloads this leader holds: every
        # honest replica attaches them, so 2f+1 such view changes arrive.
        known = get_known_payloads(vcs.values(), self._prepared.values())
        usable = [
            vcs[k]
            for k in sorted(vcs)
            if all(p.pre_prepare.digest in known for p in vcs[k].prepared)
        ]
        if len(usable) < self.cfg.quorum:
            return
        chosen = tuple(vc.without_payloads() for vc in usable[: self.cfg.quorum])
        _min_s, plan = compute_new_view_plan(chosen)
        pps = []
        for seq, digest in plan:
            vote = self._sign(VoteKind.PBFT_PRE_PREPARE, view, seq, digest)
            if vote is None:
                return
            pps.append(PrePrepare(vote, known[digest]))
        self._new_view_sent.add(view)
        nv = NewView.compute(self._seed, self.public_key, view, chosen, tuple(pps))
        self._my_nv = nv
        self._out.append(Broadcast(nv))
        self._enter_new_view(nv)

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self.view or (nv.view == self.view and not self.in_view_change):
            return
        if nv.view > self.view + MAX_FUTURE_VIEWS:
            return
        err = self._nv_error(nv)
        if err is not None:
            self._out.append(Alert(f"dropped new view: {err}"))
            return
        self._enter_new_view(nv)

    def _nv_error(self, nv: NewView) -> str | None:
        if nv.signer != self.leader_of(nv.view) or not nv.is_signed():
            return "not signed by the new leader"
        signers = set()
        for vc in nv.view_changes:
            if vc.new_view != nv.view or vc.signer in signers:
                return "view change for another view or duplicated"
            err = self._vc_error(vc)
            if err is not None:
                return err
            signers.add(vc.signer)
        if len(signers) < self.cfg.quorum:
            return "too few view changes"
        _min_s, plan = compute_new_view_plan(nv.view_changes)
        if len(plan) != len(nv.pre_prepares):
            return "re-proposals do not match the view changes"
        for (seq, digest), pp in zip(plan, nv.pre_prepares, strict=True):
            v = pp.vote
            if (v.round, v.position, v.digest) != (nv.view, seq, digest):
                return "re-proposal differs from the view changes"
            if len(pp.payload) > self.cfg.max_payload or compute_hash(pp.payload) != digest:
                return "re-proposed payload does not match its digest"
            if v.signer != nv.signer or not self._is_valid(v, VoteKind.PBFT_PRE_PREPARE):
                return "bad re-proposal vote"
        return None

    def _enter_new_view(self, nv: NewView) -> None:
        self.view = nv.view
        self.in_view_change = False
        self._persist_view()
        self._pre_prepares.clear()
        self._requested.clear()
        for v in [v for v in self._view_changes if v <= nv.view]:
            del self._view_changes[v]
        min_s, plan = compute_new_view_plan(nv.view_changes)
        if min_s > self.executed:
            holder = max(nv.view_changes, key=lambda vc: (vc.stable_seq, vc.signer))
            self._fetch_busy = False
            self._fetch(holder.signer)
        for pp in nv.pre_prepares:
            if pp.vote.position > self.stable_seq:
                self._accept_pre_prepare(pp.vote, pp.payload)
        self._view_floor = max([min_s] + [seq for seq, _ in plan])
        self._proposing_view = nv.view
        self._next_seq = self._view_floor + 1
        self._arm("progress", self._timeout_ms)
        self._replay_early()
        self._maybe_propose()
