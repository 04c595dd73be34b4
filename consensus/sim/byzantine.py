"""Byzantine behaviours for the simulator.

Each wraps an honest machine holding the same key and rewrites or adds to its
actions. They sign real, valid votes, so every equivocation they produce is
genuine evidence that honest machines must detect.
"""

from __future__ import annotations

import random
from typing import Any

from consensus.crypto import compute_hash
from consensus.events import Action, Broadcast, Event, MessageReceived, Send
from consensus.messages import (
    CheckpointVote,
    Commit,
    Message,
    Prepare,
    PrePrepare,
    decode_message,
)
from consensus.pbft import PbftReplica
from consensus.pos import PosValidator
from consensus.votes import Vote, VoteKind, compute_vote

BYZANTINE_PBFT_KINDS = ("equivocate", "doublevote", "silent", "replay")
REPLAY_MEMORY = 256


class ByzantineReplica:
    """A PBFT replica that misbehaves in one of BYZANTINE_PBFT_KINDS."""

    def __init__(
        self, inner: PbftReplica, kind: str, seed: bytes, rng: random.Random, n: int
    ) -> None:
        self.inner = inner
        self.kind = kind
        self._seed = seed
        self._rng = rng
        self._n = n
        self._old: list[bytes] = []
        self._voted: set[tuple[int, int, bytes]] = set()
        self.equivocations = 0

    def start(self) -> list[Action]:
        """Start the wrapped machine (silent replicas do nothing)."""
        return [] if self.kind == "silent" else self.inner.start()

    def step(self, event: Event) -> list[Action]:
        """Process ``event`` honestly, then misbehave."""
        if self.kind == "silent":
            return []
        actions: list[Any] = self.inner.step(event)
        if not isinstance(event, MessageReceived):
            return self._rewrite(actions)
        if self.kind == "replay":
            if len(self._old) < REPLAY_MEMORY:
                self._old.append(event.data)
            else:
                self._old[self._rng.randrange(REPLAY_MEMORY)] = event.data
            if self._rng.random() < 0.3:
                actions.append(_Raw(self._rng.randrange(self._n), self._rng.choice(self._old)))
        elif self.kind == "doublevote":
            actions.extend(self._double_vote(decode_message(event.data)))
        elif self.kind == "equivocate":
            actions.extend(self._relay_votes(decode_message(event.data), event.sender))
        return self._rewrite(actions)

    def _relay_votes(self, msg: Message, sender: int) -> list[Action]:
        """As the collecting leader, relay each vote its signer sent it to all
        replicas, so each side of an equivocation sees the votes for its own digest."""
        if not isinstance(msg, (Prepare, Commit)):
            return []
        vote = msg.vote
        committee = self.inner.cfg.committee
        is_own_view = self.inner.leader_of(vote.round) == self.inner.public_key
        if is_own_view and 0 <= sender < len(committee) and committee[sender] == vote.signer:
            return [Broadcast(msg)]
        return []

    def _vote(self, kind: VoteKind, view: int, seq: int, digest: bytes) -> Vote:
        pk = self.inner.public_key
        return compute_vote(self._seed, pk, self.inner.cfg.chain_id, kind, view, seq, digest)

    def _double_vote(self, msg: Message) -> list[Action]:
        pp: Vote | None = None
        if isinstance(msg, PrePrepare):
            pp = msg.vote
        elif isinstance(msg, Prepare):
            pp = msg.pre_prepare
        if pp is None:
            return []
        out: list[Action] = []
        bogus = compute_hash(b"bogus" + pp.digest)
        for digest in (pp.digest, bogus):
            key = (pp.round, pp.position, digest)
            if key in self._voted:
                continue
            self._voted.add(key)
            if digest == bogus:
                self.equivocations += 1
            prep = self._vote(VoteKind.PBFT_PREPARE, pp.round, pp.position, digest)
            out.append(Broadcast(Prepare(prep, pp)))
            out.append(
                Broadcast(Commit(self._vote(VoteKind.PBFT_COMMIT, pp.round, pp.position, digest)))
            )
        return out

    def _rewrite(self, actions: list[Action]) -> list[Action]:
        if self.kind != "equivocate":
            return actions
        out: list[Action] = []
        for action in actions:
            if isinstance(action, Broadcast) and isinstance(action.message, PrePrepare):
                out.extend(self._equivocate(action.message))
            else:
                out.append(action)
        return out

    def _equivocate(self, pp: PrePrepare) -> list[Action]:
        v = pp.vote
        alt_payload = pp.payload + b"/alt"
        alt = self._vote(VoteKind.PBFT_PRE_PREPARE, v.round, v.position, compute_hash(alt_payload))
        self.equivocations += 1
        peers = [i for i in range(self._n) if i != self.inner.index]
        self._rng.shuffle(peers)
        half = len(peers) // 2
        out: list[Action] = [Send(i, pp) for i in peers[:half]]
        out += [Send(i, PrePrepare(alt, alt_payload)) for i in peers[half:]]
        prep = self._vote(VoteKind.PBFT_PREPARE, v.round, v.position, alt.digest)
        out.append(Broadcast(Prepare(prep, alt)))
        com = self._vote(VoteKind.PBFT_COMMIT, v.round, v.position, alt.digest)
        out.append(Broadcast(Commit(com)))
        return out


class _Raw:
    """A replayed raw message (simulator-internal action)."""

    __slots__ = ("data", "to")

    def __init__(self, to: int, data: bytes) -> None:
        self.to = to
        self.data = data


RawSend = _Raw


class DoubleSigningValidator:
    """A PoS validator that signs a second, conflicting checkpoint for every epoch."""

    def __init__(self, inner: PosValidator, seed: bytes) -> None:
        self.inner = inner
        self._seed = seed
        self.equivocations = 0

    def start(self) -> list[Action]:
        """Start the wrapped machine."""
        return self.inner.start()

    def step(self, event: Event) -> list[Action]:
        """Process honestly; for every own checkpoint vote also send a conflicting one."""
        actions = self.inner.step(event)
        out: list[Action] = []
        for action in actions:
            out.append(action)
            if isinstance(action, Broadcast) and isinstance(action.message, CheckpointVote):
                msg = action.message
                fake_state = compute_hash(b"forged-state" + msg.state_digest)
                from consensus.checkpoint import compute_checkpoint_digest

                digest = compute_checkpoint_digest(msg.block_hash, fake_state)
                v = msg.vote
                vote = compute_vote(
                    self._seed,
                    v.signer,
                    v.chain_id,
                    VoteKind.POS_CHECKPOINT,
                    v.round,
                    v.position,
                    digest,
                )
                self.equivocations += 1
                out.append(Broadcast(CheckpointVote(vote, msg.block_hash, fake_state)))
        return out
