"""The proxy's re-encryption decision and kfrag custody."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pre.proxy_policy import (
    REENCRYPT,
    CustodyBook,
    CustodyError,
    CustodyRecord,
    ReencryptionFacts,
    compute_proxy_decision,
    is_reencrypt,
)

GOOD = ReencryptionFacts(
    grant_exists=True,
    grant_settled=True,
    asset_exists=True,
    asset_revoked=False,
    grant_asset_id=b"asset-1",
    grant_consumer=b"alice",
    grant_consumer_umbral_key=b"K" * 33,
    request_asset_id=b"asset-1",
    request_consumer=b"alice",
    request_consumer_umbral_key=b"K" * 33,
    current_height=100,
    deadline_height=100,
    has_kfrag=True,
)


def test_all_conditions_hold() -> None:
    assert compute_proxy_decision(GOOD) == REENCRYPT
    assert is_reencrypt(compute_proxy_decision(GOOD))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"grant_exists": False}, "no access grant"),
        ({"grant_settled": False}, "not settled"),
        ({"asset_exists": False}, "asset does not exist"),
        ({"asset_revoked": True}, "revoked"),
        ({"request_asset_id": b"asset-2"}, "another asset"),
        ({"request_consumer": b"mallory"}, "another consumer"),
        ({"request_consumer_umbral_key": b"M" * 33}, "consumer key does not match"),
        ({"current_height": 101}, "deadline height 100 has passed"),
        ({"has_kfrag": False}, "holds no key fragment"),
    ],
)
def test_each_refusal_has_its_reason(change: dict[str, Any], reason: str) -> None:
    decision = compute_proxy_decision(dataclasses.replace(GOOD, **change))
    assert decision != REENCRYPT
    assert reason in decision


def test_revocation_deletes_kfrags_of_that_asset_only() -> None:
    book = CustodyBook()
    book.process_store(CustodyRecord(b"a1", b"alice", b"k1"), asset_revoked=False)
    book.process_store(CustodyRecord(b"a1", b"bob", b"k2"), asset_revoked=False)
    book.process_store(CustodyRecord(b"a2", b"alice", b"k3"), asset_revoked=False)
    assert len(book) == 3
    assert book.process_revoke(b"a1") == 2
    assert book.get_record(b"a1", b"alice") is None
    assert book.get_record(b"a2", b"alice") == CustodyRecord(b"a2", b"alice", b"k3")
    assert len(book) == 1
    with pytest.raises(CustodyError, match="revoked"):
        book.process_store(CustodyRecord(b"a1", b"carol", b"k4"), asset_revoked=True)


def test_custody_bounds_and_validation() -> None:
    book = CustodyBook(max_records=2, max_per_asset=1)
    book.process_store(CustodyRecord(b"a1", b"alice", b"k"), asset_revoked=False)
    book.process_store(CustodyRecord(b"a1", b"alice", b"k-new"), asset_revoked=False)
    assert len(book) == 1
    assert book.get_record(b"a1", b"alice") == CustodyRecord(b"a1", b"alice", b"k-new")
    with pytest.raises(CustodyError, match="already has 1"):
        book.process_store(CustodyRecord(b"a1", b"bob", b"k"), asset_revoked=False)
    book.process_store(CustodyRecord(b"a2", b"bob", b"k"), asset_revoked=False)
    with pytest.raises(CustodyError, match="full"):
        book.process_store(CustodyRecord(b"a3", b"bob", b"k"), asset_revoked=False)
    with pytest.raises(CustodyError, match="sealed kfrag"):
        book.process_store(CustodyRecord(b"a4", b"bob", b""), asset_revoked=False)
    assert book.process_remove(b"a2", b"bob") and not book.process_remove(b"a2", b"bob")
    assert len(book) == 1
