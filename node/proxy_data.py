"""The proxy handler of the data access path: re-encrypt for settled grants, keep custody.

Each poll reads the grants naming this proxy (``GET /v1/proxy/{key}/grants``)
from a cursor. For a grant awaiting delivery it waits until the grant's
block is settled (PoS checkpoint), takes the sealed kfrag into custody
(:class:`pre.proxy_policy.CustodyBook`, persisted under the proxy data dir),
asks :func:`pre.proxy_policy.compute_proxy_decision` with the on-chain facts,
opens and verifies the kfrag, re-encrypts the capsule and submits
``PUBLISH_CFRAG``. When an asset is revoked every kfrag of it is deleted from
custody. Every refusal is logged with its reason (once per grant and reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import umbral_pre

from ledger.records import ACCESS_DELIVERING
from ledger.tx import TxKind
from node.client import ClientError
from node.proxy_service import ProxyContext
from node.wallet import read_json_file, write_json_file
from pre import keywrap
from pre.proxy_policy import (
    CustodyBook,
    CustodyError,
    CustodyRecord,
    ReencryptionFacts,
    compute_proxy_decision,
    is_reencrypt,
)

CUSTODY_FILE = "data-custody.json"
CURSOR_FILE = "data-cursor.json"
PAGE = 100
REVOKE_CHECK_POLLS = 4
MAX_NOTES = 10_000


def _pk(hex_key: str) -> umbral_pre.PublicKey:
    return umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(hex_key))


@dataclass
class DataProxyHandler:
    """Re-encryption work of the data access path (one instance per proxy process)."""

    ctx: ProxyContext
    name: str = "data"
    custody: CustodyBook = field(default_factory=CustodyBook)
    _notes: dict[str, str] = field(default_factory=dict)
    _polls: int = 0

    def __post_init__(self) -> None:
        stored = read_json_file(self.ctx.data_dir / CUSTODY_FILE) or []
        for item in stored:
            try:
                record = CustodyRecord(
                    bytes.fromhex(item["asset_id"]),
                    bytes.fromhex(item["consumer"]),
                    bytes.fromhex(item["sealed_kfrag"]),
                )
                self.custody.process_store(record, asset_revoked=False)
            except (CustodyError, KeyError, ValueError, TypeError) as exc:
                self.ctx.log.warning("event=custody_record_dropped reason=%s", exc)

    # -- persistence ---------------------------------------------------------------

    def _save_custody(self) -> None:
        items = [
            {
                "asset_id": record.asset_id.hex(),
                "consumer": record.consumer.hex(),
                "sealed_kfrag": record.sealed_kfrag.hex(),
            }
            for record in self.custody.get_records()
        ]
        write_json_file(self.ctx.data_dir / CUSTODY_FILE, items)

    def get_custody_assets(self) -> list[bytes]:
        """Return the asset ids this proxy holds kfrags for."""
        return self.custody.get_asset_ids()

    def _note(self, request_id: str, reason: str) -> None:
        if self._notes.get(request_id) != reason:
            self._notes[request_id] = reason
            self.ctx.log.info("event=reencrypt_refused request=%s reason=%s", request_id, reason)
            if len(self._notes) > MAX_NOTES:
                self._notes.clear()

    # -- work ------------------------------------------------------------------------

    def _process_revocations(self) -> int:
        removed = 0
        for asset_id in self.get_custody_assets():
            try:
                asset = self.ctx.client.get_asset(asset_id)
            except ClientError as exc:
                if exc.code != "unknown_asset":
                    raise
                asset = {"revoked": True}
            if asset.get("revoked"):
                count = self.custody.process_revoke(asset_id)
                removed += count
                self.ctx.log.info(
                    "event=kfrags_deleted asset=%s count=%d reason=asset revoked",
                    asset_id.hex(),
                    count,
                )
        if removed:
            self._save_custody()
        return removed

    def _process_grant(self, item: dict[str, Any], height: int) -> bool:
        rid = item["request_id"]
        asset_id = bytes.fromhex(item["asset_id"])
        consumer = bytes.fromhex(item["consumer"])
        sealed = bytes.fromhex(item["kfrag"])
        if item["asset_revoked"]:
            if self.custody.process_revoke(asset_id):
                self._save_custody()
                self.ctx.log.info(
                    "event=kfrags_deleted asset=%s reason=asset revoked", item["asset_id"]
                )
            self._note(rid, "the asset has been revoked")
            return False
        held = self.custody.get_record(asset_id, consumer)
        if held is None or held.sealed_kfrag != sealed:
            try:
                self.custody.process_store(CustodyRecord(asset_id, consumer, sealed), False)
                self._save_custody()
            except CustodyError as exc:
                self._note(rid, f"custody refused the kfrag: {exc}")
                return False
        facts = ReencryptionFacts(
            grant_exists=True,
            grant_settled=bool(item["grant_settled"]),
            asset_exists=bool(item["asset_exists"]),
            asset_revoked=bool(item["asset_revoked"]),
            grant_asset_id=asset_id,
            grant_consumer=consumer,
            grant_consumer_umbral_key=bytes.fromhex(item["receiving_pk"]),
            request_asset_id=asset_id,
            request_consumer=consumer,
            request_consumer_umbral_key=bytes.fromhex(item["receiving_pk"]),
            current_height=height,
            deadline_height=int(item["deadline"]),
            has_kfrag=self.custody.get_record(asset_id, consumer) is not None,
        )
        decision = compute_proxy_decision(facts)
        if not is_reencrypt(decision):
            self._note(rid, decision)
            return False
        try:
            signed = keywrap.process_reencryption(
                self.ctx.seed,
                sealed,
                bytes.fromhex(item["capsule"]),
                _pk(item["verifying_pk"]),
                _pk(item["delegating_pk"]),
                _pk(item["receiving_pk"]),
                bytes.fromhex(rid),
            )
        except (keywrap.KeyWrapError, ValueError) as exc:
            self._note(rid, f"kfrag refused: {exc}")
            return False
        try:
            self.ctx.submit(TxKind.PUBLISH_CFRAG, [bytes.fromhex(rid), signed])
        except ClientError as exc:
            self._note(rid, f"cfrag not submitted: {exc}")
            return False
        self.ctx.log.info("event=cfrag_published request=%s asset=%s", rid, item["asset_id"])
        self._notes[rid] = "published"
        return True

    def process_poll(self, ctx: ProxyContext) -> int:
        """Publish cfrags for settled grants naming this proxy; delete revoked kfrags."""
        self._polls += 1
        cursor_doc = read_json_file(ctx.data_dir / CURSOR_FILE) or {}
        cursor = int(cursor_doc.get("cursor", 0))
        doc = ctx.client.get_proxy_grants(ctx.public_key, cursor, PAGE)
        height = int(doc["height"])
        done = 0
        open_heights: list[int] = []
        for item in doc["grants"]:
            if item["status"] != ACCESS_DELIVERING or item["published"]:
                continue
            if height > int(item["deadline"]):
                self._note(item["request_id"], "the grant deadline has passed")
                continue
            if self._notes.get(item["request_id"]) == "published":
                open_heights.append(int(item["height"]))  # submitted, not yet on chain
                continue
            if self._process_grant(item, height):
                done += 1
            if not item["asset_revoked"]:
                open_heights.append(int(item["height"]))
        if open_heights:
            cursor = min(open_heights)
        elif doc["grants"]:
            last = max(int(i["height"]) for i in doc["grants"])
            cursor = last if len(doc["grants"]) >= PAGE else last + 1
        write_json_file(ctx.data_dir / CURSOR_FILE, {"cursor": cursor})
        if self._polls % REVOKE_CHECK_POLLS == 1:
            self._process_revocations()
        return done


def create_data_handler(ctx: ProxyContext) -> DataProxyHandler:
    """Factory for :data:`node.proxy_handlers.PROXY_HANDLERS`."""
    return DataProxyHandler(ctx)
