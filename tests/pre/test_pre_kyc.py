"""KYC vault: per-field sealing, per-field release to an auditor, and the due-process rule."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import umbral_pre

from consensus.crypto import compute_public_key, compute_seed_from_label
from pre.keywrap import KeyWrapError
from pre.kyc import (
    AuditFacts,
    KycError,
    SealedCredential,
    compute_subject_signer,
    get_audit_release_error,
    issue_auditor_kfrags,
    open_audited_fields,
    open_own_credential,
    process_field_reencryption,
    seal_credential,
)

VAULT_SEED = compute_seed_from_label("subject-vault")
CREDENTIAL = {"name": "Ada Lovelace", "passport": "X1234567", "dob": "1815-12-10", "score": 7}
PROXY_SEEDS = [compute_seed_from_label(f"kyc-proxy-{i}") for i in range(4)]
PROXIES = [compute_public_key(s) for s in PROXY_SEEDS]
REQUEST_ID = b"audit-42"


@pytest.fixture(scope="module")
def vault() -> dict[str, Any]:
    sealed = seal_credential(VAULT_SEED, b"subject-1", json.dumps(CREDENTIAL).encode())
    auditor_sk = umbral_pre.SecretKey.random()
    kfrags = issue_auditor_kfrags(VAULT_SEED, sealed, auditor_sk.public_key(), 2, PROXIES)
    return {"sealed": sealed, "auditor_sk": auditor_sk, "kfrags": kfrags}


def _release(vault: dict[str, Any], field: str, proxies: list[int]) -> list[bytes]:
    verifying_pk = compute_subject_signer(VAULT_SEED).verifying_key()
    return [
        process_field_reencryption(
            PROXY_SEEDS[i],
            vault["kfrags"][field][i].sealed,
            vault["sealed"],
            field,
            verifying_pk,
            vault["auditor_sk"].public_key(),
            REQUEST_ID,
        )
        for i in proxies
    ]


def _open(vault: dict[str, Any], released: dict[str, list[bytes]]) -> dict[str, Any]:
    return open_audited_fields(
        vault["auditor_sk"],
        vault["sealed"],
        released,
        2,
        compute_subject_signer(VAULT_SEED).verifying_key(),
        REQUEST_ID,
        PROXIES,
    )


def test_subject_opens_own_credential_and_encoding_round_trips(vault: dict[str, Any]) -> None:
    sealed = vault["sealed"]
    assert open_own_credential(VAULT_SEED, sealed) == CREDENTIAL
    again = SealedCredential.from_bytes(sealed.to_bytes())
    assert again == sealed
    assert b"Lovelace" not in sealed.to_bytes()


def test_per_field_release(vault: dict[str, Any]) -> None:
    released = {
        "passport": _release(vault, "passport", [0, 3]),
        "dob": _release(vault, "dob", [1, 2]),
    }
    assert _open(vault, released) == {"passport": "X1234567", "dob": "1815-12-10"}


def test_cfrags_of_one_field_do_not_open_another(vault: dict[str, Any]) -> None:
    with pytest.raises(KycError, match="field 'name'"):
        _open(vault, {"name": _release(vault, "passport", [0, 1])})


def test_one_proxy_is_not_enough(vault: dict[str, Any]) -> None:
    with pytest.raises(KycError, match="only 1 valid distinct capsule fragments, need 2"):
        _open(vault, {"name": _release(vault, "name", [0])})


def test_kfrag_threshold_checked(vault: dict[str, Any]) -> None:
    with pytest.raises(KeyWrapError, match="1 <= m <= n"):
        issue_auditor_kfrags(
            VAULT_SEED, vault["sealed"], vault["auditor_sk"].public_key(), 5, PROXIES
        )


def test_malformed_credentials_refused() -> None:
    with pytest.raises(KycError, match="not valid JSON"):
        seal_credential(VAULT_SEED, b"s", b"{nope")
    with pytest.raises(KycError, match="non-empty JSON object"):
        seal_credential(VAULT_SEED, b"s", b"[1, 2]")
    with pytest.raises(KycError, match="field name"):
        seal_credential(VAULT_SEED, b"s", b'{"../etc": 1}')
    with pytest.raises(KycError, match="more than 64 fields"):
        seal_credential(VAULT_SEED, b"s", json.dumps({f"f{i}": i for i in range(65)}).encode())


APPROVED = AuditFacts(
    auditor_registered=True,
    request_logged=True,
    subject_notified=True,
    approvals=3,
    approval_threshold=3,
    objection_raised=False,
    current_height=200,
    time_lock_end_height=200,
    expiry_height=300,
    requested_fields=frozenset({"passport"}),
    approved_fields=frozenset({"passport", "dob"}),
)


def test_release_allowed_when_due_process_complete() -> None:
    assert get_audit_release_error(APPROVED) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"auditor_registered": False}, "auditor is not registered"),
        ({"request_logged": False}, "no on-chain log entry"),
        ({"subject_notified": False}, "subject has not been notified"),
        ({"approvals": 2}, "has 2 governance approvals, needs 3"),
        ({"approval_threshold": 0, "approvals": 0}, "threshold must be at least 1"),
        ({"objection_raised": True}, "objection was raised"),
        ({"current_height": 199}, "time lock runs until height 200"),
        ({"current_height": 301}, "expired at height 300"),
        ({"requested_fields": frozenset()}, "names no fields"),
        ({"requested_fields": frozenset({"passport", "name"})}, "not approved for release: name"),
    ],
)
def test_each_refusal_has_its_reason(change: dict[str, Any], reason: str) -> None:
    error = get_audit_release_error(dataclasses.replace(APPROVED, **change))
    assert error is not None and reason in error
