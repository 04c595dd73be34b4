"""Proposal pool of a PBFT replica: verified transactions waiting for a block.

Transactions arrive in batches from nodes' mempools (signatures are verified
once, before :meth:`ProposalPool.add`). The pool keeps arrival order, is
bounded, forgets transactions once committed, and tracks which ones the local
leader has already put in flight so it does not propose them twice.

Arrival order is not always a sender's nonce order: a transaction can reach a
new leader after the sender's next one (one came from the old leader, the other
from the node that forwarded it, see node/forwarding.py). A block that held
them out of order would reject the later one for its nonce and lose it, so a
leader that passes ``next_nonce`` to :meth:`take_proposal` proposes a sender's
transactions only in unbroken nonce order and holds back the rest until the gap
is filled, for at most ``max_wait_s``: a gap that is never filled (the sender's
previous transaction was rejected and the nonce did not advance) must not hold
the sender's next one, and the pool's pending work, forever. Past the wait the
transaction is proposed and the ledger rejects it for its nonce, as it did
before nonce-ordered proposals.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable


class ProposalPool:
    """Bounded FIFO of verified raw transactions keyed by hash."""

    def __init__(
        self,
        max_txs: int,
        max_committed_remembered: int = 500_000,
        committed_horizon_s: float = math.inf,
    ) -> None:
        if max_txs <= 0:
            raise ValueError("pool bound must be positive")
        self.max_txs = max_txs
        self._txs: OrderedDict[bytes, bytes] = OrderedDict()
        self._in_flight: set[bytes] = set()
        # (sender, nonce) of the pooled transactions added with one.
        self._keys: dict[bytes, tuple[bytes, int]] = {}
        # Per sender, the nonce after its highest transaction in flight.
        self._next_in_flight: dict[bytes, int] = {}
        # When each held-back transaction first waited for its predecessor.
        self._waiting_since: dict[bytes, float] = {}
        # Committed hash -> when it committed (seconds, any monotonic origin), oldest first.
        self._committed: OrderedDict[bytes, float] = OrderedDict()
        self._max_committed = max_committed_remembered
        self._committed_horizon_s = committed_horizon_s
        self.dropped = 0
        self.stale_dropped = 0

    def __len__(self) -> int:
        return len(self._txs)

    def is_known(self, tx_hash: bytes) -> bool:
        """Return True iff the hash is pooled or was committed recently."""
        return tx_hash in self._txs or tx_hash in self._committed

    def add(self, tx_hash: bytes, raw: bytes, key: tuple[bytes, int] | None = None) -> bool:
        """Pool a verified transaction with its (sender, nonce) if known; False if
        known already or the pool is full."""
        if self.is_known(tx_hash):
            return False
        if len(self._txs) >= self.max_txs:
            self.dropped += 1
            return False
        self._txs[tx_hash] = raw
        if key is not None:
            self._keys[tx_hash] = key
        return True

    def get_unproposed_count(self) -> int:
        """Return how many pooled transactions are not in flight."""
        return len(self._txs) - len(self._in_flight)

    def take_proposal(
        self,
        max_txs: int,
        max_bytes: int,
        next_nonce: Callable[[bytes], int] | None = None,
        *,
        now: float = 0.0,
        max_wait_s: float = math.inf,
    ) -> list[bytes]:
        """Return up to ``max_txs`` raw transactions not in flight, in arrival order,
        marking them in flight. With ``next_nonce`` (a sender's next nonce in the
        executed state), a keyed transaction is taken only if its nonce follows the
        sender's last one executed, in flight or taken here; one below that is
        stale and dropped; one above waits for the gap to be filled, from its first
        wait until ``now`` reaches ``max_wait_s`` later (``now`` in seconds, any
        monotonic origin)."""
        out: list[bytes] = []
        size = 0
        expected: dict[bytes, int] = {}
        stale: list[bytes] = []
        for _ in range(2):  # a second pass takes what waited on a gap the first filled
            waiting = False
            taken = len(out)
            for tx_hash, raw in self._txs.items():
                if len(out) >= max_txs:
                    break
                if tx_hash in self._in_flight:
                    continue
                key = self._keys.get(tx_hash) if next_nonce is not None else None
                if key is not None and next_nonce is not None:
                    sender, nonce = key
                    want = expected.get(sender)
                    if want is None:
                        want = max(next_nonce(sender), self._next_in_flight.get(sender, 0))
                        expected[sender] = want
                    if nonce < want:
                        stale.append(tx_hash)
                        continue
                    if nonce > want:
                        since = self._waiting_since.setdefault(tx_hash, now)
                        if now - since < max_wait_s:
                            waiting = True
                            continue
                if size + len(raw) + 5 > max_bytes:
                    break
                if key is not None:
                    expected[key[0]] = key[1] + 1
                    self._next_in_flight[key[0]] = key[1] + 1
                self._in_flight.add(tx_hash)
                self._waiting_since.pop(tx_hash, None)
                out.append(raw)
                size += len(raw) + 5
            if not waiting or len(out) == taken:
                break
            for tx_hash in stale:
                self._drop(tx_hash)
            stale.clear()
        for tx_hash in stale:
            self._drop(tx_hash)
        return out

    def _drop(self, tx_hash: bytes) -> None:
        if self._txs.pop(tx_hash, None) is not None:
            self._keys.pop(tx_hash, None)
            self._waiting_since.pop(tx_hash, None)
            self.stale_dropped += 1

    def process_view_change(self, carried: Iterable[bytes] = ()) -> None:
        """Start a new view: only the pooled transactions in ``carried`` (those
        of the blocks the new view re-proposes) stay in flight; the rest may be
        proposed again, since a new view may not carry their proposals."""
        self._in_flight = {tx_hash for tx_hash in carried if tx_hash in self._txs}
        self._next_in_flight = {}
        for tx_hash in self._in_flight:
            key = self._keys.get(tx_hash)
            if key is not None:
                sender, nonce = key
                self._next_in_flight[sender] = max(self._next_in_flight.get(sender, 0), nonce + 1)

    def process_committed(self, tx_hashes: list[bytes], now: float = 0.0) -> None:
        """Remove committed transactions and remember them (committed at ``now``,
        seconds, the clock of the other calls) for ``committed_horizon_s``, at
        most ``max_committed_remembered`` of them."""
        for tx_hash in tx_hashes:
            self._txs.pop(tx_hash, None)
            self._in_flight.discard(tx_hash)
            self._committed[tx_hash] = now
            self._committed.move_to_end(tx_hash)
            self._waiting_since.pop(tx_hash, None)
            key = self._keys.pop(tx_hash, None)
            if key is not None and self._next_in_flight.get(key[0], 0) <= key[1] + 1:
                self._next_in_flight.pop(key[0], None)
        committed = self._committed
        while len(committed) > self._max_committed or (
            committed and now - next(iter(committed.values())) > self._committed_horizon_s
        ):
            committed.popitem(last=False)

