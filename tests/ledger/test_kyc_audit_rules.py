"""KYC audit rules: auditor kfrag sets (25) and audited cfrags (26), each refusal."""

from __future__ import annotations

import json
from typing import Any

import umbral_pre
from ledger_helpers import GOV, USERS, VALIDATORS, Chain, Key, make_genesis

from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.rules import compute_governance_message
from ledger.tx import MAX_TX_SIZE, TxKind, compute_signed_tx
from pre.keywrap import compute_signed_cfrag, compute_umbral_public_key_bytes
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
CREDENTIAL = {
    "name": "Alice Example",
    "date_of_birth": "1990-01-02",
    "id_number": "X1234567",
    "address": "1 Main Street, Springfield",
    "nationality": "UT",
    "email": "alice@example.com",
}
AUDITOR_SK = umbral_pre.SecretKey.from_be_bytes(bytes(31) + b"\x05")
PROXIES = [v.pub for v in VALIDATORS]


def _gov(chain: Chain, action: str, args: list[Any]) -> Any:
    seq = chain.state.get(b"mgovernance").seq
    msg = compute_governance_message(chain.state.chain_id, action, args, seq)
    sigs = [[k.pub, k.sign(msg)] for k in GOV[:2]]
    return chain.run1(USERS[3], TxKind.GOVERNANCE, [action, args, seq, sigs])


def _sealed() -> SealedCredential:
    return seal_credential(VAULT, SUBJECT.pub, json.dumps(CREDENTIAL).encode())


def _kfrag_payload(sealed: SealedCredential, threshold: int = 2) -> list[Any]:
    kfrags = issue_auditor_kfrags(VAULT, sealed, AUDITOR_SK.public_key(), threshold, PROXIES)
    return [
        SUBJECT.pub,
        AUDITOR.pub,
        threshold,
        compute_umbral_public_key_bytes(compute_subject_signer(VAULT).verifying_key()),
        compute_umbral_public_key_bytes(AUDITOR_SK.public_key()),
        list(PROXIES),
        [[name, [k.sealed for k in ks]] for name, ks in sorted(kfrags.items())],
    ]


def _setup(timelock: int = 2, expiry: int = 8) -> tuple[Chain, SealedCredential]:
    chain = Chain(genesis=make_genesis({"audit_timelock": timelock, "audit_expiry": expiry}))
    sealed = _sealed()
    blob = sealed.to_bytes()
    assert len(blob) <= 4096
    assert chain.run1(MEMBER, TxKind.KYC_REGISTER, [SUBJECT.pub, b"\x09" * 32, blob]).ok
    assert _gov(chain, "register_auditor", [AUDITOR.pub]).ok
    auditor_pk = compute_umbral_public_key_bytes(AUDITOR_SK.public_key())
    assert chain.run1(AUDITOR, TxKind.REGISTER_PRE_KEY, [auditor_pk, b""]).ok
    return chain, sealed


def _cfrag(
    sealed: SealedCredential, proxy: Key, rid: bytes, name: str, payload: list[Any]
) -> bytes:
    index = PROXIES.index(proxy.pub)
    sealed_kfrag = dict(payload[6])[name][index]
    return process_field_reencryption(
        proxy.seed,
        sealed_kfrag,
        sealed,
        name,
        compute_subject_signer(VAULT).verifying_key(),
        AUDITOR_SK.public_key(),
        rid,
    )


def _open_request(chain: Chain, fields: list[str]) -> tuple[bytes, int]:
    r = chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, [SUBJECT.pub, b"\x07" * 32, fields, "order 42"])
    assert r.ok, r.reason
    return r.result, r.height


def test_kfrag_set_fits_one_transaction_and_is_recorded() -> None:
    chain, sealed = _setup()
    payload = _kfrag_payload(sealed)
    raw = compute_signed_tx(MEMBER.seed, chain.state.chain_id, TxKind.KYC_KFRAGS, 0, payload)
    assert len(raw) < MAX_TX_SIZE // 4  # 6 fields x 2 proxies
    r = chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload)
    assert r.ok, r.reason
    record = q.get_kfrag_set(chain.state, SUBJECT.pub, AUDITOR.pub)
    assert record is not None and record.threshold == 2 and record.proxies == PROXIES
    assert [f[0] for f in record.fields] == sorted(CREDENTIAL)
    assert q.get_kfrag_auditors(chain.state, SUBJECT.pub) == [AUDITOR.pub]
    kinds = [e.kind for _, e in q.get_audit_log_by_subject(chain.state, SUBJECT.pub)]
    assert kinds == ["kyc_register", "kyc_kfrags"]


def test_kfrag_set_posted_in_parts_merges_and_new_parameters_replace() -> None:
    chain, sealed = _setup()
    full = _kfrag_payload(sealed)
    first, second = full[6][:3], full[6][3:]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, [*full[:6], first]).ok
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, [*full[:6], second]).ok
    record = q.get_kfrag_set(chain.state, SUBJECT.pub, AUDITOR.pub)
    assert record is not None and record.fields == full[6]
    # a part with another threshold replaces the set
    other = _kfrag_payload(sealed, threshold=1)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, [*other[:6], other[6][:1]]).ok
    record = q.get_kfrag_set(chain.state, SUBJECT.pub, AUDITOR.pub)
    assert record is not None and record.threshold == 1 and record.fields == other[6][:1]


def test_kfrag_set_refusals() -> None:
    chain, sealed = _setup()
    good = _kfrag_payload(sealed)
    # sender is neither the registering member nor the subject
    assert chain.run1(GOV[1], TxKind.KYC_KFRAGS, good).code == ReceiptCode.UNAUTHORIZED
    # the subject itself may
    assert chain.run1(SUBJECT, TxKind.KYC_KFRAGS, good).ok
    # not an auditor
    outsider = [good[0], USERS[1].pub, *good[2:]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, outsider).code == ReceiptCode.UNAUTHORIZED
    # unknown subject
    unknown = [USERS[2].pub, *good[1:]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, unknown).code == ReceiptCode.NOT_FOUND
    # bad thresholds: m = 0 and m > n
    for m in (0, 3):
        bad = [*good[:2], m, *good[3:]]
        assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, bad).code == ReceiptCode.BAD_PARAMETER
    # duplicate proxies, a proxy that is not a validator
    dup = [*good[:5], [PROXIES[0], PROXIES[0]], good[6]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, dup).code == ReceiptCode.BAD_PARAMETER
    stranger = [*good[:5], [PROXIES[0], USERS[1].pub], good[6]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, stranger).code == ReceiptCode.BAD_PARAMETER
    # unknown field, wrong kfrag count, malformed Umbral key
    unknown_field = [*good[:6], [["salary", good[6][0][1]]]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, unknown_field).code == ReceiptCode.BAD_PARAMETER
    short = [*good[:6], [[good[6][0][0], good[6][0][1][:1]]]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, short).code == ReceiptCode.BAD_PARAMETER
    badkey = [*good[:3], b"\x05" * 33, *good[4:]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, badkey).code == ReceiptCode.BAD_PARAMETER
    # kfrags made for a key other than the auditor's registered PRE key
    other_pk = compute_umbral_public_key_bytes(umbral_pre.SecretKey.random().public_key())
    wrong_receiver = [*good[:4], other_pk, *good[5:]]
    r = chain.run1(MEMBER, TxKind.KYC_KFRAGS, wrong_receiver)
    assert r.code == ReceiptCode.BAD_PARAMETER and "registered PRE key" in r.reason
    # an auditor that registered no PRE key yet
    assert _gov(chain, "register_auditor", [USERS[2].pub]).ok
    no_key = [good[0], USERS[2].pub, *good[2:]]
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, no_key).code == ReceiptCode.INVALID_STATE


def test_full_audit_path_releases_exactly_the_approved_fields() -> None:
    chain, sealed = _setup(timelock=2, expiry=30)
    payload = _kfrag_payload(sealed)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).ok
    rid, h0 = _open_request(chain, ["name", "id_number"])
    cfrag = _cfrag(sealed, VALIDATORS[0], rid, "name", payload)
    # no approvals yet
    r = chain.run1(USERS[3], TxKind.AUDIT_CFRAG, [rid, "name", cfrag])
    assert r.code == ReceiptCode.UNAUTHORIZED and "approvals" in r.reason
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    assert chain.state.height >= h0 + 2  # the time lock is over
    posted: dict[str, list[bytes]] = {"name": [], "id_number": []}
    for proxy in VALIDATORS:
        for name, signed_list in posted.items():
            signed = _cfrag(sealed, proxy, rid, name, payload)
            r = chain.run1(proxy, TxKind.AUDIT_CFRAG, [rid, name, signed])
            assert r.ok, r.reason
            assert r.result == proxy.pub
            signed_list.append(signed)
    # a field that was not approved
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "address", cfrag])
    assert r.code == ReceiptCode.UNAUTHORIZED and "not approved" in r.reason
    # one cfrag per proxy and field
    again = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "name", posted["name"][0]])
    assert again.code == ReceiptCode.INVALID_STATE
    stored = q.get_audit_cfrags(chain.state, rid)
    assert len(stored) == 4 and all(c.valid for c in stored)
    by_field: dict[str, list[bytes]] = {}
    for c in stored:
        by_field.setdefault(c.field, []).append(c.signed_cfrag)
    opened = open_audited_fields(
        AUDITOR_SK,
        SealedCredential.from_bytes(q.get_kyc(chain.state, SUBJECT.pub).capsule),  # type: ignore[union-attr]
        by_field,
        2,
        compute_subject_signer(VAULT).verifying_key(),
        rid,
        PROXIES,
    )
    assert opened == {"name": CREDENTIAL["name"], "id_number": CREDENTIAL["id_number"]}
    kinds = [e.kind for _, e in q.get_audit_log_by_subject(chain.state, SUBJECT.pub)]
    assert kinds.count("audit_cfrag") == 4 and kinds[-1] == "audit_cfrag"


def test_cfrag_refused_inside_time_lock_after_expiry_and_when_objected() -> None:
    chain, sealed = _setup(timelock=4, expiry=7)
    payload = _kfrag_payload(sealed)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).ok
    rid, h0 = _open_request(chain, ["name"])
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    assert chain.state.height < h0 + 4
    signed = _cfrag(sealed, VALIDATORS[0], rid, "name", payload)
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "name", signed])
    assert r.code == ReceiptCode.UNAUTHORIZED and "time lock" in r.reason
    while chain.state.height + 1 < h0 + 7:
        chain.run([])
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "name", signed])
    assert r.code == ReceiptCode.UNAUTHORIZED and "expired" in r.reason
    # an objected request never releases
    rid2, _ = _open_request(chain, ["name"])
    assert chain.run1(GOV[2], TxKind.AUDIT_OBJECT, [rid2, "no due cause"]).ok
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid2]).ok
    for _ in range(4):
        chain.run([])
    signed2 = _cfrag(sealed, VALIDATORS[0], rid2, "name", payload)
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid2, "name", signed2])
    assert r.code == ReceiptCode.UNAUTHORIZED and "objected" in r.reason
    assert q.get_audit_cfrags(chain.state, rid) == []


def test_cfrag_for_another_request_or_by_a_non_proxy_is_refused() -> None:
    chain, sealed = _setup(timelock=1, expiry=50)
    payload = _kfrag_payload(sealed)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).ok
    rid, _ = _open_request(chain, ["name"])
    other, _ = _open_request(chain, ["name"])
    for r_id in (rid, other):
        for g in GOV[:2]:
            assert chain.run1(g, TxKind.AUDIT_APPROVE, [r_id]).ok
    wrong_context = _cfrag(sealed, VALIDATORS[0], other, "name", payload)
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "name", wrong_context])
    assert r.code == ReceiptCode.BAD_PROOF
    # signed by a key that is not a proxy of the set
    good = _cfrag(sealed, VALIDATORS[0], rid, "name", payload)
    from pre.keywrap import get_signed_cfrag

    f = get_signed_cfrag(good)
    forged = compute_signed_cfrag(
        USERS[1].seed, f["context"], f["capsule"], f["cfrag"],
        f["verifying_pk"], f["delegating_pk"], f["receiving_pk"],
    )
    r = chain.run1(USERS[1], TxKind.AUDIT_CFRAG, [rid, "name", forged])
    assert r.code == ReceiptCode.BAD_PROOF and "custodian" in r.reason
    r = chain.run1(USERS[1], TxKind.AUDIT_CFRAG, [rid, "name", b"garbage"])
    assert r.code == ReceiptCode.BAD_PROOF
    unknown = chain.run1(USERS[1], TxKind.AUDIT_CFRAG, [b"\x01" * 32, "name", good])
    assert unknown.code == ReceiptCode.NOT_FOUND


def test_correctly_signed_wrong_cfrag_slashes_the_proxy() -> None:
    chain, sealed = _setup(timelock=1, expiry=50)
    payload = _kfrag_payload(sealed)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).ok
    rid, _ = _open_request(chain, ["name", "email"])
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    proxy = VALIDATORS[1]
    from pre.keywrap import get_signed_cfrag

    name_cf = get_signed_cfrag(_cfrag(sealed, proxy, rid, "name", payload))
    email_cf = get_signed_cfrag(_cfrag(sealed, proxy, rid, "email", payload))
    # the proxy signs the "email" cfrag bytes as if they re-encrypted the "name" capsule
    bad = compute_signed_cfrag(
        proxy.seed, name_cf["context"], name_cf["capsule"], email_cf["cfrag"],
        name_cf["verifying_pk"], name_cf["delegating_pk"], name_cf["receiving_pk"],
    )
    stake = q.get_stake(chain.state, proxy.pub)
    burned = q.get_supply(chain.state).burned
    r = chain.run1(USERS[3], TxKind.AUDIT_CFRAG, [rid, "name", bad])
    assert r.ok, r.reason
    val = q.get_validator(chain.state, proxy.pub)
    slash = stake * chain.state.get_params().slash_double_sign_ppm // 1_000_000
    assert val is not None and val.jailed and not val.tombstoned
    assert val.stake == stake - slash and slash == 50 * TOKEN
    assert q.get_supply(chain.state).burned == burned + slash
    stored = q.get_audit_cfrags(chain.state, rid)
    assert [(c.proxy, c.valid) for c in stored] == [(proxy.pub, False)]
    kinds = [e.kind for _, e in q.get_audit_log_by_subject(chain.state, SUBJECT.pub)]
    assert kinds[-1] == "audit_cfrag_slash"
    # the same evidence cannot slash twice
    again = chain.run1(USERS[3], TxKind.AUDIT_CFRAG, [rid, "name", bad])
    assert again.code == ReceiptCode.INVALID_STATE


def test_cfrag_refused_once_the_auditor_is_removed() -> None:
    chain, sealed = _setup(timelock=1, expiry=50)
    payload = _kfrag_payload(sealed)
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).ok
    rid, _ = _open_request(chain, ["name"])
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [rid]).ok
    assert _gov(chain, "remove_auditor", [AUDITOR.pub]).ok
    signed = _cfrag(sealed, VALIDATORS[0], rid, "name", payload)
    r = chain.run1(VALIDATORS[0], TxKind.AUDIT_CFRAG, [rid, "name", signed])
    assert r.code == ReceiptCode.UNAUTHORIZED and "auditor is not registered" in r.reason
    # and no new kfrags can be issued to a removed auditor
    assert chain.run1(MEMBER, TxKind.KYC_KFRAGS, payload).code == ReceiptCode.UNAUTHORIZED
