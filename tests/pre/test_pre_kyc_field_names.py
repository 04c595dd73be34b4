"""Credential field names share the ledger's KYC field-name limit (64 characters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.codec import decode, encode
from ledger.tx import MAX_KYC_FIELD_NAME
from node.cli import main
from pre.kyc import (
    KycError,
    SealedCredential,
    get_credential_fields,
    get_field_name_error,
    is_field_name,
    seal_credential,
)

VAULT = bytes(range(32))
SUBJECT = b"\x05" * 32
AT_LIMIT = "a" * MAX_KYC_FIELD_NAME
OVER = "b" * (MAX_KYC_FIELD_NAME + 1)


def test_field_name_rule() -> None:
    assert MAX_KYC_FIELD_NAME == 64
    assert is_field_name(AT_LIMIT) and is_field_name("date_of-birth.v2")
    for bad in (OVER, "", "has space", "new\nline", "trailing\n", "é", 7, None):
        assert not is_field_name(bad), bad
    assert "is 65 characters; field names are at most 64" in str(get_field_name_error(OVER))


def test_credential_with_64_character_name_seals_and_65_is_refused() -> None:
    sealed = seal_credential(VAULT, SUBJECT, json.dumps({AT_LIMIT: 1, "name": "A"}).encode())
    assert [f.name for f in sealed.fields] == sorted([AT_LIMIT, "name"])
    assert SealedCredential.from_bytes(sealed.to_bytes()).fields == sealed.fields
    with pytest.raises(KycError, match="is 65 characters; field names are at most 64"):
        seal_credential(VAULT, SUBJECT, json.dumps({OVER: 1}).encode())
    with pytest.raises(KycError, match="is 65 characters"):
        get_credential_fields(json.dumps({"name": "A", OVER: 2}).encode())


def test_sealed_credential_with_an_over_long_name_is_refused() -> None:
    sealed = seal_credential(VAULT, SUBJECT, json.dumps({AT_LIMIT: 1}).encode())
    raw = decode(sealed.to_bytes())
    raw["fields"][0][0] = OVER
    with pytest.raises(KycError, match="at most 64"):
        SealedCredential.from_bytes(encode(raw))


def test_kyc_register_refuses_an_over_long_field_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credential = tmp_path / "credential.json"
    credential.write_text(json.dumps({"name": "Alice", OVER: "x"}))
    status = main([
        "kyc", "register", "--subject", SUBJECT.hex(), "--credential", str(credential),
        "--vault-seed", str(tmp_path / "vault.seed"), "--seed-hex", "11" * 32,
        "--node", "http://127.0.0.1:9", "--timeout", "1",
    ])
    out = capsys.readouterr().out
    assert status == 1
    assert "kyc: error: credential field name" in out
    assert "is 65 characters; field names are at most 64" in out
