"""The state transition: ``apply_block(state, block) -> (state', receipts)``.

Deterministic: the result depends only on the state and the block. Every
transaction yields a :class:`Receipt`:

* rejected (``BAD_TX``, ``BAD_NONCE``, ``FEE_TOO_LOW``): nothing changes, not
  even the nonce; the receipt is returned but not stored (a replay must not
  overwrite the original's receipt);
* failed (any other non-OK code): only the sender's nonce advances and the fee
  is charged (to the fee pool);
* OK: the rule's writes are kept.

A block that is invalid as a whole (wrong chain, height, parent, digest,
epoch or transaction root) raises :class:`BlockError` and changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from ledger import schema
from ledger.block import (
    MAX_BLOCK_TX_BYTES,
    MAX_BLOCK_TXS,
    Block,
    compute_block_tx_bytes,
    compute_tx_root,
)
from ledger.errors import BlockError, ReceiptCode, RuleError
from ledger.records import Account
from ledger.rules import RULES, Env, RuleContext, process_begin_block
from ledger.rules_data import DATA_RULES
from ledger.rules_jobs import JOB_RULES
from ledger.rules_kyc import KYC_RULES
from ledger.state import State
from ledger.tx import Tx, is_valid_tx_signature

DEFAULT_CONTEXT = RuleContext()
# The dispatch table: the core rules plus each feature's rule module.
ALL_RULES = {**RULES, **DATA_RULES, **KYC_RULES, **JOB_RULES}


class Receipt(NamedTuple):
    """The outcome of one transaction in one block."""

    tx_hash: bytes
    height: int
    tx_index: int
    code: int
    reason: str
    fee: int
    result: bytes

    @property
    def ok(self) -> bool:
        """True iff the transaction succeeded."""
        return self.code == ReceiptCode.OK

    def encode(self) -> bytes:
        """Return the canonical receipt encoding (fixed layout, then result and reason).

        ``tx_hash(32) height(8) tx_index(4) code(2) fee(16) len(result)(2) result reason``
        """
        return b"".join(
            (
                self.tx_hash,
                self.height.to_bytes(8, "big"),
                self.tx_index.to_bytes(4, "big"),
                self.code.to_bytes(2, "big"),
                self.fee.to_bytes(16, "big"),
                len(self.result).to_bytes(2, "big"),
                self.result,
                self.reason.encode("utf-8"),
            )
        )

    @staticmethod
    def decode(raw: bytes) -> Receipt:
        """Decode :meth:`encode` output; raises ValueError if corrupt."""
        if len(raw) < _RECEIPT_FIXED:
            raise ValueError("receipt too short")
        n = int.from_bytes(raw[62:64], "big")
        if len(raw) < _RECEIPT_FIXED + n:
            raise ValueError("receipt result truncated")
        return Receipt(
            raw[:32],
            int.from_bytes(raw[32:40], "big"),
            int.from_bytes(raw[40:44], "big"),
            int.from_bytes(raw[44:46], "big"),
            raw[64 + n :].decode("utf-8"),
            int.from_bytes(raw[46:62], "big"),
            raw[64 : 64 + n],
        )


_RECEIPT_FIXED = 64


def apply_tx(
    state: State, tx: Tx, height: int, index: int, *, verified: bool, ctx: RuleContext
) -> Receipt:
    """Apply one transaction to ``state`` (a writable child state) and return its receipt."""
    chain_id = state.chain_id

    def rejected(code: ReceiptCode, reason: str) -> Receipt:
        return Receipt(tx.tx_hash, height, index, int(code), reason, 0, b"")

    if tx.chain_id != chain_id:
        return rejected(ReceiptCode.BAD_TX, f"transaction is for chain {tx.chain_id!r}")
    if not verified and not is_valid_tx_signature(tx):
        return rejected(ReceiptCode.BAD_TX, "bad signature")
    account = state.get_account(tx.sender)
    if tx.nonce != account.nonce:
        return rejected(ReceiptCode.BAD_NONCE, f"expected nonce {account.nonce}, got {tx.nonce}")
    params = state.get_params()
    if tx.fee < params.min_fee:
        return rejected(ReceiptCode.FEE_TOO_LOW, f"fee {tx.fee} below minimum {params.min_fee}")
    if tx.fee > account.balance:
        return rejected(ReceiptCode.FEE_TOO_LOW, f"fee {tx.fee} exceeds balance {account.balance}")
    state.put(schema.ACCOUNT + tx.sender, Account(account.balance - tx.fee, account.nonce + 1))
    if tx.fee:
        supply = state.get_supply()
        state.put(
            schema.SUPPLY_KEY,
            supply._replace(balances=supply.balances - tx.fee, fee_pool=supply.fee_pool + tx.fee),
        )
    state.begin_tx()
    try:
        result = ALL_RULES[tx.kind](state, tx, Env(height, chain_id, ctx))
    except RuleError as exc:
        state.abort_tx()
        return Receipt(tx.tx_hash, height, index, int(exc.code), exc.reason, tx.fee, b"")
    state.commit_tx()
    return Receipt(tx.tx_hash, height, index, int(ReceiptCode.OK), "", tx.fee, result)


def get_block_error(state: State, block: Block) -> str | None:
    """Return None if ``block`` may be applied on top of ``state``, else why not."""
    header = block.header
    if header.chain_id != state.chain_id:
        return f"block is for chain {header.chain_id!r}"
    if header.height != state.height + 1:
        return f"block height {header.height}, expected {state.height + 1}"
    if header.parent_hash != state.block_hash:
        return "parent hash does not match the head"
    if header.state_digest != state.digest:
        return "state digest does not match the state after the parent"
    epoch_length = state.get_params().epoch_length
    if header.epoch != header.height // epoch_length:
        return f"epoch {header.epoch}, expected {header.height // epoch_length}"
    if len(block.txs) > MAX_BLOCK_TXS:
        return f"{len(block.txs)} transactions exceed the limit {MAX_BLOCK_TXS}"
    if compute_block_tx_bytes(block.txs) > MAX_BLOCK_TX_BYTES:
        return f"transactions exceed the block size limit {MAX_BLOCK_TX_BYTES}"
    if header.tx_root != compute_tx_root(block.txs):
        return "transaction root does not match the transactions"
    return None


def apply_block(
    state: State,
    block: Block,
    *,
    verified: bool = False,
    ctx: RuleContext = DEFAULT_CONTEXT,
) -> tuple[State, list[Receipt]]:
    """Apply ``block`` to ``state``; return the new state and one receipt per transaction.

    ``state`` is left unchanged. ``verified=True`` skips signature checks (the
    node verified each signature once at ingress). Raises BlockError if the
    block as a whole is invalid.
    """
    error = get_block_error(state, block)
    if error is not None:
        raise BlockError(error)
    height = block.header.height
    new = state.child()
    process_begin_block(new, height)
    receipts = [
        apply_tx(new, tx, height, index, verified=verified, ctx=ctx)
        for index, tx in enumerate(block.txs)
    ]
    new.finalize(height, block.block_hash())
    return new, receipts
