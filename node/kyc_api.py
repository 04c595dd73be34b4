"""HTTP routes of KYC_Audit: the audit entry point, audit status, subject events, kfrag sets.

* ``POST /v1/kyc_audit`` takes the auditor's signed AUDIT_REQUEST (``{"tx": hex}``
  or raw bytes) and refuses it up front, with a JSON ``{"error", "detail"}`` and
  a log line ``event=kyc_audit_refused``, when it is not an AUDIT_REQUEST for
  this chain with a valid signature (400), the sender is not a registered
  auditor (403), the subject has no KYC record (409), or the fields are empty,
  repeated or not fields of the subject's credential (400). Otherwise it is
  admitted like ``POST /v1/tx``; the answer carries the request id (the tx hash).
* ``GET /v1/audits/{id}[?fields=a,b]``: the request, approvals, objections,
  time lock and expiry heights, whether the proxies may release now (for the
  given fields) or why not, and the cfrags posted so far. A refusal for named
  fields is logged (``event=kyc_audit_release_refused``).
* ``GET /v1/kyc/{subject}``, ``/v1/kyc/{subject}/events``,
  ``/v1/kyc/{subject}/kfrags/{auditor}``, ``GET /v1/auditors``, ``GET /v1/governance`` and
  ``GET /v1/audit_log?start=&limit=``: read-only views, each bounded.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ledger import queries
from ledger.errors import TxError
from ledger.records import AuditLogEntry
from ledger.state import State
from ledger.tx import TxKind, decode_tx, is_valid_tx_signature
from node.http_api import TxRejectedError, _error, _parse_hex, _read_txs

logger = logging.getLogger("dmchain.kyc")

MAX_EVENTS = 1_000
MAX_LOG_PAGE = 500


class KycLedger(Protocol):
    """The ledger view the routes read: its current state."""

    @property
    def state(self) -> State:
        """The state after the last applied block."""
        ...


class KycService(Protocol):
    """What the KYC routes need from a node."""

    max_body_bytes: int
    chain_id: str
    ledger: Any

    def submit_tx(self, raw: bytes) -> bytes:
        """Admit one encoded transaction; returns its hash or raises TxRejectedError."""
        ...


def _event_doc(seq: int, entry: AuditLogEntry) -> dict[str, Any]:
    return {
        "seq": seq,
        "height": entry.height,
        "kind": entry.kind,
        "actor": entry.actor.hex(),
        "subject": entry.subject.hex(),
        "request_id": entry.request_id.hex(),
    }


def get_sealed_field_names(capsule: bytes) -> list[str] | None:
    """Return the field names of a KYC record's sealed credential, None if it holds none."""
    from pre.kyc import KycError, SealedCredential

    try:
        return [f.name for f in SealedCredential.from_bytes(capsule).fields]
    except KycError:
        return None


def get_kyc_audit_refusal(state: State, raw: bytes, chain_id: str) -> tuple[int, str, str] | None:
    """Return (HTTP status, code, reason) if a KYC_Audit submission must be refused, else None."""
    try:
        tx = decode_tx(raw)
    except TxError as exc:
        return 400, "malformed", str(exc)
    if tx.kind != TxKind.AUDIT_REQUEST:
        return 400, "wrong_kind", f"KYC_Audit takes an AUDIT_REQUEST, not {tx.kind.name}"
    if tx.chain_id != chain_id:
        return 400, "wrong_chain", f"transaction is for chain {tx.chain_id!r}"
    if not is_valid_tx_signature(tx):
        return 400, "bad_signature", "signature does not verify"
    if not queries.is_auditor(state, tx.sender):
        return 403, "not_auditor", f"requester {tx.sender.hex()} is not a registered auditor"
    kyc = queries.get_kyc(state, tx.args.subject)
    if kyc is None:
        return 409, "unknown_subject", f"subject {tx.args.subject.hex()} has no KYC record"
    fields: list[str] = tx.args.fields
    if not fields:
        return 400, "no_fields", "an audit request must name at least one field"
    if len(set(fields)) != len(fields):
        return 400, "repeated_fields", "an audit request names each field once"
    known = get_sealed_field_names(kyc.capsule)
    if known is not None:
        unknown = sorted(set(fields) - set(known))
        if unknown:
            return 400, "unknown_fields", f"the credential has no field(s) {', '.join(unknown)}"
    return None


def get_audit_doc(
    state: State, request_id: bytes, fields: list[str] | None
) -> dict[str, Any] | None:
    """Return the audit request document (see module docstring), or None if unknown."""
    record = queries.get_audit_request(state, request_id)
    if record is None:
        return None
    gov = state.get(b"mgovernance")
    releasable, reason = queries.is_audit_releasable(state, request_id, state.height, fields)
    kfrags = queries.get_kfrag_set(state, record.subject, record.auditor)
    return {
        "request_id": request_id.hex(),
        "auditor": record.auditor.hex(),
        "auditor_registered": queries.is_auditor(state, record.auditor),
        "subject": record.subject.hex(),
        "order_hash": record.order_hash.hex(),
        "fields": list(record.fields),
        "reason": record.reason,
        "height": record.height,
        "timelock_end": record.timelock_end,
        "expiry": record.expiry,
        "approvals": [a.hex() for a in record.approvals],
        "approval_threshold": gov.threshold,
        "objections": [o.hex() for o in record.objections],
        "releases": record.releases,
        "current_height": state.height,
        "releasable": releasable,
        "release_reason": reason,
        "kfrags": None
        if kfrags is None
        else {
            "threshold": kfrags.threshold,
            "proxies": [p.hex() for p in kfrags.proxies],
            "verifying_pk": kfrags.verifying_pk.hex(),
            "receiving_pk": kfrags.receiving_pk.hex(),
            "fields": [f[0] for f in kfrags.fields],
        },
        "cfrags": [
            {
                "field": c.field,
                "proxy": c.proxy.hex(),
                "signed_cfrag": c.signed_cfrag.hex(),
                "valid": c.valid,
                "height": c.height,
            }
            for c in queries.get_audit_cfrags(state, request_id)
        ],
    }


def get_kfrag_set_doc(state: State, subject: bytes, auditor: bytes) -> dict[str, Any] | None:
    """Return the kfrag set of ``subject`` for ``auditor`` (sealed kfrags as hex), or None."""
    record = queries.get_kfrag_set(state, subject, auditor)
    if record is None:
        return None
    return {
        "subject": subject.hex(),
        "auditor": auditor.hex(),
        "member": record.member.hex(),
        "threshold": record.threshold,
        "verifying_pk": record.verifying_pk.hex(),
        "receiving_pk": record.receiving_pk.hex(),
        "proxies": [p.hex() for p in record.proxies],
        "fields": {name: [k.hex() for k in kfrags] for name, kfrags in record.fields},
        "height": record.height,
    }


def get_kyc_doc(state: State, subject: bytes) -> dict[str, Any] | None:
    """Return a subject's KYC record (sealed credential as hex) and its kfrag holders."""
    kyc = queries.get_kyc(state, subject)
    if kyc is None:
        return None
    return {
        "subject": subject.hex(),
        "credential_commitment": kyc.credential_commitment.hex(),
        "capsule": kyc.capsule.hex(),
        "fields": get_sealed_field_names(kyc.capsule),
        "member": kyc.member.hex(),
        "height": kyc.height,
        "kfrag_auditors": [a.hex() for a in queries.get_kfrag_auditors(state, subject)],
    }


def register_kyc_routes(app: FastAPI, service: KycService) -> None:
    """Add the KYC_Audit routes to ``app``."""

    def state() -> State:
        value: State = service.ledger.state
        return value

    @app.post("/v1/kyc_audit", summary="KYC_Audit: submit an auditor's signed AUDIT_REQUEST")
    async def post_kyc_audit(request: Request) -> Response:
        txs = await _read_txs(request, service.max_body_bytes)
        if isinstance(txs, JSONResponse):
            return txs
        if len(txs) != 1:
            return _error(400, "malformed_body", "KYC_Audit takes one transaction")
        refusal = get_kyc_audit_refusal(state(), txs[0], service.chain_id)
        if refusal is not None:
            status, code, detail = refusal
            logger.info("event=kyc_audit_refused code=%s detail=%s", code, detail)
            return _error(status, code, detail)
        try:
            tx_hash = service.submit_tx(txs[0])
        except TxRejectedError as exc:
            logger.info("event=kyc_audit_refused code=%s detail=%s", exc.code, exc.detail)
            return _error(400 if exc.code != "mempool_full" else 503, exc.code, exc.detail)
        logger.info("event=kyc_audit_admitted request_id=%s", tx_hash.hex())
        return JSONResponse({"hash": tx_hash.hex(), "request_id": tx_hash.hex()})

    @app.get("/v1/audits/{request_id}", summary="An audit request, its approvals and cfrags")
    async def get_audit(request_id: str, fields: str = "") -> Response:
        raw = _parse_hex(request_id, 32, "request id")
        if isinstance(raw, JSONResponse):
            return raw
        wanted = [f for f in fields.split(",") if f][:64] or None
        doc = get_audit_doc(state(), raw, wanted)
        if doc is None:
            return _error(404, "unknown_audit", "no such audit request")
        if wanted and not doc["releasable"]:
            logger.info(
                "event=kyc_audit_release_refused request_id=%s fields=%s reason=%s",
                request_id, ",".join(wanted), doc["release_reason"],
            )
        return JSONResponse(doc)

    @app.get("/v1/kyc/{subject}", summary="A subject's sealed KYC credential record")
    async def get_kyc(subject: str) -> Response:
        raw = _parse_hex(subject, 32, "subject")
        if isinstance(raw, JSONResponse):
            return raw
        doc = get_kyc_doc(state(), raw)
        return _error(404, "unknown_subject", "no KYC record") if doc is None else JSONResponse(doc)

    @app.get("/v1/kyc/{subject}/events", summary="Audit log entries about a subject")
    async def get_kyc_events(subject: str, limit: int = MAX_EVENTS) -> Response:
        raw = _parse_hex(subject, 32, "subject")
        if isinstance(raw, JSONResponse):
            return raw
        entries = queries.get_audit_log_by_subject(state(), raw, max(0, min(limit, MAX_EVENTS)))
        return JSONResponse(
            {"subject": subject, "events": [_event_doc(s, e) for s, e in entries]}
        )

    @app.get("/v1/kyc/{subject}/kfrags/{auditor}", summary="A subject's kfrag set for an auditor")
    async def get_kfrags(subject: str, auditor: str) -> Response:
        raw_subject = _parse_hex(subject, 32, "subject")
        if isinstance(raw_subject, JSONResponse):
            return raw_subject
        raw_auditor = _parse_hex(auditor, 32, "auditor")
        if isinstance(raw_auditor, JSONResponse):
            return raw_auditor
        doc = get_kfrag_set_doc(state(), raw_subject, raw_auditor)
        return _error(404, "unknown_kfrags", "no kfrag set") if doc is None else JSONResponse(doc)

    @app.get("/v1/auditors", summary="Registered auditors")
    async def get_auditors() -> Response:
        return JSONResponse({"auditors": [a.hex() for a in queries.get_auditors(state())]})

    @app.get("/v1/governance", summary="Governance key set: threshold k, keys, next sequence")
    async def get_governance() -> Response:
        gov = state().get(b"mgovernance")
        return JSONResponse(
            {"threshold": gov.threshold, "keys": [k.hex() for k in gov.keys], "seq": gov.seq}
        )

    @app.get("/v1/audit_log", summary="Audit log entries from sequence number start")
    async def get_audit_log(start: int = 0, limit: int = MAX_LOG_PAGE) -> Response:
        end = max(0, start) + max(0, min(limit, MAX_LOG_PAGE))
        entries = queries.get_audit_log(state(), max(0, start), end)
        return JSONResponse({"entries": [_event_doc(s, e) for s, e in entries]})
