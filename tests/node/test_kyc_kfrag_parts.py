"""KYC_KFRAGS parts from ``dmchain kyc register/sync`` fit a node's transaction limit and
the ledger's per-set field bound, also with field names at the 64-character limit."""

from __future__ import annotations

import json

import pytest
import umbral_pre

from consensus.crypto import compute_public_key, compute_seed_from_label
from ledger.rules_kyc import MAX_KFRAG_FIELDS
from ledger.tx import MAX_KYC_FIELD_NAME, TxKind, compute_signed_tx
from node.cmd_kyc import compute_kfrag_parts
from node.config import Limits
from pre.keywrap import compute_umbral_public_key_bytes
from pre.kyc import compute_subject_signer, issue_auditor_kfrags, seal_credential

VAULT = bytes(range(32))
SUBJECT = compute_public_key(compute_seed_from_label("parts-subject"))
AUDITOR_SK = umbral_pre.SecretKey.from_be_bytes(bytes(31) + b"\x09")


@pytest.mark.parametrize(
    ("names", "proxies"),
    [
        ([f"f{i:02d}" for i in range(18)], 1),
        ([f"{i:02d}".ljust(MAX_KYC_FIELD_NAME, "x") for i in range(12)], 1),
        ([f"{i:02d}".ljust(MAX_KYC_FIELD_NAME, "x") for i in range(12)], 3),
        ([f"{i:02d}".ljust(MAX_KYC_FIELD_NAME, "x") for i in range(4)], 16),
    ],
)
def test_parts_fit_one_transaction_and_the_field_bound(names: list[str], proxies: int) -> None:
    keys = [compute_public_key(compute_seed_from_label(f"parts-proxy-{i}")) for i in range(proxies)]
    sealed = seal_credential(VAULT, SUBJECT, json.dumps(dict.fromkeys(names, "v")).encode())
    kfrags = issue_auditor_kfrags(VAULT, sealed, AUDITOR_SK.public_key(), 1, keys)
    items = [[name, [k.sealed for k in ks]] for name, ks in sorted(kfrags.items())]
    head = [
        SUBJECT,
        b"\x02" * 32,
        1,
        compute_umbral_public_key_bytes(compute_subject_signer(VAULT).verifying_key()),
        compute_umbral_public_key_bytes(AUDITOR_SK.public_key()),
        keys,
    ]
    parts = compute_kfrag_parts(items, proxies)
    assert [item for part in parts for item in part] == items
    seed = compute_seed_from_label("parts-member")
    for part in parts:
        assert 1 <= len(part) <= MAX_KFRAG_FIELDS
        raw = compute_signed_tx(seed, "dmchain-test", TxKind.KYC_KFRAGS, 10**6, [*head, part])
        assert len(raw) <= Limits().max_tx_bytes, (len(raw), len(part))
