"""Rules of the data access path (kinds 19-24): PRE keys, grants, cfrags, revocation."""

from __future__ import annotations

import umbral_pre
from ledger_helpers import USERS, Chain

from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.tx import TxKind


def _umbral_pk() -> bytes:
    return bytes(umbral_pre.SecretKey.random().public_key().to_compressed_bytes())


def test_register_pre_key_records_and_replaces() -> None:
    chain = Chain()
    user = USERS[3]
    assert q.get_pre_key(chain.state, user.pub) is None
    first = _umbral_pk()
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [first, b""])
    assert r.ok, r.reason
    record = q.get_pre_key(chain.state, user.pub)
    assert record is not None and record.umbral_key == first and record.verifying_key == b""
    second, verifying = _umbral_pk(), _umbral_pk()
    assert chain.run1(user, TxKind.REGISTER_PRE_KEY, [second, verifying]).ok
    record = q.get_pre_key(chain.state, user.pub)
    assert record is not None and record.umbral_key == second
    assert record.verifying_key == verifying and record.height == chain.state.height


def test_register_pre_key_refuses_malformed_keys() -> None:
    chain = Chain()
    user = USERS[3]
    not_a_point = b"\x02" + b"\xff" * 32
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [not_a_point, b""])
    assert r.code == ReceiptCode.BAD_PARAMETER and "umbral_key" in r.reason
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [_umbral_pk(), b"\x03" * 5])
    assert r.code == ReceiptCode.BAD_PARAMETER and "verifying_key" in r.reason
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [b"", b""])
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert q.get_pre_key(chain.state, user.pub) is None
