"""Rules of the data access path: PRE keys, grants, capsule fragments, revocation.

* ``REGISTER_PRE_KEY`` (19): any account registers (or replaces) its Umbral
  public key (33-byte compressed point) and, optionally, its Umbral verifying
  key (providers sign kfrags with it). Consumers, auditors and executors all
  receive re-encrypted keys under the registered key.
"""

from __future__ import annotations

from collections.abc import Callable

import umbral_pre

from ledger import schema
from ledger import tx as t
from ledger.errors import ReceiptCode, RuleError
from ledger.records import PreKeyRecord
from ledger.rules import Env
from ledger.state import State


def _fail(code: ReceiptCode, reason: str) -> RuleError:
    return RuleError(code, reason)


def is_umbral_public_key(raw: bytes) -> bool:
    """Return True iff ``raw`` is a 33-byte compressed Umbral (secp256k1) public key."""
    if not isinstance(raw, bytes) or len(raw) != t.UMBRAL_KEY_SIZE:
        return False
    try:
        umbral_pre.PublicKey.from_compressed_bytes(raw)
    except (ValueError, TypeError):
        return False
    return True


def get_pre_key(state: State, account: bytes) -> PreKeyRecord | None:
    """Return the account's registered PRE key record, or None."""
    value: PreKeyRecord | None = state.get(schema.pre_key_key(account))
    return value


def process_register_pre_key(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record the sender's Umbral public key (and verifying key, if given); replaces any."""
    args: t.RegisterPreKey = tx.args
    if not is_umbral_public_key(args.umbral_key):
        raise _fail(
            ReceiptCode.BAD_PARAMETER, "umbral_key must be a 33-byte compressed Umbral public key"
        )
    if args.verifying_key and not is_umbral_public_key(args.verifying_key):
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            "verifying_key must be empty or a 33-byte compressed Umbral public key",
        )
    record = PreKeyRecord(args.umbral_key, args.verifying_key, env.height)
    state.put(schema.pre_key_key(tx.sender), record)
    return b""


DATA_RULES: dict[t.TxKind, Callable[[State, t.Tx, Env], bytes]] = {
    t.TxKind.REGISTER_PRE_KEY: process_register_pre_key,
}
