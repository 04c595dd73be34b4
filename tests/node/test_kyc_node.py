"""KYC_Audit node pieces without a network: the up-front refusals of POST /v1/kyc_audit,
the audit document, and the proxy's release facts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_helpers import CHAIN, GOV, USERS, Chain, make_genesis

from ledger.rules import compute_governance_message
from ledger.tx import TxKind, compute_signed_tx
from node.kyc_api import get_audit_doc, get_kyc_audit_refusal, get_kyc_doc
from node.kyc_tools import compute_account_umbral_key
from node.proxy_audit import compute_audit_facts, is_final_refusal
from pre.kyc import get_audit_release_error, seal_credential

AUDITOR = USERS[4]
SUBJECT = USERS[5]


def _chain() -> Chain:
    chain = Chain(genesis=make_genesis({"audit_timelock": 3, "audit_expiry": 9}))
    sealed = seal_credential(bytes(32), SUBJECT.pub, json.dumps({"name": "A", "id": "1"}).encode())
    assert chain.run1(GOV[0], TxKind.KYC_REGISTER, [SUBJECT.pub, bytes(32), sealed.to_bytes()]).ok
    seq = chain.state.get(b"mgovernance").seq
    msg = compute_governance_message(CHAIN, "register_auditor", [AUDITOR.pub], seq)
    sigs = [[k.pub, k.sign(msg)] for k in GOV[:2]]
    gov = ["register_auditor", [AUDITOR.pub], seq, sigs]
    assert chain.run1(USERS[3], TxKind.GOVERNANCE, gov).ok
    return chain


def _request(seed: bytes, subject: bytes, fields: list[str], kind: TxKind = TxKind.AUDIT_REQUEST,
             chain_id: str = CHAIN) -> bytes:
    payload: list[Any] = [subject, bytes(32), fields, "order"]
    if kind != TxKind.AUDIT_REQUEST:
        payload = [subject]
    return compute_signed_tx(seed, chain_id, kind, 0, payload)


@pytest.mark.parametrize(
    ("who", "subject", "fields", "kind", "chain_id", "expected"),
    [
        ("outsider", "subject", ["name"], TxKind.AUDIT_REQUEST, CHAIN, (403, "not_auditor")),
        ("auditor", "nobody", ["name"], TxKind.AUDIT_REQUEST, CHAIN, (409, "unknown_subject")),
        ("auditor", "subject", ["salary"], TxKind.AUDIT_REQUEST, CHAIN, (400, "unknown_fields")),
        ("auditor", "subject", [], TxKind.AUDIT_REQUEST, CHAIN, (400, "no_fields")),
        ("auditor", "subject", ["name", "name"], TxKind.AUDIT_REQUEST, CHAIN,
         (400, "repeated_fields")),
        ("auditor", "subject", ["name"], TxKind.AUDIT_APPROVE, CHAIN, (400, "wrong_kind")),
        ("auditor", "subject", ["name"], TxKind.AUDIT_REQUEST, "other", (400, "wrong_chain")),
        ("auditor", "subject", ["name", "id"], TxKind.AUDIT_REQUEST, CHAIN, None),
    ],
)
def test_kyc_audit_refusals(
    who: str, subject: str, fields: list[str], kind: TxKind, chain_id: str, expected: Any
) -> None:
    chain = _chain()
    seed = (AUDITOR if who == "auditor" else USERS[1]).seed
    target = SUBJECT.pub if subject == "subject" else bytes(32)
    refusal = get_kyc_audit_refusal(chain.state, _request(seed, target, fields, kind, chain_id),
                                    CHAIN)
    assert (refusal[:2] if refusal else None) == expected
    if refusal:
        assert refusal[2]  # a reason for the log and the client


def test_bad_signature_and_garbage_are_refused() -> None:
    chain = _chain()
    raw = bytearray(_request(AUDITOR.seed, SUBJECT.pub, ["name"]))
    raw[-1] ^= 1
    assert get_kyc_audit_refusal(chain.state, bytes(raw), CHAIN)[:2] == (  # type: ignore[index]
        400, "bad_signature"
    )
    assert get_kyc_audit_refusal(chain.state, b"\x00" * 100, CHAIN)[:2] == (  # type: ignore[index]
        400, "malformed"
    )


def test_audit_doc_and_proxy_facts_follow_the_due_process() -> None:
    chain = _chain()
    r = chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, [SUBJECT.pub, bytes(32), ["name"], "order"])
    rid = r.result
    doc = get_audit_doc(chain.state, rid, None)
    assert doc is not None and doc["timelock_end"] == r.height + 3 and doc["expiry"] == r.height + 9
    facts = compute_audit_facts(doc, subject_notified=True)
    assert get_audit_release_error(facts) == "audit request has 0 governance approvals, needs 2"
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    doc = get_audit_doc(chain.state, rid, None)
    assert doc is not None and not doc["releasable"] and "time lock" in doc["release_reason"]
    assert "time lock" in str(get_audit_release_error(compute_audit_facts(doc, True)))
    chain.run([])
    doc = get_audit_doc(chain.state, rid, ["name"])
    assert doc is not None and doc["releasable"], doc["release_reason"]
    assert get_audit_release_error(compute_audit_facts(doc, True)) is None
    assert not is_final_refusal(doc)
    not_approved = get_audit_doc(chain.state, rid, ["id"])
    assert not_approved is not None and "'id' was not approved" in not_approved["release_reason"]
    while chain.state.height < doc["expiry"]:
        chain.run([])
    doc = get_audit_doc(chain.state, rid, None)
    assert doc is not None and "expired" in doc["release_reason"]
    # the proxy's rule agrees with the chain on the last releasable height
    assert "expired" in str(get_audit_release_error(compute_audit_facts(doc, True)))
    assert is_final_refusal(doc)
    kyc = get_kyc_doc(chain.state, SUBJECT.pub)
    assert kyc is not None and kyc["fields"] == ["id", "name"] and kyc["kfrag_auditors"] == []


def test_account_umbral_key_is_derived_deterministically() -> None:
    a = compute_account_umbral_key(bytes(32)).public_key()
    b = compute_account_umbral_key(bytes(32)).public_key()
    c = compute_account_umbral_key(bytes(31) + b"\x01").public_key()
    assert bytes(a.to_compressed_bytes()) == bytes(b.to_compressed_bytes())
    assert bytes(a.to_compressed_bytes()) != bytes(c.to_compressed_bytes())
