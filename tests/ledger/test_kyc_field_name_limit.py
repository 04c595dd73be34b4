"""One KYC field-name limit: a 64-character field is registered, kfragged, requested and
audited on chain; 65 characters are refused by every transaction that names a field."""

from __future__ import annotations

import json
from typing import Any

import umbral_pre
from ledger_helpers import GOV, USERS, VALIDATORS, Chain, make_genesis

from ledger.errors import ReceiptCode
from ledger.rules import compute_governance_message
from ledger.tx import MAX_KYC_FIELD_NAME, TxKind, compute_signed_tx, get_tx_error
from pre.keywrap import compute_umbral_public_key_bytes
from pre.kyc import (
    SealedCredential,
    compute_subject_signer,
    issue_auditor_kfrags,
    open_audited_fields,
    process_field_reencryption,
    seal_credential,
)

AUDITOR = USERS[4]
SUBJECT = USERS[5]
MEMBER = GOV[0]
VAULT = bytes(range(32))
LONG = "f" * 60 + ".v_1"  # 64 characters, the limit
TOO_LONG = LONG + "x"
AUDITOR_SK = umbral_pre.SecretKey.from_be_bytes(bytes(31) + b"\x07")
PROXIES = [v.pub for v in VALIDATORS]


def _setup() -> tuple[Chain, SealedCredential, list[Any]]:
    chain = Chain(genesis=make_genesis({"audit_timelock": 1, "audit_expiry": 30}))
    credential = {LONG: "value of the long field", "name": "Alice"}
    sealed = seal_credential(VAULT, SUBJECT.pub, json.dumps(credential).encode())
    r = chain.run1(MEMBER, TxKind.KYC_REGISTER, [SUBJECT.pub, b"\x09" * 32, sealed.to_bytes()])
    assert r.ok, r.reason
    seq = chain.state.get(b"mgovernance").seq
    msg = compute_governance_message(chain.state.chain_id, "register_auditor", [AUDITOR.pub], seq)
    sigs = [[k.pub, k.sign(msg)] for k in GOV[:2]]
    r = chain.run1(USERS[3], TxKind.GOVERNANCE, ["register_auditor", [AUDITOR.pub], seq, sigs])
    assert r.ok, r.reason
    auditor_pk = compute_umbral_public_key_bytes(AUDITOR_SK.public_key())
    assert chain.run1(AUDITOR, TxKind.REGISTER_PRE_KEY, [auditor_pk, b""]).ok
    kfrags = issue_auditor_kfrags(VAULT, sealed, AUDITOR_SK.public_key(), 2, PROXIES)
    payload = [
        SUBJECT.pub,
        AUDITOR.pub,
        2,
        compute_umbral_public_key_bytes(compute_subject_signer(VAULT).verifying_key()),
        auditor_pk,
        list(PROXIES),
        [[name, [k.sealed for k in ks]] for name, ks in sorted(kfrags.items())],
    ]
    return chain, sealed, payload


def test_limit_is_64() -> None:
    assert MAX_KYC_FIELD_NAME == 64 == len(LONG)


def test_64_character_field_round_trips_through_kfrags_request_and_cfrags() -> None:
    chain, sealed, payload = _setup()
    chain_id = chain.state.chain_id
    raw = compute_signed_tx(MEMBER.seed, chain_id, TxKind.KYC_KFRAGS, 0, payload)
    assert get_tx_error(raw, chain_id) is None
    r = chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload)
    assert r.ok, r.reason
    request = [SUBJECT.pub, b"\x07" * 32, [LONG], "order 42"]
    raw = compute_signed_tx(AUDITOR.seed, chain_id, TxKind.AUDIT_REQUEST, 0, request)
    assert get_tx_error(raw, chain_id) is None
    r = chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, request)
    assert r.ok, r.reason
    rid = r.result
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    chain.run([])
    verifying = compute_subject_signer(VAULT).verifying_key()
    by_field: dict[str, list[bytes]] = {LONG: []}
    for index, proxy in enumerate(VALIDATORS[:2]):
        sealed_kfrag = dict(payload[6])[LONG][index]
        signed = process_field_reencryption(
            proxy.seed, sealed_kfrag, sealed, LONG, verifying, AUDITOR_SK.public_key(), rid
        )
        raw = compute_signed_tx(proxy.seed, chain_id, TxKind.AUDIT_CFRAG, 0, [rid, LONG, signed])
        assert get_tx_error(raw, chain_id) is None
        r = chain.run1(proxy, TxKind.AUDIT_CFRAG, [rid, LONG, signed])
        assert r.ok, r.reason
        by_field[LONG].append(signed)
    opened = open_audited_fields(AUDITOR_SK, sealed, by_field, 2, verifying, rid, PROXIES)
    assert opened == {LONG: "value of the long field"}


def test_65_character_field_is_refused_by_every_kyc_transaction_shape() -> None:
    chain, _sealed, payload = _setup()
    chain_id = chain.state.chain_id
    request = [SUBJECT.pub, b"\x07" * 32, [TOO_LONG], "order 42"]
    raw = compute_signed_tx(AUDITOR.seed, chain_id, TxKind.AUDIT_REQUEST, 0, request)
    assert "1..64 characters" in str(get_tx_error(raw, chain_id))
    cfrag = [b"\x01" * 32, TOO_LONG, b"cfrag"]
    raw = compute_signed_tx(VALIDATORS[0].seed, chain_id, TxKind.AUDIT_CFRAG, 0, cfrag)
    assert "at most 64 characters" in str(get_tx_error(raw, chain_id))
    # KYC_KFRAGS field entries are checked by the rule, with the same bound
    fields = [[TOO_LONG, payload[6][0][1]]]
    r = chain.run1(MEMBER, TxKind.KYC_KFRAGS, [*payload[:6], fields])
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert "1..64 characters, got 65" in r.reason
