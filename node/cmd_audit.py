"""``dmchain audit``: KYC_Audit under due process.

* ``register-key``: the auditor registers its Umbral key (REGISTER_PRE_KEY: the
  wallet's, or one derived from the account seed, see :mod:`node.kyc_tools`).
* ``request --subject S --order-hash H --fields a,b --reason R``: signs an
  AUDIT_REQUEST and submits it through ``POST /v1/kyc_audit`` (registering the
  auditor's Umbral key first if needed); prints the request id.
* ``approve REQ`` / ``object REQ --reason R``: a governance member's approval
  or objection (inside the time lock).
* ``status REQ``: the request, approvals, objections, heights and cfrags.
* ``decrypt REQ --out FILE [--fields a,b]``: refuses (exit 1, with the reason)
  unless the request is releasable now for those fields; otherwise logs the
  release on chain (AUDIT_RELEASE), waits for ``m`` valid cfrags per field from
  the proxies, verifies them and writes the decrypted fields as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import umbral_pre

from consensus.crypto import compute_public_key
from ledger.tx import TxKind
from node.client import ClientError
from node.keys import write_secret_file
from node.kyc_client import KycClient
from node.kyc_tools import (
    CommandError,
    add_key_arguments,
    add_node_argument,
    get_seed,
    get_signer,
    get_umbral_secret_key,
    parse_hex32,
    process_sign_submit,
    process_submit_and_wait,
    wait_for,
)
from pre.keywrap import compute_umbral_public_key_bytes
from pre.kyc import KycError, SealedCredential, open_audited_fields

ACTIONS = ["register-key", "request", "approve", "object", "status", "decrypt"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, the request id and the per-action options."""
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("request_id", nargs="?", help="audit request id (hex)")
    parser.add_argument("--subject", help="subject id (32 bytes hex)")
    parser.add_argument("--order-hash", help="hash of the legal order (32 bytes hex)")
    parser.add_argument("--fields", default="", help="comma-separated credential fields")
    parser.add_argument("--reason", default="", help="reason of the request or objection")
    parser.add_argument("--out", type=Path, help="where decrypt writes the fields (JSON)")
    add_key_arguments(parser, required=False)
    add_node_argument(parser)


def _fields(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def _request_id(args: argparse.Namespace) -> bytes:
    if not args.request_id:
        raise CommandError(f"{args.action} needs the audit request id")
    return parse_hex32(args.request_id, "request id")


def process_register_key(
    client: KycClient, seed: bytes, secret: umbral_pre.SecretKey, timeout: float
) -> dict[str, Any]:
    """Register the account's Umbral key (REGISTER_PRE_KEY) unless it is registered already."""
    public = compute_umbral_public_key_bytes(secret.public_key())
    current = client.get_pre_key(compute_public_key(seed))
    if current is not None and current["umbral_key"] == public.hex():
        return {"umbral_key": public.hex(), "registered": "already"}
    doc = process_sign_submit(client, seed, TxKind.REGISTER_PRE_KEY, [public, b""], timeout)
    return {"umbral_key": public.hex(), "registered": doc}


def process_request(client: KycClient, seed: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Submit an AUDIT_REQUEST through KYC_Audit and wait until it is confirmed."""
    if not args.subject or not args.order_hash:
        raise CommandError("request needs --subject and --order-hash")
    subject = parse_hex32(args.subject, "--subject")
    order = parse_hex32(args.order_hash, "--order-hash")
    fields = _fields(args.fields)
    payload = [subject, order, fields, args.reason]
    process_register_key(client, seed, get_umbral_secret_key(args, seed), args.timeout)
    raw = get_signer(client, seed).sign(TxKind.AUDIT_REQUEST, payload)
    doc = process_submit_and_wait(client, raw, args.timeout, via_kyc_audit=True)
    return {"request_id": doc["hash"], "status": doc["status"], "height": doc.get("height")}


def _collect_cfrags(doc: dict[str, Any], fields: list[str]) -> dict[str, list[bytes]]:
    result: dict[str, list[bytes]] = {name: [] for name in fields}
    for c in doc["cfrags"]:
        if c["valid"] and c["field"] in result:
            result[c["field"]].append(bytes.fromhex(c["signed_cfrag"]))
    return result


def process_decrypt(client: KycClient, seed: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Check releasability, log the release, gather cfrags, verify and decrypt the fields."""
    request_id = _request_id(args)
    fields = _fields(args.fields) or list(client.get_audit(request_id)["fields"])
    doc = client.get_audit(request_id, fields)  # the node logs a refusal for these fields
    if doc["auditor"] != compute_public_key(seed).hex():
        raise CommandError("only the auditor that made the request can decrypt it")
    not_approved = sorted(set(fields) - set(doc["fields"]))
    if not_approved:
        raise CommandError(f"refused: field(s) not approved: {', '.join(not_approved)}")
    if not doc["releasable"]:
        raise CommandError(f"refused: {doc['release_reason']}")
    kfrags = doc["kfrags"]
    if kfrags is None:
        raise CommandError("refused: no kfrags were issued to this auditor for the subject")
    raw = get_signer(client, seed).sign(TxKind.AUDIT_RELEASE, [request_id])
    process_submit_and_wait(client, raw, args.timeout)
    threshold = int(kfrags["threshold"])

    def enough() -> dict[str, Any] | None:
        current = client.get_audit(request_id)
        cfrags = _collect_cfrags(current, fields)
        return current if all(len(v) >= threshold for v in cfrags.values()) else None

    ready = wait_for(enough, args.timeout)
    if ready is None:
        current = client.get_audit(request_id)
        counts = {k: len(v) for k, v in _collect_cfrags(current, fields).items()}
        raise CommandError(f"not enough valid cfrags within {args.timeout:.0f} s: {counts}")
    record = client.get_kyc(bytes.fromhex(doc["subject"]))
    sealed = SealedCredential.from_bytes(bytes.fromhex(record["capsule"]))
    verifying = umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(kfrags["verifying_pk"]))
    opened = open_audited_fields(
        get_umbral_secret_key(args, seed),
        sealed,
        _collect_cfrags(ready, fields),
        threshold,
        verifying,
        request_id,
        [bytes.fromhex(p) for p in kfrags["proxies"]],
    )
    if args.out is None:
        raise CommandError("decrypt needs --out FILE")
    write_secret_file(args.out, json.dumps(opened, sort_keys=True).encode())
    return {"request_id": request_id.hex(), "fields": sorted(opened), "out": str(args.out)}


def _run(client: KycClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "status":
        return client.get_audit(_request_id(args), _fields(args.fields) or None)
    seed = get_seed(args)
    if args.action == "register-key":
        return process_register_key(client, seed, get_umbral_secret_key(args, seed), args.timeout)
    if args.action == "request":
        return process_request(client, seed, args)
    if args.action == "approve":
        return process_sign_submit(
            client, seed, TxKind.AUDIT_APPROVE, [_request_id(args)], args.timeout
        )
    if args.action == "object":
        if not args.reason:
            raise CommandError("object needs --reason")
        payload = [_request_id(args), args.reason]
        return process_sign_submit(client, seed, TxKind.AUDIT_OBJECT, payload, args.timeout)
    return process_decrypt(client, seed, args)


def run(args: argparse.Namespace) -> int:
    """Run one audit action; prints a JSON document, or ``audit: error: ...`` and exits 1."""
    client = KycClient(args.node, timeout=args.timeout + 5)
    try:
        doc = _run(client, args)
    except (CommandError, ClientError, KycError, ValueError) as exc:
        print(f"audit: error: {exc}")
        return 1
    finally:
        client.close()
    print(json.dumps(doc, indent=2))
    return 0
