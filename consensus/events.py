"""Events fed to the consensus machines and actions they return.

A machine is driven by ``actions = machine.step(event)``. The driver executes
the actions in list order: a :class:`Persist` must be durable before any later
:class:`Send`/:class:`Broadcast` of the same list is put on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consensus.certificate import QuorumCertificate
from consensus.checkpoint import SettledCheckpoint
from consensus.evidence import Evidence
from consensus.messages import Message

# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Raw wire bytes from a peer (``sender`` is a transport hint only)."""

    data: bytes
    sender: int = -1


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set by :class:`SetTimer` expired; ``token`` must match."""

    name: str
    token: int


@dataclass(frozen=True, slots=True)
class ProposalReady:
    """The node's answer to :class:`RequestProposal`: the payload for ``seq``."""

    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class WorkAvailable:
    """Whether the node has transactions waiting (arms the progress timer)."""

    pending: bool


@dataclass(frozen=True, slots=True)
class BlockExecuted:
    """A committed block was executed by the ledger (drives PoS checkpoints).

    ``next_validators`` (public key -> stake) is the validator set the ledger
    computed in this block, or None if it did not change; it takes effect at the
    next settled epoch boundary only."""

    height: int
    block_hash: bytes
    state_digest: bytes
    next_validators: Mapping[bytes, int] | None = None


@dataclass(frozen=True, slots=True)
class CheckpointSettled:
    """Tell the PBFT replica about a settled checkpoint (it refuses conflicts)."""

    height: int
    block_hash: bytes


Event = (
    MessageReceived | TimerFired | ProposalReady | WorkAvailable | BlockExecuted | CheckpointSettled
)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to peer index ``to``."""

    to: int
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other peer of the machine's group."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Start (or restart) timer ``name``; fire TimerFired(name, token) after ``delay_ms``."""

    name: str
    delay_ms: int
    token: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop timer ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably store ``value`` under ``key`` (None deletes) before later sends."""

    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class RequestProposal:
    """The leader has room in its window: answer with ProposalReady(seq, payload)."""

    seq: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Block ``seq`` is committed (in order, exactly once per seq): execute and store it."""

    seq: int
    payload: bytes
    qc: QuorumCertificate


@dataclass(frozen=True, slots=True)
class ServeBlocks:
    """Peer ``to`` asked for committed blocks: send FetchResponse from the store."""

    to: int
    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class SettleCheckpoint:
    """A PoS checkpoint is settled and final."""

    checkpoint: SettledCheckpoint


@dataclass(frozen=True, slots=True)
class ValidatorSetChanged:
    """From ``epoch`` on, the validator set and PBFT committee (leader order) are these."""

    epoch: int
    validators: Mapping[bytes, int]
    committee: tuple[bytes, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EmitEvidence:
    """Equivocation was observed; submit ``evidence`` to the ledger."""

    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Alert:
    """Input was refused for a reason an operator should see (never a crash)."""

    reason: str


Action = (
    Send
    | Broadcast
    | SetTimer
    | CancelTimer
    | Persist
    | RequestProposal
    | CommitBlock
    | ServeBlocks
    | SettleCheckpoint
    | ValidatorSetChanged
    | EmitEvidence
    | Alert
)
