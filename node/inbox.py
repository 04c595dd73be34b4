"""The node's inbox: received frames wait here until the event loop handles them.

Two bounded FIFO queues. Consensus traffic (PBFT, PoS, blocks, sync) goes
first; transaction batches (gossip from other nodes' ingress) wait behind it.
Under overload a replica then keeps voting and committing on time instead of
letting its votes queue behind seconds of batches (which made the progress
timers of other replicas fire: spurious view changes). Batches are not
starved: after ``max_streak`` consensus entries in a row one batch entry is
taken. Each queue is bounded in entries and in frame bytes (a node that falls
behind must not buffer without limit); an entry that does not fit is refused
and counted by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from consensus.invariant import require


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """Frames of one read from one peer, all of one class, and when they arrived."""

    sender: str
    frames: list[bytes]
    received: float

    def get_size(self) -> int:
        """Return the bytes of the entry's frames."""
        return sum(len(frame) for frame in self.frames)


class Inbox:
    """Consensus entries first, then batch entries (at least one per ``max_streak``)."""

    def __init__(self, max_entries: int, max_bytes: int, max_streak: int = 8) -> None:
        require(
            max_entries >= 1 and max_bytes >= 1 and max_streak >= 1,
            "inbox bounds must be positive",
        )
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_streak = max_streak
        self._consensus: deque[tuple[InboxEntry, int]] = deque()
        self._batches: deque[tuple[InboxEntry, int]] = deque()
        self._bytes = {False: 0, True: 0}  # queued frame bytes, by is_batch
        self._streak = 0

    def __len__(self) -> int:
        return len(self._consensus) + len(self._batches)

    def get_bytes(self) -> int:
        """Return the frame bytes queued in both queues."""
        return self._bytes[False] + self._bytes[True]

    def process_put(self, entry: InboxEntry, is_batch: bool) -> bool:
        """Queue ``entry``; returns False (and keeps nothing) if its queue is full
        in entries or would exceed ``max_bytes``."""
        queue = self._batches if is_batch else self._consensus
        size = entry.get_size()
        if len(queue) >= self._max_entries or self._bytes[is_batch] + size > self._max_bytes:
            return False
        queue.append((entry, size))
        self._bytes[is_batch] += size
        return True

    def process_take(self) -> InboxEntry | None:
        """Return the next entry to handle, or None if both queues are empty."""
        if self._consensus and (not self._batches or self._streak < self._max_streak):
            self._streak += 1
            entry, size = self._consensus.popleft()
            self._bytes[False] -= size
            return entry
        if self._batches:
            self._streak = 0
            entry, size = self._batches.popleft()
            self._bytes[True] -= size
            return entry
        return None
