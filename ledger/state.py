"""Ledger state: a write overlay over a store, and the incremental state digest.

A :class:`State` reads through three layers: the open transaction's writes,
this block's writes (and those of uncommitted parent states), and the store
behind a bounded cache of decoded records (:class:`StoreReader`). Applying a
block therefore touches the store only for records not already cached, and
costs O(writes) to digest and commit.

State digest: ``digest_h = H_parts("dmchain/state/v1", digest_{h-1}, W_h)``
where ``W_h`` is SHA-256 over the block's write set (every state key written
while applying block ``h``, in sorted key order, each as length-prefixed key,
a present/deleted flag and length-prefixed canonical value). ``digest_0``
chains from 32 zero bytes over the genesis write set. The digest therefore
commits to the whole history of state writes; two nodes agree on it iff they
wrote the same records in every block. Chain data (blocks, receipts, head) is
not part of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from consensus.crypto import compute_hash_parts
from consensus.invariant import require

from ledger import schema
from ledger.errors import StoreError
from ledger.genesis import Params
from ledger.records import (
    EMPTY_ACCOUNT,
    Account,
    ChainRecord,
    Supply,
    decode_record,
    encode_record,
)
from ledger.store import KVStore

DIGEST_DOMAIN = b"dmchain/state/v1"
ZERO_DIGEST = bytes(32)
# Decoded records kept in memory: two generations of half this size each. A
# decoded record with its key takes 50-950 B (about 450 B on average for the
# benchmark's mix), so the cache stays under 2 MB however large the state
# grows. What blocks read again and again (accounts, assets, validators,
# parameters) is a few hundred records; most reads beyond them are requests
# read twice within seconds (granted, then settled) and never again. With
# 20,000 records those filled the cache for 20 minutes at 336 tx/s on the
# 18-node bench (about 1,000 a minute), growing each node by 0.4 MB a minute.
DEFAULT_CACHE_SIZE = 4_096
# Prefixes whose present keys the reader keeps in memory, so that a lookup of
# a key that does not exist never reaches the store. The unbonding queue is
# looked up at every height and almost always absent; its keys are few (one
# per height that has stake maturing, at most ``unbonding_period`` of them,
# deleted when they mature). A store lookup of a missing key is not free in
# LevelDB: it is charged to the tables it searched and triggers their
# compaction.
INDEXED_PREFIXES: tuple[bytes, ...] = (schema.UNBONDING,)
_MISSING = object()


class StoreReader:
    """Reads decoded records from a store through a bounded cache.

    The cache holds at most ``cache_size`` records in two generations: new
    and recently read records go to the young one; when it is full it becomes
    the old one (the previous old generation is dropped), and a record read
    from the old generation moves back to the young one. Records in use stay
    cached; records not touched for a generation are forgotten.

    The cache is write-around: :meth:`record_commit` brings the cached copies
    of the records a committed block wrote up to date, so the cache never
    answers a stale value (the young generation is consulted first and always
    holds the newest write), and a record written but not read yet (a log
    entry, a new asset) takes no place in it until something reads it.

    For each of ``indexed_prefixes`` the reader also keeps the set of keys
    present in the store (read by one prefix scan at the first lookup, then
    kept up to date by :meth:`record_commit`) and answers a lookup of any
    other key under that prefix with None without reading the store. The
    answer is the store's answer either way; only the store's work differs.
    """

    def __init__(
        self,
        store: KVStore,
        cache_size: int = DEFAULT_CACHE_SIZE,
        indexed_prefixes: tuple[bytes, ...] = INDEXED_PREFIXES,
    ) -> None:
        require(cache_size >= 2, "the record cache needs room for two generations")
        require(
            all(len(p) == 1 for p in indexed_prefixes), "indexed prefixes are single key bytes"
        )
        self.store = store
        self._young: dict[bytes, Any] = {}
        self._old: dict[bytes, Any] = {}
        self._generation_size = cache_size // 2
        self._indexed = frozenset(indexed_prefixes)
        self._present: dict[bytes, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, key: bytes) -> Any:
        """Return the decoded record under ``key`` or None."""
        value = self._young.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self._old.get(key, _MISSING)
        if value is _MISSING:
            prefix = key[:1]
            if prefix in self._indexed and key not in self._get_present(prefix):
                return None
            raw = self.store.get(key)
            value = None if raw is None else decode_record(key, raw)
        self._remember(key, value)
        return value

    def _get_present(self, prefix: bytes) -> set[bytes]:
        present = self._present.get(prefix)
        if present is None:
            present = {key for key, _ in self.store.iterate(prefix)}
            self._present[prefix] = present
        return present

    def get_indexed_key_count(self) -> int:
        """Return how many present keys the reader holds for its indexed prefixes."""
        return sum(len(keys) for keys in self._present.values())

    def _remember(self, key: bytes, value: Any) -> None:
        if len(self._young) >= self._generation_size:
            self._old, self._young = self._young, {}
        self._young[key] = value

    def record_commit(self, writes: dict[bytes, Any]) -> None:
        """Update the cached records among ``writes`` (just written to the store);
        records not cached stay out of the cache. Keeps the key sets of the
        indexed prefixes equal to the store's."""
        present = self._present
        for key, value in writes.items():
            if key in self._young or key in self._old:
                self._remember(key, value)
            if present:
                keys = present.get(key[:1])
                if keys is not None:
                    if value is None:
                        keys.discard(key)
                    else:
                        keys.add(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """Yield decoded ``(key, record)`` pairs under ``prefix`` from the store."""
        for key, raw in self.store.iterate(prefix):
            yield key, decode_record(key, raw)


def compute_write_set_hash(encoded: dict[bytes, bytes | None]) -> bytes:
    """Return the hash of a write set (sorted keys; see module docstring)."""
    h = hashlib.sha256()
    for key in sorted(encoded):
        value = encoded[key]
        h.update(len(key).to_bytes(4, "big"))
        h.update(key)
        if value is None:
            h.update(b"\x00")
        else:
            h.update(b"\x01")
            h.update(len(value).to_bytes(4, "big"))
            h.update(value)
    return h.digest()


def compute_next_digest(previous: bytes, write_set_hash: bytes) -> bytes:
    """Return ``digest_h`` from ``digest_{h-1}`` and the block's write-set hash."""
    return compute_hash_parts(DIGEST_DOMAIN, previous, write_set_hash)


class State:
    """The ledger state at one height, plus the writes of blocks not yet committed.

    ``height``, ``block_hash`` and ``digest`` describe the last applied block
    (``digest`` is the state digest *after* it). After :func:`ledger.apply.apply_block`
    the returned state holds that block's writes in ``writes`` and its
    ``encoded_writes`` until :class:`ledger.chain.Ledger` commits them.
    """

    def __init__(
        self,
        reader: StoreReader,
        chain_id: str,
        height: int,
        block_hash: bytes,
        digest: bytes,
        parent: State | None = None,
    ) -> None:
        self.reader = reader
        self.chain_id = chain_id
        self.height = height
        self.block_hash = block_hash
        self.digest = digest
        self.parent = parent
        self.writes: dict[bytes, Any] = {}
        self.encoded_writes: dict[bytes, bytes | None] = {}
        self.changed_validators: set[bytes] = set()
        self._tx: dict[bytes, Any] | None = None
        self._finalized = parent is None

    # -- generic access -------------------------------------------------
    def get(self, key: bytes) -> Any:
        """Return the current record under ``key`` (None if absent)."""
        tx = self._tx
        if tx is not None and key in tx:
            return tx[key]
        node: State | None = self
        while node is not None:
            if key in node.writes:
                return node.writes[key]
            node = node.parent
        return self.reader.get(key)

    def put(self, key: bytes, value: Any) -> None:
        """Write ``value`` (None deletes) under the state key ``key``."""
        require(not self._finalized, "state is finalized; apply a block to a child state")
        require(schema.is_state_key(key), "only state keys may be written by rules")
        if self._tx is not None:
            self._tx[key] = value
        else:
            self.writes[key] = value

    def iterate(self, prefix: bytes) -> list[tuple[bytes, Any]]:
        """Return every present ``(key, record)`` under ``prefix``, in key order.

        For queries and tests; merges the store with uncommitted writes.
        """
        merged: dict[bytes, Any] = dict(self.reader.iterate(prefix))
        chain: list[State] = []
        node: State | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        for layer in reversed(chain):
            for key, value in layer.writes.items():
                if key.startswith(prefix):
                    merged[key] = value
        if self._tx is not None:
            for key, value in self._tx.items():
                if key.startswith(prefix):
                    merged[key] = value
        return sorted((k, v) for k, v in merged.items() if v is not None)

    # -- transaction scope ----------------------------------------------
    def begin_tx(self) -> None:
        """Open a transaction scope: later writes can be dropped as one unit."""
        require(self._tx is None, "nested transaction scope")
        self._tx = {}

    def commit_tx(self) -> None:
        """Keep the writes of the open transaction scope."""
        require(self._tx is not None, "no transaction scope open")
        if self._tx:
            self.writes.update(self._tx)
        self._tx = None

    def abort_tx(self) -> None:
        """Drop the writes of the open transaction scope."""
        require(self._tx is not None, "no transaction scope open")
        self._tx = None

    # -- block lifecycle ------------------------------------------------
    def child(self) -> State:
        """Return a new, writable state on top of this one (for the next block)."""
        require(self._finalized, "parent state is still being applied")
        return State(self.reader, self.chain_id, self.height, self.block_hash, self.digest, self)

    def finalize(self, height: int, block_hash: bytes) -> None:
        """Encode this block's writes and advance the digest; the state becomes read-only."""
        require(not self._finalized and self._tx is None, "finalize called twice or mid-tx")
        self.encoded_writes = {
            k: None if v is None else encode_record(k, v) for k, v in self.writes.items()
        }
        self.digest = compute_next_digest(self.digest, compute_write_set_hash(self.encoded_writes))
        self.height = height
        self.block_hash = block_hash
        self._finalized = True

    def detach(self) -> None:
        """Forget parent and own writes once they are in the store (after a commit)."""
        require(self._finalized, "only a finalized state can be detached")
        self.parent = None
        self.writes = {}
        self.encoded_writes = {}

    # -- typed helpers ----------------------------------------------------
    def get_params(self) -> Params:
        """Return the current chain parameters."""
        params = self.get(schema.PARAMS_KEY)
        if not isinstance(params, Params):
            raise StoreError("state has no parameters")
        return params

    def get_supply(self) -> Supply:
        """Return the supply breakdown."""
        supply = self.get(schema.SUPPLY_KEY)
        if not isinstance(supply, Supply):
            raise StoreError("state has no supply record")
        return supply

    def get_chain_record(self) -> ChainRecord:
        """Return the chain id, genesis hash and genesis supply."""
        record = self.get(schema.CHAIN_KEY)
        if not isinstance(record, ChainRecord):
            raise StoreError("state has no chain record")
        return record

    def get_account(self, account: bytes) -> Account:
        """Return the account (zero balance and nonce if never seen)."""
        value = self.get(schema.ACCOUNT + account)
        return EMPTY_ACCOUNT if value is None else value
