"""Deterministic cluster simulator: PBFT replicas and PoS validators in one
process, a virtual clock and a seeded network.

The network delays, drops, duplicates and reorders messages, partitions and
heals; nodes crash and restart with exactly what they persisted; Byzantine
nodes equivocate, double-vote, stay silent, replay old messages or double-sign
checkpoints. After every step the checker verifies:

* safety: no two honest nodes commit different blocks at one height; every
  honest node commits heights in order, once each, with a valid certificate;
* settlement: settled checkpoints never conflict, settle in order, carry > 2/3
  of the epoch's stake and match the committed chain;
* evidence: whenever an honest node has received two conflicting votes by one
  key, it has emitted evidence for them; all evidence is valid and names a
  Byzantine key;
* liveness: after the network heals (at most f PBFT replicas faulty) every
  honest replica commits a new block within ``recovery_bound_ms`` and all reach
  the block target within ``recovery_bound_ms + blocks * 1000`` ms.

A run is a pure function of its parameters: a failing seed replays identically.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from consensus.certificate import get_certificate_error
from consensus.checkpoint import compute_leader_order, get_settled_checkpoint_error
from consensus.crypto import compute_hash, compute_hash_parts, compute_public_key
from consensus.crypto import compute_seed_from_label as seed_of
from consensus.events import (
    Action,
    Alert,
    BlockExecuted,
    Broadcast,
    CancelTimer,
    CheckpointSettled,
    CommitBlock,
    EmitEvidence,
    MessageReceived,
    Persist,
    ProposalReady,
    RequestProposal,
    Send,
    ServeBlocks,
    SetTimer,
    SettleCheckpoint,
    TimerFired,
    ValidatorSetChanged,
    WorkAvailable,
)
from consensus.evidence import get_evidence_error
from consensus.messages import (
    CommittedBlock,
    FetchResponse,
    Message,
    decode_message,
    get_message_votes,
)
from consensus.pbft import PBFT_KINDS, PbftConfig, PbftReplica
from consensus.pos import PosConfig, PosValidator
from consensus.sim.byzantine import (
    BYZANTINE_PBFT_KINDS,
    ByzantineReplica,
    DoubleSigningValidator,
    RawSend,
)
from consensus.votes import VoteKind

CHAIN_ID = "dmchain-sim"
ALL_FAULTS = ("drop", "dup", "partition", "crash", *BYZANTINE_PBFT_KINDS, "posdouble")
STAKE = 10
MAX_EVENTS = 3_000_000


@dataclass
class Scenario:
    """An explicit fault plan (hand-written tests); times in virtual ms.

    ``crashes``: (node index, crash time, restart time or -1 for never);
    ``partitions``: (start, end, node id -> group) with PBFT ids 0..n-1 and
    PoS ids n..n+m-1 (unlisted ids are in group 0).
    """

    byzantine: dict[int, str] = field(default_factory=dict)
    crashes: list[tuple[int, int, int]] = field(default_factory=list)
    partitions: list[tuple[int, int, dict[int, int]]] = field(default_factory=list)
    heal_ms: int = 0
    drop: float = 0.0
    dup: float = 0.0
    pos_double: list[int] = field(default_factory=list)
    pos_crashes: list[tuple[int, int, int]] = field(default_factory=list)
    check_liveness: bool = True
    end_ms: int | None = None


@dataclass(frozen=True)
class SimParams:
    """One simulation run."""

    seed: int
    pbft: int = 10
    pos: int = 8
    blocks: int = 50
    faults: tuple[str, ...] = ALL_FAULTS
    epoch_length: int = 5
    window: int = 12
    checkpoint_interval: int = 4
    base_timeout_ms: int = 500
    max_timeout_ms: int = 8000
    weak_quorum: bool = False
    block_interval_ms: int = 60
    collect_votes: bool = True


@dataclass
class SimResult:
    """What one run produced."""

    seed: int
    blocks: int
    evidence: int
    violations: list[str]
    recovery_ms: int
    settled_epochs: int
    end_ms: int
    events: int


@dataclass
class _Node:
    gid: int
    group: str
    index: int
    seed: bytes
    byz: str | None = None
    machine: Any = None
    alive: bool = True
    incarnation: int = 0
    disk: dict[str, bytes] = field(default_factory=dict)
    store: dict[int, tuple[bytes, Any]] = field(default_factory=dict)
    executed: int = 0
    settled_epoch: int = 0
    seen_votes: dict[tuple[int, int, int, bytes], bytes] = field(default_factory=dict)
    evidence_keys: set[tuple[int, int, int, bytes]] = field(default_factory=set)
    last_block_t: int = 0
    first_commit_after_heal: int | None = None
    commit_times: list[int] = field(default_factory=list)


class Simulator:
    """Runs one seeded scenario and checks the invariants after every step."""

    def __init__(self, params: SimParams, scenario: Scenario | None = None) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        n, m = params.pbft, params.pos
        keys = {seed_of(f"sim-pbft-{i}"): i for i in range(n)}
        pubs = {compute_public_key(s): s for s in keys}
        order = compute_leader_order(
            dict.fromkeys(pubs, 1), compute_hash(b"sim-genesis" + bytes([params.seed % 256]))
        )
        self.committee = order
        self.f = (n - 1) // 3
        self.pcfg = PbftConfig(
            chain_id=CHAIN_ID,
            committee=order,
            window=params.window,
            checkpoint_interval=params.checkpoint_interval,
            base_timeout_ms=params.base_timeout_ms,
            max_timeout_ms=params.max_timeout_ms,
            weak_quorum_for_tests=params.weak_quorum,
            collect_votes=params.collect_votes,
        )
        self.nodes: list[_Node] = []
        for i, pk in enumerate(order):
            self.nodes.append(_Node(i, "pbft", i, pubs[pk]))
        pos_seeds = [seed_of(f"sim-pos-{j}") for j in range(m)]
        self.pos_keys = [compute_public_key(s) for s in pos_seeds]
        for j in range(m):
            self.nodes.append(_Node(n + j, "pos", j, pos_seeds[j]))
        self.ledger_validators = dict.fromkeys(self.pos_keys, STAKE)
        self.poscfg = PosConfig(
            chain_id=CHAIN_ID,
            epoch_length=params.epoch_length,
            genesis_validators=dict(self.ledger_validators),
            committee_size=n,
        )
        self.plan = scenario if scenario is not None else self._random_plan()
        self.heap: list[tuple[int, int, int, int, tuple[Any, ...]]] = []
        self.counter = 0
        self.now = 0
        self.violations: list[str] = []
        self.canonical: dict[int, bytes] = {}
        self.canon_len = 0
        self.state_digest = b"\x00" * 32
        self.chain_events: list[BlockExecuted] = []
        self.settled: dict[int, tuple[int, bytes, bytes]] = {}
        self.epoch_validators: dict[int, dict[bytes, int]] = {1: dict(self.ledger_validators)}
        self.set_after_height: dict[int, dict[bytes, int]] = {0: dict(self.ledger_validators)}
        self.evidence_ids: set[bytes] = set()
        self.byz_keys = {self.committee[i] for i, kind in self.plan.byzantine.items() if kind} | {
            self.pos_keys[j] for j in self.plan.pos_double
        }
        self.jailed: set[bytes] = set()
        self.payload_counter = 0
        self.events = 0

    # ------------------------------------------------------------ planning

    def _random_plan(self) -> Scenario:
        rng, n, m, f = self.rng, self.p.pbft, self.p.pos, self.f
        faults = set(self.p.faults)
        sc = Scenario(heal_ms=rng.randint(1500, 5000) if faults else 0)
        sc.drop = 0.05 if "drop" in faults else 0.0
        sc.dup = 0.05 if "dup" in faults else 0.0
        kinds = [k for k in (*BYZANTINE_PBFT_KINDS, "crash") if k in faults]
        if kinds and f > 0:
            count = f if rng.random() < 0.6 else rng.randint(0, f)
            for i in rng.sample(range(n), count):
                kind = rng.choice(kinds)
                if kind == "crash":
                    at = rng.randint(0, sc.heal_ms - 600)
                    sc.crashes.append((i, at, rng.randint(at + 100, sc.heal_ms)))
                else:
                    sc.byzantine[i] = kind
        if "partition" in faults and rng.random() < 0.7:
            start = rng.randint(0, sc.heal_ms - 500)
            end = rng.randint(start + 200, sc.heal_ms)
            ids = list(range(n))
            rng.shuffle(ids)
            k = rng.choice([n // 2, n - f, rng.randint(1, n - 1)])
            groups = {gid: (0 if pos < k else 1) for pos, gid in enumerate(ids)}
            for j in range(m):
                groups[n + j] = rng.randint(0, 1)
            sc.partitions.append((start, end, groups))
        pos_ids = list(range(m))
        rng.shuffle(pos_ids)
        if "posdouble" in faults and m >= 4:
            sc.pos_double.append(pos_ids.pop())
        if "crash" in faults and m >= 4 and rng.random() < 0.5:
            at = rng.randint(0, sc.heal_ms - 600)
            sc.pos_crashes.append((pos_ids.pop(), at, rng.randint(at + 100, sc.heal_ms)))
        return sc

    # ------------------------------------------------------------ machines

    def _build(self, node: _Node) -> Any:
        restored = dict(node.disk) or None
        if node.group == "pbft":
            inner = PbftReplica(self.pcfg, node.seed, restored)
            kind = self.plan.byzantine.get(node.index)
            if kind:
                node.byz = kind
                return ByzantineReplica(inner, kind, node.seed, self.rng, self.p.pbft)
            return inner
        pos = PosValidator(self.poscfg, node.seed, restored)
        if node.index in self.plan.pos_double:
            node.byz = "posdouble"
            return DoubleSigningValidator(pos, node.seed)
        return pos

    def _push(self, t: int, gid: int, item: tuple[Any, ...], inc: int = -1) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (t, self.counter, gid, inc, item))

    def _start_node(self, node: _Node) -> None:
        node.machine = self._build(node)
        self._apply(node, node.machine.start())
        if node.group == "pbft":
            self._step(node, WorkAvailable(True))
        else:
            for ev in self.chain_events:
                self._schedule_block(node, ev)

    # ------------------------------------------------------------ network

    def _partitioned(self, a: int, b: int) -> bool:
        for start, end, groups in self.plan.partitions:
            if start <= self.now < end and groups.get(a, 0) != groups.get(b, 0):
                return True
        return False

    def _send(self, src: _Node, dst_gid: int, data: bytes, msg: Message) -> None:
        if dst_gid == src.gid:
            return
        faulty_net = self.now < self.plan.heal_ms
        if faulty_net and self.rng.random() < self.plan.drop:
            return
        copies = 2 if faulty_net and self.rng.random() < self.plan.dup else 1
        for _ in range(copies):
            delay = self.rng.randint(1, 15)
            if self.rng.random() < 0.05:
                delay += self.rng.randint(0, 150)
            self._push(self.now + delay, dst_gid, ("msg", src.index, src.gid, data, msg))

    def _group_ids(self, node: _Node) -> range:
        n = self.p.pbft
        return range(n) if node.group == "pbft" else range(n, n + self.p.pos)

    def _gid(self, node: _Node, index: int) -> int:
        return index if node.group == "pbft" else self.p.pbft + index

    # ------------------------------------------------------------ actions

    def _apply(self, node: _Node, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Persist):
                if action.value is None:
                    node.disk.pop(action.key, None)
                else:
                    node.disk[action.key] = action.value
            elif isinstance(action, Broadcast):
                data = action.message.to_bytes()
                for gid in self._group_ids(node):
                    self._send(node, gid, data, action.message)
            elif isinstance(action, Send):
                self._send(
                    node, self._gid(node, action.to), action.message.to_bytes(), action.message
                )
            elif isinstance(action, RawSend):
                self._send(
                    node, self._gid(node, action.to), action.data, decode_message(action.data)
                )
            elif isinstance(action, SetTimer):
                self._push(
                    self.now + action.delay_ms,
                    node.gid,
                    ("timer", TimerFired(action.name, action.token)),
                    node.incarnation,
                )
            elif isinstance(action, RequestProposal):
                self.payload_counter += 1
                payload = b"block:%d:%d:%d:%d" % (
                    self.p.seed,
                    node.index,
                    action.seq,
                    self.payload_counter,
                )
                ready = max(self.now + 1, action.seq * self.p.block_interval_ms)
                self._push(
                    ready,
                    node.gid,
                    ("proposal", ProposalReady(action.seq, payload)),
                    node.incarnation,
                )
            elif isinstance(action, CommitBlock):
                self._on_commit(node, action)
            elif isinstance(action, ServeBlocks):
                blocks = tuple(
                    CommittedBlock(s, node.store[s][0], node.store[s][1])
                    for s in range(action.from_seq, action.to_seq + 1)
                    if s in node.store
                )
                if blocks:
                    resp = FetchResponse(blocks)
                    self._send(node, self._gid(node, action.to), resp.to_bytes(), resp)
            elif isinstance(action, SettleCheckpoint):
                self._on_settle(node, action)
            elif isinstance(action, EmitEvidence):
                self._on_evidence(node, action)
            elif isinstance(action, (CancelTimer, Alert, ValidatorSetChanged)):
                pass

    def _violate(self, what: str) -> None:
        self.violations.append(f"t={self.now}ms {what}")

    def _on_commit(self, node: _Node, action: CommitBlock) -> None:
        seq, digest = action.seq, compute_hash(action.payload)
        node.store[seq] = (action.payload, action.qc)
        if node.byz:
            node.executed = max(node.executed, seq)
            return
        if seq != node.executed + 1:
            self._violate(
                f"safety: node {node.index} committed height {seq} after "
                f"{node.executed} (prefix changed or skipped)"
            )
        node.executed = seq
        node.commit_times.append(self.now)
        if self.now >= self.plan.heal_ms and node.first_commit_after_heal is None:
            node.first_commit_after_heal = self.now
        if not self.p.weak_quorum:
            err = get_certificate_error(action.qc, self.committee, self.f, CHAIN_ID)
            if err is not None or action.qc.digest != digest or action.qc.seq != seq:
                self._violate(f"safety: node {node.index} committed {seq} with bad QC: {err}")
        known = self.canonical.get(seq)
        if known is None:
            self.canonical[seq] = digest
            self._extend_chain()
        elif known != digest:
            self._violate(f"safety: two honest nodes committed different blocks at height {seq}")

    def _extend_chain(self) -> None:
        while self.canon_len + 1 in self.canonical:
            h = self.canon_len + 1
            block_hash = self.canonical[h]
            self.state_digest = compute_hash_parts(b"state", self.state_digest, block_hash)
            change = None
            e = self.p.epoch_length
            if h == e + 2:
                honest = [
                    j
                    for j in range(self.p.pos)
                    if j not in self.plan.pos_double
                    and all(c[0] != j for c in self.plan.pos_crashes)
                ]
                if honest:
                    self.ledger_validators[self.pos_keys[honest[0]]] += 5
                    change = dict(self.ledger_validators)
            for pk in sorted(self.jailed):
                if pk in self.ledger_validators:
                    del self.ledger_validators[pk]
                    change = dict(self.ledger_validators)
            self.set_after_height[h] = dict(self.ledger_validators)
            ev = BlockExecuted(h, block_hash, self.state_digest, change)
            self.chain_events.append(ev)
            self.canon_len = h
            for node in self.nodes[self.p.pbft :]:
                if node.alive:
                    self._schedule_block(node, ev)

    def _schedule_block(self, node: _Node, ev: BlockExecuted) -> None:
        t = max(self.now + self.rng.randint(1, 30), node.last_block_t)
        node.last_block_t = t
        self._push(t, node.gid, ("block", ev), node.incarnation)

    def _on_settle(self, node: _Node, action: SettleCheckpoint) -> None:
        cp = action.checkpoint
        if node.byz:
            return
        if cp.epoch != node.settled_epoch + 1:
            self._violate(
                f"settlement: node {node.index} settled epoch {cp.epoch} after {node.settled_epoch}"
            )
        node.settled_epoch = cp.epoch
        vset = self.epoch_validators.get(cp.epoch)
        if vset is None:
            self._violate(f"settlement: epoch {cp.epoch} settled before its validator set")
        else:
            err = get_settled_checkpoint_error(cp, vset, CHAIN_ID)
            if err is not None:
                self._violate(f"settlement: invalid settled checkpoint {cp.epoch}: {err}")
        if self.canonical.get(cp.height) != cp.block_hash:
            self._violate(f"settlement: checkpoint {cp.epoch} conflicts with committed chain")
        known = self.settled.get(cp.epoch)
        mine = (cp.height, cp.block_hash, cp.state_digest)
        if known is None:
            self.settled[cp.epoch] = mine
            after = self.set_after_height.get(cp.height)
            if after is not None:
                self.epoch_validators[cp.epoch + 1] = after
            for other in self.nodes[: self.p.pbft]:
                if other.alive:
                    self._push(
                        self.now + 1,
                        other.gid,
                        ("settled", CheckpointSettled(cp.height, cp.block_hash)),
                        other.incarnation,
                    )
        elif known != mine:
            self._violate(f"settlement: conflicting settled checkpoints for epoch {cp.epoch}")

    def _on_evidence(self, node: _Node, action: EmitEvidence) -> None:
        ev = action.evidence
        if node.byz:
            return
        err = get_evidence_error(ev, CHAIN_ID)
        if err is not None:
            self._violate(f"evidence: node {node.index} emitted invalid evidence: {err}")
            return
        if ev.offender not in self.byz_keys:
            self._violate(f"safety: honest key equivocated (evidence by {node.group} {node.index})")
        v = ev.first
        node.evidence_keys.add((int(v.kind), v.round, v.position, v.signer))
        self.evidence_ids.add(ev.evidence_id())
        if node.group == "pos" and v.kind == VoteKind.POS_CHECKPOINT:
            self.jailed.add(ev.offender)

    # ------------------------------------------------------------ stepping

    def _step(self, node: _Node, event: Any) -> None:
        self._apply(node, node.machine.step(event))

    def _deliver(
        self, node: _Node, sender_index: int, sender_gid: int, data: bytes, msg: Message
    ) -> None:
        if self._partitioned(sender_gid, node.gid):
            return
        expect: list[tuple[int, int, int, bytes]] = []
        if not node.byz:
            for v in get_message_votes(msg):
                relevant = (
                    v.kind in PBFT_KINDS and v.signer in self.pcfg.committee
                    if node.group == "pbft"
                    else v.kind == VoteKind.POS_CHECKPOINT
                )
                if not relevant:
                    continue
                key = (int(v.kind), v.round, v.position, v.signer)
                first = node.seen_votes.setdefault(key, v.digest)
                if first != v.digest:
                    expect.append(key)
        self._step(node, MessageReceived(data, sender_index))
        for key in expect:
            if key not in node.evidence_keys:
                self._violate(
                    f"evidence: {node.group} node {node.index} saw an equivocation "
                    f"by {key[3].hex()[:8]} and emitted no evidence"
                )

    def _crash(self, node: _Node) -> None:
        node.alive = False
        node.incarnation += 1

    def _restart(self, node: _Node) -> None:
        node.alive = True
        node.incarnation += 1
        node.seen_votes.clear()
        node.evidence_keys.clear()
        self._start_node(node)

    def _done(self) -> bool:
        if self.now < self.plan.heal_ms:
            return False
        target_epoch = self.p.blocks // self.p.epoch_length
        for node in self.nodes:
            if node.byz or not node.alive:
                continue
            if node.group == "pbft" and node.executed < self.p.blocks:
                return False
            if node.group == "pos" and node.settled_epoch < target_epoch:
                return False
        return True

    @property
    def recovery_bound_ms(self) -> int:
        """Stated liveness bound after healing: 2 (f + 2) max view-change timeouts."""
        return 2 * (self.f + 2) * self.p.max_timeout_ms

    def run(self) -> SimResult:
        """Run to completion (or the time bound) and return the result."""
        for node in self.nodes:
            self._start_node(node)
        for i, at, back in self.plan.crashes:
            self._push(at, i, ("crash",))
            if back >= 0:
                self._push(back, i, ("restart",))
        for j, at, back in self.plan.pos_crashes:
            self._push(at, self.p.pbft + j, ("crash",))
            if back >= 0:
                self._push(back, self.p.pbft + j, ("restart",))
        end = self.plan.end_ms
        if end is None:
            end = self.plan.heal_ms + self.recovery_bound_ms + self.p.blocks * 1000
        while self.heap and self.events < MAX_EVENTS:
            t, _, gid, inc, item = heapq.heappop(self.heap)
            if t > end:
                break
            self.now = t
            self.events += 1
            node = self.nodes[gid]
            kind = item[0]
            if kind == "crash":
                self._crash(node)
                continue
            if kind == "restart":
                self._restart(node)
                continue
            if not node.alive or (inc >= 0 and inc != node.incarnation):
                continue
            if kind == "msg":
                self._deliver(node, item[1], item[2], item[3], item[4])
            elif kind in ("timer", "proposal", "block", "settled"):
                self._step(node, item[1])
            if self.violations:
                break
            if self._done():
                break
        recovery = self._check_liveness(end)
        return SimResult(
            seed=self.p.seed,
            blocks=self.canon_len,
            evidence=len(self.evidence_ids),
            violations=self.violations,
            recovery_ms=recovery,
            settled_epochs=max(self.settled, default=0),
            end_ms=self.now,
            events=self.events,
        )

    def _check_liveness(self, end: int) -> int:
        if self.violations or not self.plan.check_liveness:
            return 0
        worst = 0
        heal = self.plan.heal_ms
        for node in self.nodes:
            if node.byz or node.group != "pbft" or not node.alive:
                continue
            if node.executed < self.p.blocks:
                self._violate(
                    f"liveness: pbft node {node.index} committed {node.executed} of "
                    f"{self.p.blocks} blocks by t={end}ms (healed at {heal}ms)"
                )
                return worst
            if node.first_commit_after_heal is not None:
                took = node.first_commit_after_heal - heal
                worst = max(worst, took)
                if took > self.recovery_bound_ms:
                    self._violate(
                        f"liveness: pbft node {node.index} took {took}ms after heal "
                        f"to commit (bound {self.recovery_bound_ms}ms)"
                    )
        target_epoch = self.p.blocks // self.p.epoch_length
        for node in self.nodes[self.p.pbft :]:
            if not node.byz and node.alive and node.settled_epoch < target_epoch:
                self._violate(
                    f"liveness: pos node {node.index} settled {node.settled_epoch} "
                    f"of {target_epoch} epochs"
                )
                break
        return worst


def run_seed(params: SimParams, scenario: Scenario | None = None) -> SimResult:
    """Run one simulation (pure function of its arguments)."""
    return Simulator(params, scenario).run()
