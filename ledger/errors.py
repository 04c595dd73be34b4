"""Typed errors and receipt codes of the ledger.

Every way a transaction can fail has a :class:`ReceiptCode`. Stateless
problems (size, encoding, chain id, signature) raise :class:`TxError`; a
stateful rule that refuses a transaction raises :class:`RuleError` with a code
and a human-readable reason. Neither ever escapes ``apply_block``: both become
failed receipts. A block that is invalid as a whole raises :class:`BlockError`.
"""

from __future__ import annotations

from enum import IntEnum


class ReceiptCode(IntEnum):
    """Outcome of one transaction. Values are stored in receipts: never renumber."""

    OK = 0
    BAD_TX = 1  # stateless: encoding, size, chain id, signature, payload shape
    BAD_NONCE = 2  # replayed or skipped nonce: nothing changes
    FEE_TOO_LOW = 3  # fee below the minimum or unaffordable: nothing changes
    INSUFFICIENT_FUNDS = 4
    NOT_FOUND = 5
    UNAUTHORIZED = 6
    INVALID_STATE = 7
    BAD_SIGNATURES = 8
    BAD_EVIDENCE = 9
    BAD_PROOF = 10
    BAD_PARAMETER = 11


# Codes for which the transaction was rejected outright: the nonce was not
# consumed and no fee was charged, so no receipt is stored under its hash.
REJECTED_CODES = frozenset({ReceiptCode.BAD_TX, ReceiptCode.BAD_NONCE, ReceiptCode.FEE_TOO_LOW})


class LedgerError(Exception):
    """Base class of every error the ledger raises on bad input."""


class TxError(LedgerError):
    """A transaction is malformed, oversized, for another chain or badly signed."""


class RuleError(LedgerError):
    """A stateful rule refused a transaction; carries a receipt code and reason."""

    def __init__(self, code: ReceiptCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class BlockError(LedgerError):
    """A block cannot be applied at all (wrong height, parent, root or digest)."""


class GenesisError(LedgerError):
    """A genesis file is invalid; the message names the offending field."""


class StoreError(LedgerError):
    """The key-value store is missing data it must hold, or holds corrupt data."""
