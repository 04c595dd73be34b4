"""PoS settlement validator as a pure state machine.

Epoch e ends at PBFT height e * epoch_length. After executing that block a
validator of the epoch's set signs a checkpoint vote (epoch, height,
compute_checkpoint_digest(block_hash, state_digest)) and broadcasts it. Votes
holding strictly more than 2/3 of the set's bonded stake settle the
checkpoint. Epochs settle in order; the validator set (and PBFT committee) for
epoch e+1 is the last ``next_validators`` the ledger reported in blocks up to
e * epoch_length, applied only once checkpoint e is settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consensus import codec
from consensus.checkpoint import (
    SettledCheckpoint,
    compute_checkpoint_digest,
    compute_committee,
    get_settled_checkpoint_error,
    is_stake_quorum,
    validators_from_wire,
    validators_to_wire,
)
from consensus.crypto import compute_public_key
from consensus.detector import EquivocationDetector
from consensus.events import (
    Action,
    Alert,
    BlockExecuted,
    Broadcast,
    EmitEvidence,
    Event,
    MessageReceived,
    Persist,
    Send,
    SetTimer,
    SettleCheckpoint,
    TimerFired,
    ValidatorSetChanged,
)
from consensus.invariant import require
from consensus.messages import (
    CheckpointVote,
    MessageError,
    SettledNotice,
    decode_message,
    get_message_votes,
)
from consensus.verify import is_valid_vote
from consensus.votes import Vote, VoteKind, compute_vote

MAX_PENDING_EPOCHS = 16
MAX_SETTLED_KEPT = 64
# Epochs whose checkpoint votes the equivocation detector remembers (one vote
# per genesis validator each): 8 times the pending range. With a fixed 20,000 votes
# every node's memory grew for about an hour at the benchmark's block rate.
DETECTOR_EPOCHS = 128
POS_MESSAGE_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class PosConfig:
    """Parameters of the settlement layer."""

    chain_id: str
    epoch_length: int
    genesis_validators: Mapping[bytes, int]
    genesis_hash: bytes = b"\x00" * 32
    committee_size: int = 10
    retry_ms: int = 1000

    def get_error(self) -> str | None:
        """Return None iff the parameters are usable, else why not."""
        if self.epoch_length < 1:
            return "epoch_length must be positive"
        if not self.genesis_validators or any(s <= 0 for s in self.genesis_validators.values()):
            return "genesis validators must be non-empty with positive stakes"
        return None


class PosValidator:
    """One settlement validator (or a non-voting follower when ``seed`` is None)."""

    def __init__(
        self, config: PosConfig, seed: bytes | None, restored: Mapping[str, bytes] | None = None
    ) -> None:
        err = config.get_error()
        require(err is None, f"bad PoS config: {err}")
        self.cfg = config
        self._seed = seed
        self.public_key = compute_public_key(seed) if seed is not None else b""
        self.validators: dict[bytes, int] = dict(config.genesis_validators)
        self.settled: SettledCheckpoint | None = None
        self.settled_hashes: dict[int, bytes] = {}
        self._settled_cps: dict[int, SettledCheckpoint] = {}
        self._boundaries: dict[int, tuple[int, bytes, bytes]] = {}
        self._changes: dict[int, dict[bytes, int]] = {}
        self._signed: dict[int, bytes] = {}
        self._my_votes: dict[int, CheckpointVote] = {}
        # Validators whose vote for the last settled epoch arrived here after it
        # settled (at most one entry per validator; cleared when an epoch settles).
        self._late_voters: set[bytes] = set()
        self._tally: dict[tuple[int, int, bytes], dict[bytes, CheckpointVote]] = {}
        self._detector = EquivocationDetector(DETECTOR_EPOCHS * len(self.validators))
        self._retry_token = 0
        self._executed_height = 0
        # Settled, but its boundary block is not executed here yet: the next validator
        # set (which the ledger reports in blocks) is unknown until it is.
        self._set_pending = False
        self._out: list[Action] = []
        if restored:
            self._restore(restored)

    @property
    def settled_epoch(self) -> int:
        """The last settled epoch (0 = genesis)."""
        return 0 if self.settled is None else self.settled.epoch

    def _restore(self, records: Mapping[str, bytes]) -> None:
        for key, raw in records.items():
            value = codec.decode(raw)
            if key == "pos/state":
                self.settled = SettledCheckpoint.from_wire(value[0])
                self.validators = validators_from_wire(value[1])
                self._set_pending = bool(value[2])
                self.settled_hashes[self.settled.height] = self.settled.block_hash
            elif key.startswith("pos/signed/"):
                self._signed[int(key.rsplit("/", 1)[1])] = bytes(value)

    def start(self) -> list[Action]:
        """Return the actions to run once after construction (or restart)."""
        self._out = []
        self._arm_retry()
        return self._take()

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _arm_retry(self) -> None:
        self._retry_token += 1
        self._out.append(SetTimer("pos-retry", self.cfg.retry_ms, self._retry_token))

    def step(self, event: Event) -> list[Action]:
        """Process one event; return the actions to execute in order."""
        self._out = []
        if isinstance(event, BlockExecuted):
            self._on_block(event)
        elif isinstance(event, MessageReceived):
            self._on_bytes(event.data, event.sender)
        elif (
            isinstance(event, TimerFired)
            and event.name == "pos-retry"
            and event.token == self._retry_token
        ):
            for epoch in sorted(self._my_votes):
                if epoch > self.settled_epoch:
                    self._out.append(Broadcast(self._my_votes[epoch]))
            self._arm_retry()
        return self._take()

    # ------------------------------------------------------------ blocks

    def _on_block(self, ev: BlockExecuted) -> None:
        settled_hash = self.settled_hashes.get(ev.height)
        if settled_hash is not None and settled_hash != ev.block_hash:
            self._out.append(Alert(f"block {ev.height} conflicts with a settled checkpoint"))
            return
        e = self.cfg.epoch_length
        epoch = (ev.height + e - 1) // e
        if epoch > self.settled_epoch + MAX_PENDING_EPOCHS:
            self._out.append(Alert("block too far beyond the last settled checkpoint"))
            return
        self._executed_height = max(self._executed_height, ev.height)
        late = self._set_pending and epoch == self.settled_epoch
        if ev.next_validators is not None and (epoch > self.settled_epoch or late):
            self._changes[epoch] = dict(ev.next_validators)
        if self._set_pending and self.settled is not None and ev.height >= self.settled.height:
            self._set_pending = False
            self._apply_set_change(self.settled)
            nxt = self.settled_epoch + 1
            if nxt in self._boundaries:
                self._sign_checkpoint(nxt)
            self._try_settle(nxt)
        if self.settled is not None and ev.height <= self.settled.height:
            return
        if ev.height % e != 0:
            return
        self._boundaries[epoch] = (ev.height, ev.block_hash, ev.state_digest)
        self._sign_checkpoint(epoch)

    def _validators_for(self, epoch: int) -> dict[bytes, int] | None:
        if epoch != self.settled_epoch + 1 or self._set_pending:
            return None
        return self.validators

    def _sign_checkpoint(self, epoch: int) -> None:
        if self._seed is None or epoch in self._my_votes or self._set_pending:
            return
        if epoch != self.settled_epoch + 1 or self.public_key not in self.validators:
            return
        height, block_hash, state_digest = self._boundaries[epoch]
        digest = compute_checkpoint_digest(block_hash, state_digest)
        previous = self._signed.get(epoch)
        if previous is not None and previous != digest:
            self._out.append(Alert(f"refused to sign a second checkpoint for epoch {epoch}"))
            return
        if previous is None:
            self._signed[epoch] = digest
            self._out.append(Persist(f"pos/signed/{epoch}", codec.encode(digest)))
        vote = compute_vote(
            self._seed,
            self.public_key,
            self.cfg.chain_id,
            VoteKind.POS_CHECKPOINT,
            epoch,
            height,
            digest,
        )
        msg = CheckpointVote(vote, block_hash, state_digest)
        self._my_votes[epoch] = msg
        self._out.append(Broadcast(msg))
        self._arm_retry()  # re-broadcast only a vote unsettled for a whole retry_ms
        self._add(msg)

    # ------------------------------------------------------------ messages

    def _on_bytes(self, data: bytes, sender: int) -> None:
        try:
            msg = decode_message(data, max_size=POS_MESSAGE_LIMIT)
        except MessageError as exc:
            self._out.append(Alert(f"dropped malformed message: {exc}"))
            return
        for vote in get_message_votes(msg):
            self._scan(vote)
        if isinstance(msg, CheckpointVote):
            self._on_vote(msg, sender)
        elif isinstance(msg, SettledNotice):
            self._on_notice(msg.checkpoint)

    def _scan(self, vote: Vote) -> None:
        if vote.kind != VoteKind.POS_CHECKPOINT or not is_valid_vote(vote, self.cfg.chain_id):
            return
        evidence = self._detector.process_vote(vote)
        if evidence is not None:
            self._out.append(EmitEvidence(evidence))

    def _on_vote(self, msg: CheckpointVote, sender: int) -> None:
        vote = msg.vote
        if vote.kind != VoteKind.POS_CHECKPOINT or not is_valid_vote(vote, self.cfg.chain_id):
            return
        if vote.digest != compute_checkpoint_digest(msg.block_hash, msg.state_digest):
            return
        if vote.round <= self.settled_epoch:
            known = self._settled_cps.get(vote.round)
            if known is not None and sender >= 0 and self._is_sender_behind(vote):
                self._out.append(Send(sender, SettledNotice(known)))
            if vote.round == self.settled_epoch and vote.signer in self.validators:
                self._late_voters.add(vote.signer)
            return
        if vote.round > self.settled_epoch + MAX_PENDING_EPOCHS:
            return
        if vote.position != vote.round * self.cfg.epoch_length:
            return
        self._add(msg)

    def _is_sender_behind(self, vote: Vote) -> bool:
        """Return True iff a vote for an already settled epoch shows its sender is
        behind: the vote is for an epoch before the last settled one, it is this
        validator's vote for the last settled epoch arriving again (its retry,
        ``retry_ms`` later, still unsettled), or its signer is not a validator.

        A validator's first late vote for the last settled epoch is the common
        race: this node settled on the earlier votes, and the sender gets the
        same votes, so a notice from every node that settled first would only
        cost frames.
        """
        return (
            vote.round != self.settled_epoch
            or vote.signer not in self.validators
            or vote.signer in self._late_voters
        )

    def _add(self, msg: CheckpointVote) -> None:
        """Tally a vote by a current validator; a signer backs at most two digests per
        epoch (the second is already evidence), which bounds the tally."""
        v = msg.vote
        if v.signer not in self.validators:
            return
        backed = sum(
            1 for (e, _h, _d), votes in self._tally.items() if e == v.round and v.signer in votes
        )
        key = (v.round, v.position, v.digest)
        if backed >= 2 and v.signer not in self._tally.get(key, {}):
            return
        self._tally.setdefault(key, {})[v.signer] = msg
        self._try_settle(v.round)

    def _try_settle(self, epoch: int) -> None:
        validators = self._validators_for(epoch)
        if validators is None:
            return
        total = sum(validators.values())
        for (e, height, digest), votes in sorted(self._tally.items()):
            if e != epoch:
                continue
            members = {pk: m for pk, m in votes.items() if pk in validators}
            stake = sum(validators[pk] for pk in members)
            if is_stake_quorum(stake, total):
                first = next(iter(members.values()))
                cp = SettledCheckpoint(
                    epoch,
                    height,
                    first.block_hash,
                    first.state_digest,
                    tuple(members[pk].vote for pk in sorted(members)),
                )
                require(cp.digest == digest, "tally digest mismatch")
                self._settle(cp)
                return

    def _on_notice(self, cp: SettledCheckpoint) -> None:
        if cp.epoch != self.settled_epoch + 1 or self._set_pending:
            return
        err = get_settled_checkpoint_error(cp, self.validators, self.cfg.chain_id)
        if err is not None:
            self._out.append(Alert(f"dropped settled checkpoint: {err}"))
            return
        self._settle(cp)

    def _settle(self, cp: SettledCheckpoint) -> None:
        require(cp.epoch == self.settled_epoch + 1, "checkpoints settle in order")
        mine = self._boundaries.get(cp.epoch)
        if mine is not None and mine[1] != cp.block_hash:
            self._out.append(Alert(f"local block {cp.height} conflicts with settled checkpoint"))
        self.settled = cp
        self._late_voters.clear()
        self.settled_hashes[cp.height] = cp.block_hash
        self._settled_cps[cp.epoch] = cp
        while len(self.settled_hashes) > MAX_SETTLED_KEPT:
            del self.settled_hashes[min(self.settled_hashes)]
        while len(self._settled_cps) > MAX_SETTLED_KEPT:
            del self._settled_cps[min(self._settled_cps)]
        if cp.height <= self._executed_height:
            self._apply_set_change(cp)
        else:
            self._set_pending = True
            self._persist_state()
        self._out.append(SettleCheckpoint(cp))
        for key in [k for k in self._tally if k[0] <= cp.epoch]:
            del self._tally[key]
        for epoch in [e for e in self._boundaries if e <= cp.epoch]:
            del self._boundaries[epoch]
        for epoch in [e for e in self._my_votes if e <= cp.epoch]:
            del self._my_votes[epoch]
        for epoch in [e for e in self._signed if e < cp.epoch]:
            del self._signed[epoch]
            self._out.append(Persist(f"pos/signed/{epoch}", None))
        for epoch in [e for e in self._changes if e < cp.epoch]:
            del self._changes[epoch]
        nxt = cp.epoch + 1
        if nxt in self._boundaries:
            self._sign_checkpoint(nxt)
        self._try_settle(nxt)

    def _apply_set_change(self, cp: SettledCheckpoint) -> None:
        """Apply the validator set the ledger reported in epoch ``cp.epoch`` (if any)."""
        change = self._changes.pop(cp.epoch, None)
        if change is not None and change != self.validators:
            self.validators = change
            committee = compute_committee(change, self.cfg.committee_size, cp.block_hash)
            self._out.append(ValidatorSetChanged(cp.epoch + 1, dict(change), committee))
        self._persist_state()

    def _persist_state(self) -> None:
        require(self.settled is not None, "state is persisted after a settlement")
        if self.settled is not None:
            value = [
                self.settled.to_wire(),
                validators_to_wire(self.validators),
                self._set_pending,
            ]
            self._out.append(Persist("pos/state", codec.encode(value)))
