"""Mempool: admitted transactions waiting to be batched.

Guarantees:
- bounded in transactions, bytes and transactions per sender; a full pool
  refuses new entries with a clear reason instead of growing;
- deduplicated by transaction hash;
- per sender, entries leave in nonce order and only without gaps from the
  sender's next expected nonce, so a batch never carries a transaction that
  must fail for a skipped nonce;
- fair: :meth:`Mempool.take_batch` takes round-robin across senders, so one
  busy sender cannot starve the others.

The pool does not check signatures; the node does that once, at ingress,
before calling :meth:`Mempool.add`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    """One admitted transaction: its hash, sender, nonce and encoded bytes."""

    tx_hash: bytes
    sender: bytes
    nonce: int
    raw: bytes


class MempoolFullError(Exception):
    """Raised by :meth:`Mempool.add` when a bound would be exceeded."""


class Mempool:
    """A bounded, deduplicated, sender-fair pool of pending transactions."""

    def __init__(self, max_txs: int, max_bytes: int, max_per_sender: int) -> None:
        if min(max_txs, max_bytes, max_per_sender) <= 0:
            raise ValueError("mempool bounds must be positive")
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self._by_hash: dict[bytes, MempoolEntry] = {}
        # sender -> {nonce: entry}; OrderedDict keeps round-robin order of senders.
        self._senders: OrderedDict[bytes, dict[int, MempoolEntry]] = OrderedDict()
        # next nonce per sender that a batch may carry (advanced as batches are taken)
        self._next_nonce: dict[bytes, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        """Total encoded bytes held."""
        return self._bytes

    def is_known(self, tx_hash: bytes) -> bool:
        """Return True iff a transaction with this hash is in the pool."""
        return tx_hash in self._by_hash

    def add(self, entry: MempoolEntry, next_nonce: int) -> bool:
        """Admit ``entry``; ``next_nonce`` is the sender's next nonce on chain.

        Returns False for a duplicate (already pooled). Raises ValueError for a
        nonce already used or already pooled from this sender, and MempoolFullError
        when a bound would be exceeded.
        """
        if entry.tx_hash in self._by_hash:
            return False
        pending = self._senders.get(entry.sender)
        floor = max(next_nonce, self._next_nonce.get(entry.sender, next_nonce))
        if entry.nonce < floor:
            raise ValueError(f"nonce {entry.nonce} already used (next is {floor})")
        if pending is not None and entry.nonce in pending:
            raise ValueError(f"another transaction with nonce {entry.nonce} is pending")
        if len(self._by_hash) >= self.max_txs or self._bytes + len(entry.raw) > self.max_bytes:
            raise MempoolFullError("mempool is full, retry later")
        if pending is not None and len(pending) >= self.max_per_sender:
            raise MempoolFullError("too many pending transactions from this sender")
        if entry.nonce - floor >= self.max_per_sender:
            raise ValueError(f"nonce {entry.nonce} is too far ahead of {floor}")
        if pending is None:
            pending = self._senders[entry.sender] = {}
            self._next_nonce[entry.sender] = floor
        pending[entry.nonce] = entry
        self._by_hash[entry.tx_hash] = entry
        self._bytes += len(entry.raw)
        return True

    def take_batch(self, max_txs: int, max_bytes: int) -> list[MempoolEntry]:
        """Remove and return up to ``max_txs`` ready entries, round-robin by sender."""
        batch: list[MempoolEntry] = []
        size = 0
        progress = True
        while progress and len(batch) < max_txs:
            progress = False
            for sender in list(self._senders):
                if len(batch) >= max_txs:
                    break
                pending = self._senders[sender]
                nonce = self._next_nonce[sender]
                entry = pending.get(nonce)
                if entry is None or size + len(entry.raw) > max_bytes:
                    continue
                del pending[nonce]
                del self._by_hash[entry.tx_hash]
                self._bytes -= len(entry.raw)
                self._next_nonce[sender] = nonce + 1
                batch.append(entry)
                size += len(entry.raw)
                progress = True
                # rotate so the next batch starts with another sender
                self._senders.move_to_end(sender)
                if not pending:
                    del self._senders[sender]
        return batch

    def process_committed_nonce(self, sender: bytes, next_nonce: int) -> None:
        """Drop this sender's entries below ``next_nonce`` (committed elsewhere)."""
        if self._next_nonce.get(sender, 0) < next_nonce:
            self._next_nonce[sender] = next_nonce
        pending = self._senders.get(sender)
        if pending is None:
            if self._next_nonce.get(sender) is not None:
                del self._next_nonce[sender]
            return
        for nonce in [n for n in pending if n < next_nonce]:
            entry = pending.pop(nonce)
            del self._by_hash[entry.tx_hash]
            self._bytes -= len(entry.raw)
        if not pending:
            del self._senders[sender]
            del self._next_nonce[sender]
