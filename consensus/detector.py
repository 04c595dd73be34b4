"""Equivocation detector: remembers the first vote per (kind, round, position,
signer) and turns a conflicting second vote into :class:`Evidence`."""

from __future__ import annotations

from collections import OrderedDict

from consensus.evidence import Evidence
from consensus.votes import Vote, VoteKind

# About 550 B per remembered vote (200,000 took ~110 MB). The layers size
# their detectors by the horizon they need (pbft.DETECTOR_BLOCKS,
# pos.DETECTOR_EPOCHS), so memory stops growing once that horizon has passed.
DEFAULT_DETECTOR_CAPACITY = 20_000


class EquivocationDetector:
    """Bounded memory of votes; oldest entries are forgotten first."""

    def __init__(self, capacity: int = DEFAULT_DETECTOR_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[VoteKind, int, int, bytes], Vote] = OrderedDict()
        self._reported: set[tuple[VoteKind, int, int, bytes]] = set()

    def process_vote(self, vote: Vote) -> Evidence | None:
        """Record an already verified vote; return new evidence on the first conflict."""
        key = (vote.kind, vote.round, vote.position, vote.signer)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = vote
            if len(self._seen) > self._capacity:
                old, _ = self._seen.popitem(last=False)
                self._reported.discard(old)
            return None
        if first.digest == vote.digest or key in self._reported:
            return None
        self._reported.add(key)
        return Evidence.from_votes(first, vote)
