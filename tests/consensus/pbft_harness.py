"""A tiny synchronous driver for unit tests of the PBFT machine (no simulator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.crypto import compute_public_key, compute_seed_from_label
from consensus.events import (
    Action,
    Broadcast,
    CommitBlock,
    EmitEvidence,
    Event,
    MessageReceived,
    Persist,
    ProposalReady,
    RequestProposal,
    Send,
    SetTimer,
    TimerFired,
    WorkAvailable,
)
from consensus.messages import Message
from consensus.pbft import PbftConfig, PbftReplica

CHAIN = "test-chain"


@dataclass
class Harness:
    """n replicas; messages are delivered FIFO through ``drop`` filters."""

    n: int = 4
    replicas: list[PbftReplica] = field(default_factory=list)
    queue: list[tuple[int, int, Message]] = field(default_factory=list)
    timers: dict[int, dict[str, int]] = field(default_factory=dict)
    commits: dict[int, list[CommitBlock]] = field(default_factory=dict)
    evidence: dict[int, list[EmitEvidence]] = field(default_factory=dict)
    disks: dict[int, dict[str, bytes]] = field(default_factory=dict)
    pending_proposals: list[tuple[int, RequestProposal]] = field(default_factory=list)
    drop: Callable[[int, int, Message], bool] = lambda src, dst, msg: False
    down: set[int] = field(default_factory=set)
    collect_votes: bool = True

    def __post_init__(self) -> None:
        self.seeds = [compute_seed_from_label(f"unit-{i}") for i in range(self.n)]
        committee = tuple(compute_public_key(s) for s in self.seeds)
        self.cfg = PbftConfig(
            chain_id=CHAIN,
            committee=committee,
            window=4,
            checkpoint_interval=2,
            collect_votes=self.collect_votes,
        )
        for i in range(self.n):
            self.replicas.append(PbftReplica(self.cfg, self.seeds[i]))
            self.commits[i] = []
            self.evidence[i] = []
            self.disks[i] = {}
            self.timers[i] = {}
        for i in range(self.n):
            self.apply(i, self.replicas[i].start())

    def apply(self, i: int, actions: list[Action]) -> None:
        """Execute a replica's actions (proposals are queued, not answered)."""
        for a in actions:
            if isinstance(a, Broadcast):
                self.queue += [(i, j, a.message) for j in range(self.n) if j != i]
            elif isinstance(a, Send):
                self.queue.append((i, a.to, a.message))
            elif isinstance(a, SetTimer):
                self.timers[i][a.name] = a.token
            elif isinstance(a, CommitBlock):
                self.commits[i].append(a)
            elif isinstance(a, EmitEvidence):
                self.evidence[i].append(a)
            elif isinstance(a, Persist):
                if a.value is None:
                    self.disks[i].pop(a.key, None)
                else:
                    self.disks[i][a.key] = a.value
            elif isinstance(a, RequestProposal):
                self.pending_proposals.append((i, a))

    def step(self, i: int, event: Event) -> None:
        """Feed one event to replica i (ignored while it is down)."""
        if i not in self.down:
            self.apply(i, self.replicas[i].step(event))

    def propose(self, payload_prefix: bytes = b"p") -> None:
        """Answer every pending RequestProposal."""
        pending, self.pending_proposals = self.pending_proposals, []
        for i, req in pending:
            self.step(i, ProposalReady(req.seq, payload_prefix + b"%d" % req.seq))

    def deliver_all(self, limit: int = 100_000) -> None:
        """Deliver queued messages until none is left."""
        steps = 0
        while self.queue and steps < limit:
            src, dst, msg = self.queue.pop(0)
            steps += 1
            if dst in self.down or src in self.down or self.drop(src, dst, msg):
                continue
            self.step(dst, MessageReceived(msg.to_bytes(), src))

    def fire(self, i: int, name: str = "progress") -> None:
        """Fire replica i's current timer ``name``."""
        token = self.timers[i].get(name)
        if token is not None:
            self.step(i, TimerFired(name, token))

    def start_work(self) -> None:
        """Tell every replica there is work pending."""
        for i in range(self.n):
            self.step(i, WorkAvailable(True))
