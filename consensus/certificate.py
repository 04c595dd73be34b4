"""Quorum certificates: 2f+1 PBFT commit votes that prove a block committed.

A certificate is stored beside every committed block and checked by any node
(block sync, new nodes) with :func:`get_certificate_error` alone.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from consensus import codec
from consensus.crypto import DIGEST_SIZE
from consensus.verify import is_valid_vote
from consensus.votes import Vote, VoteKind

MAX_CERTIFICATE_VOTES = 1024


class CertificateError(ValueError):
    """Raised when a certificate does not parse."""


@dataclass(frozen=True, slots=True)
class QuorumCertificate:
    """Commit votes for one (view, seq, digest); ``votes`` sorted by signer."""

    view: int
    seq: int
    digest: bytes
    votes: tuple[Vote, ...]
    _encoded: codec.Encoded | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def to_wire(self) -> list[Any]:
        """Return the certificate as a codec-encodable list."""
        return [self.view, self.seq, self.digest, [v.to_wire() for v in self.votes]]

    def get_encoded_wire(self) -> codec.Encoded:
        """Return the encoding of :meth:`to_wire`, made on the first call and kept.

        It embeds in any codec value in place of ``to_wire()``: an executed
        block's certificate goes into a record, a frame and a persisted
        consensus record, and is encoded once for all three.
        """
        encoded = self._encoded
        if encoded is None:
            encoded = codec.encode_once(self.to_wire())
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @staticmethod
    def from_wire(value: Any) -> QuorumCertificate:
        """Parse :meth:`to_wire` output; raises CertificateError on malformed input."""
        if not isinstance(value, list) or len(value) != 4:
            raise CertificateError("certificate must be a list of 4 fields")
        view, seq, digest, votes = value
        if not (isinstance(view, int) and isinstance(seq, int) and view >= 0 and seq >= 0):
            raise CertificateError("certificate view/seq must be non-negative integers")
        if isinstance(view, bool) or isinstance(seq, bool):
            raise CertificateError("certificate view/seq must be integers")
        if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
            raise CertificateError("certificate digest must be 32 bytes")
        if not isinstance(votes, list) or len(votes) > MAX_CERTIFICATE_VOTES:
            raise CertificateError("certificate votes must be a bounded list")
        try:
            parsed = tuple(Vote.from_wire(v) for v in votes)
        except ValueError as exc:
            raise CertificateError(f"bad vote in certificate: {exc}") from exc
        return QuorumCertificate(view, seq, digest, parsed)


def compute_certificate(
    view: int, seq: int, digest: bytes, votes: Collection[Vote]
) -> QuorumCertificate:
    """Return a certificate over ``votes`` in canonical (signer) order."""
    return QuorumCertificate(view, seq, digest, tuple(sorted(votes, key=lambda v: v.signer)))


def get_certificate_error(
    qc: QuorumCertificate, committee_public_keys: Collection[bytes], f: int, chain_id: str
) -> str | None:
    """Return None iff ``qc`` holds 2f+1 valid commit votes by distinct committee
    members for exactly its view, seq and digest; otherwise the reason."""
    members = set(committee_public_keys)
    signers: set[bytes] = set()
    for vote in qc.votes:
        if vote.kind != VoteKind.PBFT_COMMIT:
            return "certificate holds a vote that is not a commit"
        if (vote.round, vote.position, vote.digest) != (qc.view, qc.seq, qc.digest):
            return "certificate vote is for another view, seq or digest"
        if vote.signer not in members:
            return "certificate vote by a non-member"
        if vote.signer in signers:
            return "certificate holds two votes by one signer"
        if not is_valid_vote(vote, chain_id):
            return "certificate vote has a bad signature"
        signers.add(vote.signer)
    if len(signers) < 2 * f + 1:
        return f"certificate has {len(signers)} signers, needs {2 * f + 1}"
    return None
