"""Shared builders for ledger tests: deterministic keys, genesis, signed txs, blocks."""

from __future__ import annotations

from typing import Any

from consensus.crypto import compute_public_key, compute_seed_from_label, compute_signature
from ledger.apply import Receipt, apply_block
from ledger.block import Block, compute_block
from ledger.chain import Ledger
from ledger.genesis import TOKEN, Genesis, parse_genesis
from ledger.rules import RuleContext
from ledger.store import KVStore, MemoryStore
from ledger.tx import TxKind, compute_signed_tx, decode_tx

CHAIN = "dmchain-test"


class Key:
    """A deterministic test key pair."""

    def __init__(self, label: str) -> None:
        self.seed = compute_seed_from_label(label)
        self.pub = compute_public_key(self.seed)

    def sign(self, message: bytes) -> bytes:
        return compute_signature(self.seed, message)


USERS = [Key(f"user-{i}") for i in range(6)]
GOV = [Key(f"gov-{i}") for i in range(3)]
ORACLE = [Key(f"oracle-{i}") for i in range(3)]
VALIDATORS = [Key(f"val-{i}") for i in range(2)]


def make_genesis(params: dict[str, Any] | None = None, balance: int = 1_000 * TOKEN) -> Genesis:
    """Return a genesis with funded users, two validators and 2-of-3 key sets."""
    data = {
        "chain_id": CHAIN,
        "params": params or {},
        "balances": {u.pub.hex(): balance for u in USERS} | {g.pub.hex(): balance for g in GOV},
        "validators": [
            {
                "name": f"v{i}",
                "consensus_key": v.pub.hex(),
                "roles": ["pbft", "pos"],
                "stake": 1_000 * TOKEN,
                "operator": USERS[i].pub.hex(),
                "peer_id": "",
                "multiaddr": "",
                "umbral_key": "",
            }
            for i, v in enumerate(VALIDATORS)
        ],
        "governance": {"threshold": 2, "keys": [g.pub.hex() for g in GOV]},
        "oracle": {"threshold": 2, "keys": [o.pub.hex() for o in ORACLE]},
    }
    return parse_genesis(data)


def sign_tx(key: Key, kind: TxKind, nonce: int, payload: list[Any], fee: int = 0) -> Any:
    """Return a decoded, signed transaction."""
    return decode_tx(compute_signed_tx(key.seed, CHAIN, kind, nonce, payload, fee=fee))


class Chain:
    """A ledger plus per-sender nonce tracking for convenient tests."""

    def __init__(
        self,
        store: KVStore | None = None,
        genesis: Genesis | None = None,
        ctx: RuleContext | None = None,
    ) -> None:
        self.ledger = Ledger(store or MemoryStore(), genesis or make_genesis())
        self.ctx = ctx or RuleContext()
        self.nonces: dict[bytes, int] = {}

    @property
    def state(self) -> Any:
        return self.ledger.state

    def tx(self, key: Key, kind: TxKind, payload: list[Any], fee: int = 0) -> Any:
        """Return a signed tx with the sender's next nonce (tracked locally)."""
        nonce = self.nonces.get(key.pub, self.state.get_account(key.pub).nonce)
        self.nonces[key.pub] = nonce + 1
        return sign_tx(key, kind, nonce, payload, fee)

    def make_block(self, txs: list[Any]) -> Block:
        state = self.state
        height = state.height + 1
        epoch = height // state.get_params().epoch_length
        return compute_block(CHAIN, height, state.block_hash, state.digest, epoch, txs)

    def run(self, txs: list[Any], *, verified: bool = False) -> list[Receipt]:
        """Apply and commit one block of ``txs``; return the receipts."""
        block = self.make_block(txs)
        new, receipts = apply_block(self.state, block, verified=verified, ctx=self.ctx)
        self.ledger.commit(new, block, receipts)
        self.nonces = {}
        return receipts

    def run1(self, key: Key, kind: TxKind, payload: list[Any], fee: int = 0) -> Receipt:
        """Apply one transaction in its own block and return its receipt."""
        return self.run([self.tx(key, kind, payload, fee)])[0]
