"""The ledger on a store: genesis initialisation, atomic block commits, reopen.

:class:`Ledger` owns one :class:`ledger.store.KVStore`. Committing a block
writes, in ONE atomic batch: every state write of the block, the encoded
block, its hash index, the receipts of its accepted transactions, the
consensus certificate (opaque bytes) and the head pointer. Because the head
pointer moves in the same batch, a store reopened after a crash at any moment
is at the last complete block.
"""

from __future__ import annotations

from typing import Any

from consensus import codec
from consensus.invariant import require

from ledger import schema
from ledger.apply import Receipt
from ledger.block import Block, decode_block
from ledger.errors import StoreError
from ledger.genesis import Genesis
from ledger.records import Account, ChainRecord, KeySetRecord, Supply, Validator, encode_record
from ledger.state import (
    DEFAULT_CACHE_SIZE,
    ZERO_DIGEST,
    State,
    StoreReader,
    compute_next_digest,
    compute_write_set_hash,
)
from ledger.store import KVStore


def compute_genesis_writes(genesis: Genesis) -> dict[bytes, Any]:
    """Return the state records (key -> record) that genesis creates."""
    writes: dict[bytes, Any] = {}
    for account, balance in genesis.balances.items():
        writes[schema.account_key(account)] = Account(balance, 0)
    for v in genesis.validators:
        writes[schema.validator_key(v.consensus_key)] = Validator(
            v.operator,
            list(v.roles),
            v.stake,
            False,
            False,
            v.name,
            v.peer_id,
            v.multiaddr,
            v.umbral_key,
            [],
        )
    for auditor in genesis.auditors:
        writes[schema.auditor_key(auditor)] = 0
    writes[schema.PARAMS_KEY] = genesis.params
    writes[schema.SUPPLY_KEY] = Supply(
        sum(genesis.balances.values()), sum(v.stake for v in genesis.validators), 0, 0, 0, 0, 0
    )
    writes[schema.CHAIN_KEY] = ChainRecord(
        genesis.chain_id, genesis.genesis_hash(), genesis.total_supply()
    )
    writes[schema.GOVERNANCE_KEY] = KeySetRecord(
        genesis.governance.threshold, list(genesis.governance.keys), 0
    )
    writes[schema.ORACLE_KEY] = KeySetRecord(genesis.oracle.threshold, list(genesis.oracle.keys), 0)
    writes[schema.AUDIT_SEQ_KEY] = 0
    return writes


def _encode_head(height: int, block_hash: bytes, digest: bytes) -> bytes:
    return codec.encode([height, block_hash, digest])


class Ledger:
    """A ledger on a key-value store: the head state, commits and chain reads."""

    def __init__(
        self, store: KVStore, genesis: Genesis, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        """Open the ledger; initialise genesis in one batch if the store is empty.

        Raises StoreError if the store belongs to another genesis.
        """
        self.store = store
        self.reader = StoreReader(store, cache_size)
        self.genesis = genesis
        head = store.get(schema.HEAD_KEY)
        if head is None:
            self._init_genesis(genesis)
            head = store.get(schema.HEAD_KEY)
        require(head is not None, "genesis initialisation wrote no head")
        self.state = self._load_head(head or b"")
        chain = self.state.get_chain_record()
        if chain.genesis_hash != genesis.genesis_hash():
            raise StoreError("store was initialised from a different genesis")

    def _init_genesis(self, genesis: Genesis) -> None:
        writes = compute_genesis_writes(genesis)
        encoded: dict[bytes, bytes | None] = {k: encode_record(k, v) for k, v in writes.items()}
        digest = compute_next_digest(ZERO_DIGEST, compute_write_set_hash(encoded))
        batch = dict(encoded)
        batch[schema.HEAD_KEY] = _encode_head(0, genesis.genesis_hash(), digest)
        self.store.write(batch)

    def _load_head(self, raw: bytes) -> State:
        try:
            height, block_hash, digest = codec.decode(raw)
        except (codec.CodecError, ValueError) as exc:
            raise StoreError(f"corrupt head pointer: {exc}") from exc
        chain = StoreReader(self.store, 16).get(schema.CHAIN_KEY)
        if not isinstance(chain, ChainRecord):
            raise StoreError("store has a head but no chain record")
        return State(self.reader, chain.chain_id, height, block_hash, digest)

    def commit(
        self, state: State, block: Block, receipts: list[Receipt], certificate: bytes = b""
    ) -> State:
        """Write ``block`` and the writes of ``state`` (its result) in one atomic batch.

        ``state`` must be the result of applying ``block`` to the current head.
        It becomes the new head (its writes now live in the store), so a state
        already applied on top of it (pipelined execution) can be committed next.
        Returns the new head state.
        """
        require(state.parent is self.state, "state was not applied on the current head")
        require(state.block_hash == block.block_hash(), "state and block do not match")
        batch: dict[bytes, bytes | None] = dict(state.encoded_writes)
        height = block.header.height
        batch[schema.block_key(height)] = block.encode()
        batch[schema.block_hash_key(state.block_hash)] = height.to_bytes(8, "big")
        for receipt in receipts:
            if receipt.fee or receipt.code not in _REJECTED:
                batch[schema.receipt_key(receipt.tx_hash)] = receipt.encode()
        if certificate:
            batch[schema.certificate_key(height)] = certificate
        batch[schema.HEAD_KEY] = _encode_head(height, state.block_hash, state.digest)
        self.store.write(batch)
        self.reader.record_commit(state.writes)
        state.detach()
        self.state = state
        return self.state

    def get_block(self, height: int) -> Block | None:
        """Return the committed block at ``height`` or None."""
        raw = self.get_block_bytes(height)
        return None if raw is None else decode_block(raw)

    def get_block_bytes(self, height: int) -> bytes | None:
        """Return the stored encoding of the committed block at ``height`` or None."""
        return self.store.get(schema.block_key(height))

    def get_height_of(self, block_hash: bytes) -> int | None:
        """Return the height of the committed block with ``block_hash`` or None."""
        raw = self.store.get(schema.block_hash_key(block_hash))
        return None if raw is None else int.from_bytes(raw, "big")

    def get_receipt(self, tx_hash: bytes) -> Receipt | None:
        """Return the stored receipt of an accepted transaction or None."""
        raw = self.store.get(schema.receipt_key(tx_hash))
        if raw is None:
            return None
        try:
            return Receipt.decode(raw)
        except ValueError as exc:
            raise StoreError(f"corrupt receipt for {tx_hash.hex()}") from exc

    def get_certificate(self, height: int) -> bytes | None:
        """Return the consensus certificate stored with the block at ``height``."""
        return self.store.get(schema.certificate_key(height))


def _rejected_codes() -> frozenset[int]:
    from ledger.errors import REJECTED_CODES

    return frozenset(int(c) for c in REJECTED_CODES)


_REJECTED = _rejected_codes()
