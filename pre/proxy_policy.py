"""The pure decision a proxy validator makes before it re-encrypts, and its kfrag custody.

The node reads the on-chain facts (grant, asset, heights) and passes them in;
:func:`compute_proxy_decision` returns :data:`REENCRYPT` or a refusal reason.
:class:`CustodyBook` holds the sealed kfrags a proxy keeps, bounded, and
revoking an asset deletes every kfrag of that asset.
"""

from __future__ import annotations

from dataclasses import dataclass

REENCRYPT = "re-encrypt"
MAX_CUSTODY_RECORDS = 100_000
MAX_RECORDS_PER_ASSET = 10_000
MAX_SEALED_KFRAG_SIZE = 1024
MAX_ID_SIZE = 64


class CustodyError(ValueError):
    """Raised for a malformed custody record or a full custody book."""


@dataclass(frozen=True)
class ReencryptionFacts:
    """On-chain facts about one re-encryption request, read by the node.

    ``grant_*`` come from the grant record (None when no grant exists);
    ``request_*`` from the request the proxy received; ``has_kfrag`` says
    whether this proxy holds a kfrag for (asset, consumer).
    """

    grant_exists: bool
    grant_settled: bool
    asset_exists: bool
    asset_revoked: bool
    grant_asset_id: bytes | None
    grant_consumer: bytes | None
    grant_consumer_umbral_key: bytes | None
    request_asset_id: bytes
    request_consumer: bytes
    request_consumer_umbral_key: bytes
    current_height: int
    deadline_height: int
    has_kfrag: bool


def compute_proxy_decision(facts: ReencryptionFacts) -> str:
    """Return REENCRYPT when every condition holds, otherwise the first refusal reason.

    Order of checks: grant exists, settled, asset exists and is not revoked,
    the request names the grant's asset, consumer and consumer key, the
    deadline height has not passed, and this proxy holds the kfrag.
    """
    if not facts.grant_exists:
        return "no access grant exists for this request"
    if not facts.grant_settled:
        return "the access grant is not settled yet"
    if not facts.asset_exists:
        return "the asset does not exist"
    if facts.asset_revoked:
        return "the asset has been revoked"
    if facts.grant_asset_id != facts.request_asset_id:
        return "the request is for another asset than the grant"
    if facts.grant_consumer != facts.request_consumer:
        return "the request is for another consumer than the grant"
    if facts.grant_consumer_umbral_key != facts.request_consumer_umbral_key:
        return "the consumer key does not match the key in the grant"
    if facts.current_height > facts.deadline_height:
        return f"the grant deadline height {facts.deadline_height} has passed"
    if not facts.has_kfrag:
        return "this proxy holds no key fragment for this asset and consumer"
    return REENCRYPT


def is_reencrypt(decision: str) -> bool:
    """Return True iff ``decision`` is the instruction to re-encrypt."""
    return decision == REENCRYPT


@dataclass(frozen=True)
class CustodyRecord:
    """A sealed kfrag this proxy keeps for (asset, consumer)."""

    asset_id: bytes
    consumer: bytes
    sealed_kfrag: bytes


def get_custody_record_error(record: CustodyRecord) -> str | None:
    """Return None if the record's fields are within bounds, else the reason."""
    if not 1 <= len(record.asset_id) <= MAX_ID_SIZE:
        return f"asset id must be 1..{MAX_ID_SIZE} bytes"
    if not 1 <= len(record.consumer) <= MAX_ID_SIZE:
        return f"consumer id must be 1..{MAX_ID_SIZE} bytes"
    if not 1 <= len(record.sealed_kfrag) <= MAX_SEALED_KFRAG_SIZE:
        return f"sealed kfrag must be 1..{MAX_SEALED_KFRAG_SIZE} bytes"
    return None


class CustodyBook:
    """The kfrags one proxy keeps, indexed by asset then consumer.

    Bounded by ``max_records`` in total and ``max_per_asset`` per asset.
    Revoking an asset deletes all its kfrags; whether an asset is revoked is
    an on-chain fact the caller passes to :meth:`process_store`.
    """

    def __init__(
        self, max_records: int = MAX_CUSTODY_RECORDS, max_per_asset: int = MAX_RECORDS_PER_ASSET
    ) -> None:
        self.max_records = max_records
        self.max_per_asset = max_per_asset
        self._by_asset: dict[bytes, dict[bytes, CustodyRecord]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def process_store(self, record: CustodyRecord, asset_revoked: bool) -> None:
        """Store or replace the kfrag for (asset, consumer).

        Raises CustodyError if the record is malformed, the asset is revoked,
        or a bound would be exceeded.
        """
        error = get_custody_record_error(record)
        if error is not None:
            raise CustodyError(error)
        if asset_revoked:
            raise CustodyError("the asset has been revoked; no kfrags are kept for it")
        records = self._by_asset.get(record.asset_id, {})
        is_new = record.consumer not in records
        if is_new and len(records) >= self.max_per_asset:
            raise CustodyError(f"asset already has {self.max_per_asset} custody records")
        if is_new and self._count >= self.max_records:
            raise CustodyError(f"custody book is full ({self.max_records} records)")
        records[record.consumer] = record
        self._by_asset[record.asset_id] = records
        if is_new:
            self._count += 1

    def get_record(self, asset_id: bytes, consumer: bytes) -> CustodyRecord | None:
        """Return the record for (asset, consumer), or None."""
        return self._by_asset.get(asset_id, {}).get(consumer)

    def get_records(self) -> list[CustodyRecord]:
        """Return every record held, ordered by asset then consumer."""
        return [
            self._by_asset[asset][consumer]
            for asset in sorted(self._by_asset)
            for consumer in sorted(self._by_asset[asset])
        ]

    def get_asset_ids(self) -> list[bytes]:
        """Return the ids of the assets with at least one kfrag held, sorted."""
        return sorted(self._by_asset)

    def process_revoke(self, asset_id: bytes) -> int:
        """Delete every kfrag of ``asset_id``; return how many were deleted."""
        removed = self._by_asset.pop(asset_id, {})
        self._count -= len(removed)
        return len(removed)

    def process_remove(self, asset_id: bytes, consumer: bytes) -> bool:
        """Delete the kfrag for (asset, consumer); return True if it existed."""
        records = self._by_asset.get(asset_id)
        if records is None or consumer not in records:
            return False
        del records[consumer]
        if not records:
            del self._by_asset[asset_id]
        self._count -= 1
        return True
