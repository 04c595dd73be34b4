"""Wire messages of the PBFT channel and the PoS settlement layer.

Every message has ``to_bytes()`` and is parsed by :func:`decode_message`,
which is bounded and raises only :class:`MessageError`. Sender authentication
never relies on the transport: votes are signed, and view-change, new-view
and fetch-request messages carry the sender's signature over their body.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from consensus import codec
from consensus.certificate import CertificateError, QuorumCertificate
from consensus.checkpoint import CheckpointError, SettledCheckpoint
from consensus.crypto import (
    DIGEST_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    compute_hash,
    compute_signature,
)
from consensus.verify import is_valid_signed
from consensus.votes import Vote

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
MAX_LIST_ITEMS = 1024
SIGNED_DOMAIN = "dmchain/pbft-msg/v1"

TAG_PRE_PREPARE = 1
TAG_PREPARE = 2
TAG_COMMIT = 3
TAG_VIEW_CHANGE = 4
TAG_NEW_VIEW = 5
TAG_FETCH_REQUEST = 6
TAG_FETCH_RESPONSE = 7
TAG_CHECKPOINT_VOTE = 8
TAG_SETTLED = 9
TAG_VOTE_BUNDLE = 10


class MessageError(ValueError):
    """Raised for bytes that are not a well-formed consensus message."""


def _vote(value: Any) -> Vote:
    try:
        return Vote.from_wire(value)
    except ValueError as exc:
        raise MessageError(f"bad vote: {exc}") from exc


def _uint(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MessageError(f"{name} must be a non-negative integer")
    return value


def _bytes(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise MessageError(f"{name} must be {size if size else 'some'} bytes")
    return value


def _list(value: Any, name: str, limit: int = MAX_LIST_ITEMS) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise MessageError(f"{name} must be a list of at most {limit} items")
    return value


# Signature results of view-change, new-view and fetch messages, by (signer,
# signature, hash of the signed bytes): a view change is checked again inside
# the new view. Keyed by a hash so that the cache keeps no message alive.
SIGNED_CACHE_ENTRIES = 1024
_signed_cache: OrderedDict[tuple[bytes, bytes, bytes], bool] = OrderedDict()


def _is_signed_once(msg: ViewChange | NewView | FetchRequest) -> bool:
    body = msg.signing_bytes()
    key = (msg.signer, msg.signature, compute_hash(body))
    valid = _signed_cache.get(key)
    if valid is None:
        valid = is_valid_signed(msg.signer, body, msg.signature)
        _signed_cache[key] = valid
        if len(_signed_cache) > SIGNED_CACHE_ENTRIES:
            _signed_cache.popitem(last=False)
    return valid


def compute_signed_body(tag: int, body: list[Any]) -> bytes:
    """Return the domain-separated bytes that a message signature covers."""
    return codec.encode([SIGNED_DOMAIN, tag, body])


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """Leader's proposal: a PBFT_PRE_PREPARE vote and the payload it names."""

    vote: Vote
    payload: bytes

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_PRE_PREPARE, self.vote.to_wire(), self.payload]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class Prepare:
    """A prepare vote, relaying the leader's pre-prepare vote it answers
    (so an equivocating leader is seen by every replica)."""

    vote: Vote
    pre_prepare: Vote

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_PREPARE, self.vote.to_wire(), self.pre_prepare.to_wire()]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit vote."""

    vote: Vote

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_COMMIT, self.vote.to_wire()]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class VoteBundle:
    """Prepare or commit votes a leader collected for one (view, seq, digest),
    relayed in one message with the leader's pre-prepare vote they answer."""

    pre_prepare: Vote
    votes: tuple[Vote, ...]

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_VOTE_BUNDLE, self.pre_prepare.to_wire(), [v.to_wire() for v in self.votes]]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class PreparedVotes:
    """The signed part of a prepared certificate: the leader's pre-prepare vote
    and 2f+1 matching prepare votes. The payload is named by the pre-prepare's
    digest; a view change carries it only to the new leader."""

    pre_prepare: Vote
    prepares: tuple[Vote, ...]

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [self.pre_prepare.to_wire(), [v.to_wire() for v in self.prepares]]

    @staticmethod
    def from_wire(value: Any) -> PreparedVotes:
        """Parse; raises MessageError."""
        items = _list(value, "prepared votes", 2)
        if len(items) != 2:
            raise MessageError("prepared votes must have 2 fields")
        return PreparedVotes(_vote(items[0]), tuple(_vote(v) for v in _list(items[1], "prepares")))


@dataclass(frozen=True, slots=True)
class PreparedProof:
    """Proof that a replica prepared (view, seq, digest): the pre-prepare, its
    payload and 2f+1 matching prepare votes (kept and persisted by the replica)."""

    pre_prepare: Vote
    payload: bytes
    prepares: tuple[Vote, ...]

    def get_votes(self) -> PreparedVotes:
        """Return the signed part, without the payload."""
        return PreparedVotes(self.pre_prepare, self.prepares)

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [self.pre_prepare.to_wire(), self.payload, [v.to_wire() for v in self.prepares]]

    @staticmethod
    def from_wire(value: Any) -> PreparedProof:
        """Parse; raises MessageError."""
        items = _list(value, "prepared proof", 3)
        if len(items) != 3:
            raise MessageError("prepared proof must have 3 fields")
        votes = tuple(_vote(v) for v in _list(items[2], "prepares"))
        return PreparedProof(_vote(items[0]), _bytes(items[1], "payload"), votes)


@dataclass(frozen=True, slots=True)
class ViewChange:
    """A replica's request to move to ``new_view``: its stable checkpoint (with
    the certificate of that block) and its prepared certificates above it; signed.

    ``payloads`` is empty or holds, for each prepared certificate in order, the
    payload whose hash is its digest. It is outside the signature (the digest,
    signed by the leader and 2f+1 replicas, authenticates it) and is sent to
    the new leader only, which needs the payloads to re-propose them; every
    other replica gets the view change without them."""

    new_view: int
    stable_seq: int
    stable_qc: QuorumCertificate | None
    prepared: tuple[PreparedVotes, ...]
    signer: bytes
    signature: bytes
    payloads: tuple[bytes, ...] = ()

    def body(self) -> list[Any]:
        """Return the signed body."""
        return [
            self.new_view,
            self.stable_seq,
            None if self.stable_qc is None else self.stable_qc.to_wire(),
            [p.to_wire() for p in self.prepared],
            self.signer,
        ]

    def signing_bytes(self) -> bytes:
        """Return the bytes the signature covers."""
        return compute_signed_body(TAG_VIEW_CHANGE, self.body())

    def is_signed(self) -> bool:
        """Return True iff the signature by ``signer`` verifies (checked once per message)."""
        return _is_signed_once(self)

    def get_payload_error(self, max_payload: int) -> str | None:
        """Return None iff ``payloads`` is empty or matches the prepared
        certificates one to one (size and hash), else why not."""
        if not self.payloads:
            return None
        if len(self.payloads) != len(self.prepared):
            return "payloads do not match the prepared certificates"
        for p, payload in zip(self.prepared, self.payloads, strict=True):
            if len(payload) > max_payload or compute_hash(payload) != p.pre_prepare.digest:
                return "payload does not match its digest"
        return None

    def without_payloads(self) -> ViewChange:
        """Return the same signed view change without the payloads."""
        return replace(self, payloads=()) if self.payloads else self

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_VIEW_CHANGE, self.body(), self.signature, list(self.payloads)]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())

    @staticmethod
    def compute(
        seed: bytes,
        signer: bytes,
        new_view: int,
        stable_seq: int,
        stable_qc: QuorumCertificate | None,
        prepared: tuple[PreparedVotes, ...],
        payloads: tuple[bytes, ...] = (),
    ) -> ViewChange:
        """Return a view change signed with ``seed``, carrying ``payloads``."""
        unsigned = ViewChange(new_view, stable_seq, stable_qc, prepared, signer, b"")
        sig = compute_signature(seed, unsigned.signing_bytes())
        return ViewChange(new_view, stable_seq, stable_qc, prepared, signer, sig, payloads)

    @staticmethod
    def from_body(body: Any, signature: Any, payloads: Any = ()) -> ViewChange:
        """Parse a body, signature and payloads; raises MessageError."""
        items = _list(body, "view change", 5)
        if len(items) != 5:
            raise MessageError("view change must have 5 fields")
        qc = None
        if items[2] is not None:
            try:
                qc = QuorumCertificate.from_wire(items[2])
            except CertificateError as exc:
                raise MessageError(str(exc)) from exc
        prepared = tuple(PreparedVotes.from_wire(p) for p in _list(items[3], "prepared"))
        attached = tuple(_bytes(p, "payload") for p in _list(payloads, "payloads"))
        return ViewChange(
            _uint(items[0], "new_view"),
            _uint(items[1], "stable_seq"),
            qc,
            prepared,
            _bytes(items[4], "signer", PUBLIC_KEY_SIZE),
            _bytes(signature, "signature", SIGNATURE_SIZE),
            attached,
        )


@dataclass(frozen=True, slots=True)
class NewView:
    """The new leader's proof (2f+1 view changes) and its re-proposals; signed."""

    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    signer: bytes
    signature: bytes

    def body(self) -> list[Any]:
        """Return the signed body."""
        return [
            self.view,
            [vc.without_payloads().to_wire() for vc in self.view_changes],
            [pp.to_wire() for pp in self.pre_prepares],
            self.signer,
        ]

    def signing_bytes(self) -> bytes:
        """Return the bytes the signature covers."""
        return compute_signed_body(TAG_NEW_VIEW, self.body())

    def is_signed(self) -> bool:
        """Return True iff the signature by ``signer`` verifies (checked once per message)."""
        return _is_signed_once(self)

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_NEW_VIEW, self.body(), self.signature]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())

    @staticmethod
    def compute(
        seed: bytes,
        signer: bytes,
        view: int,
        view_changes: tuple[ViewChange, ...],
        pre_prepares: tuple[PrePrepare, ...],
    ) -> NewView:
        """Return a new-view message signed with ``seed`` (view changes without payloads)."""
        view_changes = tuple(vc.without_payloads() for vc in view_changes)
        unsigned = NewView(view, view_changes, pre_prepares, signer, b"")
        sig = compute_signature(seed, unsigned.signing_bytes())
        return NewView(view, view_changes, pre_prepares, signer, sig)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Ask a peer for committed blocks ``from_seq..to_seq`` (inclusive); signed."""

    from_seq: int
    to_seq: int
    signer: bytes
    signature: bytes

    def body(self) -> list[Any]:
        """Return the signed body."""
        return [self.from_seq, self.to_seq, self.signer]

    def signing_bytes(self) -> bytes:
        """Return the bytes the signature covers."""
        return compute_signed_body(TAG_FETCH_REQUEST, self.body())

    def is_signed(self) -> bool:
        """Return True iff the signature by ``signer`` verifies (checked once per message)."""
        return _is_signed_once(self)

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_FETCH_REQUEST, self.body(), self.signature]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())

    @staticmethod
    def compute(seed: bytes, signer: bytes, from_seq: int, to_seq: int) -> FetchRequest:
        """Return a fetch request signed with ``seed``."""
        sig = compute_signature(
            seed, compute_signed_body(TAG_FETCH_REQUEST, [from_seq, to_seq, signer])
        )
        return FetchRequest(from_seq, to_seq, signer, sig)


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A committed block: its sequence number, payload and commit certificate."""

    seq: int
    payload: bytes
    qc: QuorumCertificate

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [self.seq, self.payload, self.qc.to_wire()]


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """Committed blocks in ascending order; authenticated by their certificates."""

    blocks: tuple[CommittedBlock, ...]

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_FETCH_RESPONSE, [b.to_wire() for b in self.blocks]]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class CheckpointVote:
    """A PoS checkpoint vote with the block hash and state digest it covers."""

    vote: Vote
    block_hash: bytes
    state_digest: bytes

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_CHECKPOINT_VOTE, self.vote.to_wire(), self.block_hash, self.state_digest]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


@dataclass(frozen=True, slots=True)
class SettledNotice:
    """A settled checkpoint, sent to validators that are behind."""

    checkpoint: SettledCheckpoint

    def to_wire(self) -> list[Any]:
        """Return the codec-encodable form."""
        return [TAG_SETTLED, self.checkpoint.to_wire()]

    def to_bytes(self) -> bytes:
        """Return the canonical wire bytes."""
        return codec.encode(self.to_wire())


Message = (
    PrePrepare
    | Prepare
    | Commit
    | VoteBundle
    | ViewChange
    | NewView
    | FetchRequest
    | FetchResponse
    | CheckpointVote
    | SettledNotice
)


def _pre_prepare(items: list[Any]) -> PrePrepare:
    if len(items) != 3 or items[0] != TAG_PRE_PREPARE:
        raise MessageError("pre-prepare must have 3 fields")
    return PrePrepare(_vote(items[1]), _bytes(items[2], "payload"))


def _view_change(items: list[Any]) -> ViewChange:
    if len(items) != 4 or items[0] != TAG_VIEW_CHANGE:
        raise MessageError("view change must be [tag, body, signature, payloads]")
    return ViewChange.from_body(items[1], items[2], items[3])


def _decode_items(items: list[Any]) -> Message:
    if not items:
        raise MessageError("empty message")
    tag = items[0]
    if tag == TAG_PRE_PREPARE:
        return _pre_prepare(items)
    if tag == TAG_PREPARE:
        if len(items) != 3:
            raise MessageError("prepare must have 3 fields")
        return Prepare(_vote(items[1]), _vote(items[2]))
    if tag == TAG_COMMIT:
        if len(items) != 2:
            raise MessageError("commit must have 2 fields")
        return Commit(_vote(items[1]))
    if tag == TAG_VOTE_BUNDLE:
        if len(items) != 3:
            raise MessageError("vote bundle must have 3 fields")
        votes = tuple(_vote(v) for v in _list(items[2], "bundled votes"))
        return VoteBundle(_vote(items[1]), votes)
    if tag == TAG_VIEW_CHANGE:
        return _view_change(items)
    if tag == TAG_NEW_VIEW:
        if len(items) != 3:
            raise MessageError("new view must be [tag, body, signature]")
        body = _list(items[1], "new view body", 4)
        if len(body) != 4:
            raise MessageError("new view body must have 4 fields")
        vcs = tuple(_view_change(_list(v, "view change")) for v in _list(body[1], "view changes"))
        if any(vc.payloads for vc in vcs):
            raise MessageError("a view change inside a new view carries no payloads")
        pps = tuple(_pre_prepare(_list(p, "pre-prepare")) for p in _list(body[2], "pre-prepares"))
        return NewView(
            _uint(body[0], "view"),
            vcs,
            pps,
            _bytes(body[3], "signer", PUBLIC_KEY_SIZE),
            _bytes(items[2], "signature", SIGNATURE_SIZE),
        )
    if tag == TAG_FETCH_REQUEST:
        if len(items) != 3:
            raise MessageError("fetch request must be [tag, body, signature]")
        body = _list(items[1], "fetch body", 3)
        if len(body) != 3:
            raise MessageError("fetch body must have 3 fields")
        return FetchRequest(
            _uint(body[0], "from_seq"),
            _uint(body[1], "to_seq"),
            _bytes(body[2], "signer", PUBLIC_KEY_SIZE),
            _bytes(items[2], "signature", SIGNATURE_SIZE),
        )
    if tag == TAG_FETCH_RESPONSE:
        if len(items) != 2:
            raise MessageError("fetch response must have 2 fields")
        blocks = []
        for raw in _list(items[1], "blocks"):
            b = _list(raw, "block", 3)
            if len(b) != 3:
                raise MessageError("block must have 3 fields")
            try:
                qc = QuorumCertificate.from_wire(b[2])
            except CertificateError as exc:
                raise MessageError(str(exc)) from exc
            blocks.append(CommittedBlock(_uint(b[0], "seq"), _bytes(b[1], "payload"), qc))
        return FetchResponse(tuple(blocks))
    if tag == TAG_CHECKPOINT_VOTE:
        if len(items) != 4:
            raise MessageError("checkpoint vote must have 4 fields")
        return CheckpointVote(
            _vote(items[1]),
            _bytes(items[2], "block_hash", DIGEST_SIZE),
            _bytes(items[3], "state_digest", DIGEST_SIZE),
        )
    if tag == TAG_SETTLED:
        if len(items) != 2:
            raise MessageError("settled notice must have 2 fields")
        try:
            return SettledNotice(SettledCheckpoint.from_wire(items[1]))
        except CheckpointError as exc:
            raise MessageError(str(exc)) from exc
    raise MessageError(f"unknown message tag {tag!r}")


def decode_message(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Parse wire bytes into a message; raises only MessageError on bad input.

    Identical small messages (votes: one broadcast delivered to several local
    machines, as in the simulator) are parsed once: results are kept in an LRU
    cache of DECODE_CACHE_ENTRIES messages of at most DECODE_CACHE_MAX_BYTES
    each, so the cache holds at most a few MB; messages are immutable, so
    sharing them is safe. Larger messages (proposals, view changes) are
    parsed every time.
    """
    if not isinstance(data, bytes):
        raise MessageError("message must be bytes")
    if len(data) > max_size:
        raise MessageError(f"message is {len(data)} bytes, limit {max_size}")
    if len(data) > DECODE_CACHE_MAX_BYTES:
        return _decode(data)
    return _decode_cached(data)


# A node receives each message once, so the cache is for the simulator; it must
# stay small: 4,096 entries of any size kept view changes and proposals of up
# to 4 MiB alive in every replica.
DECODE_CACHE_ENTRIES = 2048
DECODE_CACHE_MAX_BYTES = 2048


@lru_cache(maxsize=DECODE_CACHE_ENTRIES)
def _decode_cached(data: bytes) -> Message:
    return _decode(data)


def _decode(data: bytes) -> Message:
    try:
        value = codec.decode(data, max_size=MAX_MESSAGE_SIZE)
    except codec.CodecError as exc:
        raise MessageError(f"undecodable message: {exc}") from exc
    try:
        return _decode_items(_list(value, "message", 8))
    except MessageError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise MessageError(f"malformed message: {exc}") from exc


def get_message_votes(msg: Message) -> list[Vote]:
    """Return every signed vote a message carries (for equivocation detection)."""
    if isinstance(msg, (PrePrepare, Commit)):
        return [msg.vote]
    if isinstance(msg, Prepare):
        return [msg.vote, msg.pre_prepare]
    if isinstance(msg, VoteBundle):
        return [msg.pre_prepare, *msg.votes]
    if isinstance(msg, CheckpointVote):
        return [msg.vote]
    if isinstance(msg, ViewChange):
        return _view_change_votes(msg)
    if isinstance(msg, NewView):
        votes = [pp.vote for pp in msg.pre_prepares]
        for vc in msg.view_changes:
            votes.extend(_view_change_votes(vc))
        return votes
    if isinstance(msg, FetchResponse):
        return [v for b in msg.blocks for v in b.qc.votes]
    if isinstance(msg, SettledNotice):
        return list(msg.checkpoint.votes)
    return []


def _view_change_votes(vc: ViewChange) -> list[Vote]:
    votes: list[Vote] = []
    if vc.stable_qc is not None:
        votes.extend(vc.stable_qc.votes)
    for p in vc.prepared:
        votes.append(p.pre_prepare)
        votes.extend(p.prepares)
    return votes
