"""Proxy handler of KYC_Audit: re-encrypt approved credential fields to the auditor.

Every poll the handler reads the on-chain audit log from where it stopped,
remembers each ``audit_request`` (at most :data:`MAX_PENDING`), and for each
pending request where this node is a proxy of the auditor's kfrag set, it
applies :func:`pre.kyc.get_audit_release_error` to the on-chain facts (auditor
registered, request logged and the subject notified, k approvals, time lock
over without objection, not expired, fields approved). Only when that returns
None does it re-encrypt each requested field with its kfrag and submit the
signed cfrag as an AUDIT_CFRAG transaction (which the chain checks again).
A refusal is logged once per request and reason (``event=kyc_audit_proxy_refused``);
a request that can never be released (expired, objected, no kfrags for this
proxy) is dropped. The log position is kept in ``<data_dir>/kyc_audit.json``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import umbral_pre

from ledger.tx import TxKind
from node.client import ClientError
from node.kyc_client import KycClient
from node.proxy_service import ProxyContext
from pre.keywrap import KeyWrapError
from pre.kyc import (
    AuditFacts,
    KycError,
    SealedCredential,
    get_audit_release_error,
    process_field_reencryption,
)

STATE_FILE = "kyc_audit.json"
MAX_PENDING = 1_000
LOG_PAGE = 200
RESUBMIT_S = 20.0


def compute_audit_facts(doc: dict[str, Any], subject_notified: bool) -> AuditFacts:
    """Return the release-rule facts of an audit request document (GET /v1/audits/{id}).

    The chain counts a request as expired from height ``expiry`` on, so the
    last height at which it may be released is ``expiry - 1``. The approved
    fields are the request's fields (k governance approvals approve the request).
    """
    fields = frozenset(doc["fields"])
    return AuditFacts(
        auditor_registered=bool(doc["auditor_registered"]),
        request_logged=True,
        subject_notified=subject_notified,
        approvals=len(doc["approvals"]),
        approval_threshold=int(doc["approval_threshold"]),
        objection_raised=bool(doc["objections"]),
        current_height=int(doc["current_height"]),
        time_lock_end_height=int(doc["timelock_end"]),
        expiry_height=int(doc["expiry"]) - 1,
        requested_fields=fields,
        approved_fields=fields,
    )


def is_final_refusal(doc: dict[str, Any]) -> bool:
    """Return True iff the request can never become releasable (objected or expired)."""
    return bool(doc["objections"]) or int(doc["current_height"]) >= int(doc["expiry"])


class AuditProxyHandler:
    """The ``kyc_audit`` proxy handler (see module docstring)."""

    name = "kyc_audit"

    def __init__(self, ctx: ProxyContext) -> None:
        self.kyc = KycClient(ctx.client.base_url, timeout=30.0)
        self.path = ctx.data_dir / STATE_FILE
        self.log_seq = 0
        self.pending: dict[str, str] = {}  # request id hex -> subject hex
        self.refused: dict[str, str] = {}  # request id hex -> last logged reason
        self.submitted: dict[tuple[str, str], float] = {}  # (request, field) -> monotonic time
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
            self.log_seq = int(doc["log_seq"])
            self.pending = {str(k): str(v) for k, v in dict(doc["pending"]).items()}
        except (OSError, ValueError, KeyError, TypeError):
            self.log_seq, self.pending = 0, {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"log_seq": self.log_seq, "pending": self.pending}))
        tmp.replace(self.path)

    def _read_log(self) -> None:
        entries = self.kyc.get_audit_log(self.log_seq, LOG_PAGE)
        for entry in entries:
            self.log_seq = max(self.log_seq, int(entry["seq"]) + 1)
            if entry["kind"] == "audit_request" and len(self.pending) < MAX_PENDING:
                self.pending[entry["request_id"]] = entry["subject"]
        if entries:
            self._save()

    def _drop(self, request_hex: str) -> None:
        self.pending.pop(request_hex, None)
        self.refused.pop(request_hex, None)
        self._save()

    def process_poll(self, ctx: ProxyContext) -> int:
        """Read new audit requests, then release the fields of every releasable one."""
        self._read_log()
        done = 0
        for request_hex in list(self.pending):
            done += self._process_request(ctx, request_hex)
        return done

    def _process_request(self, ctx: ProxyContext, request_hex: str) -> int:
        request_id = bytes.fromhex(request_hex)
        try:
            doc = self.kyc.get_audit(request_id)
        except ClientError as exc:
            if exc.code == "unknown_audit":
                self._drop(request_hex)
                return 0
            raise
        me = ctx.public_key.hex()
        kfrags = doc["kfrags"]
        if kfrags is None or me not in kfrags["proxies"]:
            self._drop(request_hex)  # this node holds no kfrag for that auditor
            return 0
        error = get_audit_release_error(compute_audit_facts(doc, subject_notified=True))
        if error is None:
            missing = sorted(set(doc["fields"]) - set(kfrags["fields"]))
            if missing:
                error = f"no kfrags for field(s) {', '.join(missing)}"
        if error is not None:
            if self.refused.get(request_hex) != error:
                self.refused[request_hex] = error
                ctx.log.info(
                    "event=kyc_audit_proxy_refused request_id=%s reason=%s", request_hex, error
                )
            if is_final_refusal(doc):
                self._drop(request_hex)
            return 0
        posted = {c["field"] for c in doc["cfrags"] if c["proxy"] == me}
        todo = [f for f in doc["fields"] if f not in posted]
        if not todo:
            self._drop(request_hex)
            return 0
        return self._release(ctx, doc, request_id, todo)

    def _release(
        self, ctx: ProxyContext, doc: dict[str, Any], request_id: bytes, fields: list[str]
    ) -> int:
        subject = bytes.fromhex(doc["subject"])
        auditor = bytes.fromhex(doc["auditor"])
        kfrag_set = self.kyc.get_kfrag_set(subject, auditor)
        index = kfrag_set["proxies"].index(ctx.public_key.hex())
        try:
            capsule = bytes.fromhex(self.kyc.get_kyc(subject)["capsule"])
            sealed = SealedCredential.from_bytes(capsule)
            verifying = umbral_pre.PublicKey.from_compressed_bytes(
                bytes.fromhex(kfrag_set["verifying_pk"])
            )
            receiving = umbral_pre.PublicKey.from_compressed_bytes(
                bytes.fromhex(kfrag_set["receiving_pk"])
            )
        except (KycError, ValueError) as exc:
            ctx.log.warning("event=kyc_audit_proxy_bad_record request_id=%s error=%s",
                            request_id.hex(), exc)
            return 0
        done = 0
        now = time.monotonic()
        for name in fields:
            key = (request_id.hex(), name)
            if now - self.submitted.get(key, -RESUBMIT_S) < RESUBMIT_S:
                continue  # submitted recently, waiting for it to be included
            try:
                sealed_kfrag = bytes.fromhex(kfrag_set["fields"][name][index])
                signed = process_field_reencryption(
                    ctx.seed, sealed_kfrag, sealed, name, verifying, receiving, request_id
                )
            except (KeyWrapError, KycError, KeyError, ValueError) as exc:
                ctx.log.warning(
                    "event=kyc_audit_proxy_kfrag_failed request_id=%s field=%s error=%s",
                    request_id.hex(), name, exc,
                )
                continue
            tx_hash = ctx.submit(TxKind.AUDIT_CFRAG, [request_id, name, signed])
            self.submitted[key] = now
            ctx.log.info(
                "event=kyc_audit_cfrag_submitted request_id=%s field=%s tx=%s",
                request_id.hex(), name, tx_hash.hex(),
            )
            done += 1
        if len(self.submitted) > MAX_PENDING * 4:
            self.submitted.clear()
        return done
