"""Equivocation evidence: two conflicting signed votes by one key.

Evidence is self-contained: anyone can check it with :func:`get_evidence_error`
without any other state than the chain id. The ledger slashes and jails the
signer of valid evidence (see ``ledger``); consensus emits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus import codec
from consensus.crypto import compute_hash
from consensus.votes import Vote


@dataclass(frozen=True, slots=True)
class Evidence:
    """A pair of votes that together prove equivocation by ``first.signer``.

    The pair is stored in canonical order (smaller digest first) so that the
    same equivocation always has the same :meth:`evidence_id`.
    """

    first: Vote
    second: Vote

    @staticmethod
    def from_votes(a: Vote, b: Vote) -> Evidence:
        """Return evidence for ``a`` and ``b`` in canonical order."""
        return Evidence(a, b) if a.digest <= b.digest else Evidence(b, a)

    @property
    def offender(self) -> bytes:
        """The public key that signed both votes."""
        return self.first.signer

    def to_wire(self) -> list[Any]:
        """Return the evidence as a codec-encodable list."""
        return [self.first.to_wire(), self.second.to_wire()]

    @staticmethod
    def from_wire(value: Any) -> Evidence:
        """Parse :meth:`to_wire` output; raises ValueError on malformed input."""
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("evidence must be a list of two votes")
        return Evidence(Vote.from_wire(value[0]), Vote.from_wire(value[1]))

    def encode(self) -> bytes:
        """Return the canonical encoding."""
        return codec.encode(self.to_wire())

    def evidence_id(self) -> bytes:
        """Return a stable identifier (hash of the canonical encoding)."""
        return compute_hash(self.encode())


def get_evidence_error(evidence: Evidence, chain_id: str) -> str | None:
    """Return None if ``evidence`` proves equivocation on ``chain_id``, else why not."""
    a, b = evidence.first, evidence.second
    if not (a.is_well_formed() and b.is_well_formed()):
        return "malformed vote"
    if a.chain_id != chain_id or b.chain_id != chain_id:
        return "vote for another chain"
    if a.signer != b.signer:
        return "votes are by different signers"
    if a.kind != b.kind:
        return "votes are of different kinds"
    if a.round != b.round or a.position != b.position:
        return "votes are for different rounds or positions"
    if a.digest == b.digest:
        return "votes do not conflict"
    if not a.digest < b.digest:
        return "votes not in canonical order"
    if not a.is_valid() or not b.is_valid():
        return "bad signature"
    return None


def is_valid_evidence(evidence: Evidence, chain_id: str) -> bool:
    """Return True iff ``evidence`` proves equivocation on ``chain_id``."""
    return get_evidence_error(evidence, chain_id) is None
