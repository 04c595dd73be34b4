"""KYC credential vault: per-field encryption, auditor kfrags, and the audit release rule.

A subject's identity credential is a JSON object of named fields. Each field
is encrypted with its own fresh 32-byte key (AES-256-GCM); that key is
wrapped with Umbral under a *per-field* Umbral key derived from the subject's
vault seed (``SecretKeyFactory``, label = field name). A kfrag therefore
re-encrypts exactly one field of one subject, so proxies can release the
approved fields of an audit and nothing else.

For each registered auditor the subject issues, per field, m-of-n kfrags
sealed to the proxies (:func:`issue_auditor_kfrags`). A proxy re-encrypts a
field only when :func:`get_audit_release_error` returns None for the
on-chain facts of the audit request (auditor registered, request logged and
subject notified, k governance approvals, time lock over without objection,
not expired, requested fields within the approved ones).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import umbral_pre
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consensus.codec import CodecError, decode, encode
from ledger.tx import MAX_KYC_FIELD_NAME
from pre.aead import KEY_SIZE
from pre.keywrap import (
    KeyWrapError,
    SealedKFrag,
    WrappedKey,
    compute_umbral_public_key_bytes,
    issue_kfrags,
    open_reencrypted_key,
    process_reencryption,
    unwrap_key,
    wrap_key,
)
from pre.randomness import generate_asset_key

MAX_CREDENTIAL_SIZE = 256 * 1024
MAX_FIELDS = 64
MAX_SEALED_CREDENTIAL_SIZE = 1024 * 1024
VAULT_SEED_SIZE = 32
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_FIELD_KEY_LABEL = b"dmchain/kyc/field-key/v1:"
_SIGNER_LABEL = b"dmchain/kyc/signer/v1"
_FIELD_AD = b"dmchain/kyc/field/v1"
_ZERO_NONCE = bytes(12)


class KycError(ValueError):
    """Raised for a malformed credential, a sealed credential that does not open, or bad input."""


@dataclass(frozen=True)
class SealedField:
    """One encrypted credential field."""

    name: str
    delegating_pk: bytes
    wrapped_key: WrappedKey
    ciphertext: bytes


@dataclass(frozen=True)
class SealedCredential:
    """A subject's credential, every field encrypted separately."""

    subject_id: bytes
    fields: tuple[SealedField, ...]

    def get_field(self, name: str) -> SealedField:
        """Return the sealed field ``name``; raises KycError if absent."""
        for sealed in self.fields:
            if sealed.name == name:
                return sealed
        raise KycError(f"credential has no field {name!r}")

    def to_bytes(self) -> bytes:
        """Return the canonical encoding."""
        return encode(
            {
                "subject": self.subject_id,
                "fields": [
                    [f.name, f.delegating_pk, f.wrapped_key.to_bytes(), f.ciphertext]
                    for f in self.fields
                ],
            }
        )

    @staticmethod
    def from_bytes(data: bytes) -> SealedCredential:
        """Decode; raises KycError on malformed input."""
        try:
            raw = decode(data, max_size=MAX_SEALED_CREDENTIAL_SIZE)
        except CodecError as exc:
            raise KycError(f"sealed credential does not decode: {exc}") from exc
        if not isinstance(raw, dict) or set(raw) != {"subject", "fields"}:
            raise KycError("sealed credential must hold 'subject' and 'fields'")
        if not isinstance(raw["subject"], bytes) or not isinstance(raw["fields"], list):
            raise KycError("sealed credential has wrongly typed members")
        if len(raw["fields"]) > MAX_FIELDS:
            raise KycError(f"more than {MAX_FIELDS} fields")
        fields: list[SealedField] = []
        for item in raw["fields"]:
            if (
                not isinstance(item, list)
                or len(item) != 4
                or not isinstance(item[0], str)
                or not all(isinstance(x, bytes) for x in item[1:])
            ):
                raise KycError(
                    "sealed field must be [name, delegating_pk, wrapped_key, ciphertext]"
                )
            name_error = get_field_name_error(item[0])
            if name_error is not None:
                raise KycError(name_error)
            try:
                wrapped = WrappedKey.from_bytes(item[2])
            except KeyWrapError as exc:
                raise KycError(str(exc)) from exc
            fields.append(SealedField(item[0], item[1], wrapped, item[3]))
        return SealedCredential(raw["subject"], tuple(fields))


@dataclass(frozen=True)
class AuditFacts:
    """On-chain state of one audit request, read by the node and passed in."""

    auditor_registered: bool
    request_logged: bool
    subject_notified: bool
    approvals: int
    approval_threshold: int
    objection_raised: bool
    current_height: int
    time_lock_end_height: int
    expiry_height: int
    requested_fields: frozenset[str]
    approved_fields: frozenset[str]


def get_audit_release_error(facts: AuditFacts) -> str | None:
    """Return None iff the proxies may release the requested fields to the auditor.

    Each refusal has its own reason; the checks run in the order of the
    due process: registration, log and notification, approvals, objection,
    time lock, expiry, field scope.
    """
    if not facts.auditor_registered:
        return "auditor is not registered"
    if not facts.request_logged:
        return "audit request has no on-chain log entry"
    if not facts.subject_notified:
        return "subject has not been notified of the audit request"
    if facts.approval_threshold < 1:
        return "approval threshold must be at least 1"
    if facts.approvals < facts.approval_threshold:
        return (
            f"audit request has {facts.approvals} governance approvals, "
            f"needs {facts.approval_threshold}"
        )
    if facts.objection_raised:
        return "an objection was raised during the time lock"
    if facts.current_height < facts.time_lock_end_height:
        return f"time lock runs until height {facts.time_lock_end_height}"
    if facts.current_height > facts.expiry_height:
        return f"audit request expired at height {facts.expiry_height}"
    if not facts.requested_fields:
        return "audit request names no fields"
    missing = facts.requested_fields - facts.approved_fields
    if missing:
        return f"fields not approved for release: {', '.join(sorted(missing))}"
    return None


def _factory(vault_seed: bytes) -> umbral_pre.SecretKeyFactory:
    if len(vault_seed) != VAULT_SEED_SIZE:
        raise KycError(f"vault seed must be {VAULT_SEED_SIZE} bytes")
    return umbral_pre.SecretKeyFactory.from_secure_randomness(bytes(vault_seed))


def compute_field_secret_key(vault_seed: bytes, name: str) -> umbral_pre.SecretKey:
    """Return the subject's Umbral secret key for field ``name`` (deterministic)."""
    return _factory(vault_seed).make_key(_FIELD_KEY_LABEL + name.encode())


def compute_subject_signer(vault_seed: bytes) -> umbral_pre.Signer:
    """Return the signer whose verifying key signs the subject's kfrags (deterministic)."""
    return umbral_pre.Signer(_factory(vault_seed).make_key(_SIGNER_LABEL))


def get_field_name_error(name: Any) -> str | None:
    """Return None iff ``name`` is a valid credential field name, else why not.

    A valid name is 1..MAX_KYC_FIELD_NAME characters of ``[A-Za-z0-9_.-]``, the
    same bound the ledger applies to field names in KYC_KFRAGS, AUDIT_REQUEST
    and AUDIT_CFRAG, so every field that can be registered can be audited.
    """
    if not isinstance(name, str) or not name:
        return "a credential field name must be a non-empty string"
    if len(name) > MAX_KYC_FIELD_NAME:
        return (
            f"credential field name {name[:MAX_KYC_FIELD_NAME]!r}... is {len(name)} characters; "
            f"field names are at most {MAX_KYC_FIELD_NAME}"
        )
    if not _FIELD_NAME.fullmatch(name):
        return f"credential field name {name!r} may only use the characters [A-Za-z0-9_.-]"
    return None


def is_field_name(name: Any) -> bool:
    """Return True iff ``name`` is a valid credential field name (see get_field_name_error)."""
    return get_field_name_error(name) is None


def get_credential_fields(credential_json: bytes) -> dict[str, Any]:
    """Parse a credential: a JSON object of at most MAX_FIELDS named fields.

    Raises KycError if it is too large, not a JSON object, or has a bad name.
    """
    if len(credential_json) > MAX_CREDENTIAL_SIZE:
        raise KycError(f"credential larger than {MAX_CREDENTIAL_SIZE} bytes")
    try:
        value = json.loads(credential_json)
    except (ValueError, RecursionError) as exc:
        raise KycError(f"credential is not valid JSON: {exc}") from exc
    if not isinstance(value, dict) or not value:
        raise KycError("credential must be a non-empty JSON object")
    if len(value) > MAX_FIELDS:
        raise KycError(f"credential has more than {MAX_FIELDS} fields")
    for name in value:
        error = get_field_name_error(name)
        if error is not None:
            raise KycError(error)
    return value


def _field_ad(subject_id: bytes, name: str) -> bytes:
    return _FIELD_AD + len(subject_id).to_bytes(2, "big") + subject_id + name.encode()


def seal_credential(
    vault_seed: bytes,
    subject_id: bytes,
    credential_json: bytes,
    new_key: Callable[[], bytes] = generate_asset_key,
) -> SealedCredential:
    """Encrypt every field of a credential with a fresh key wrapped under its field key.

    ``new_key`` supplies the fresh 32-byte symmetric keys (OS randomness by
    default). Raises KycError on a malformed credential.
    """
    if not 1 <= len(subject_id) <= 64:
        raise KycError("subject id must be 1..64 bytes")
    fields: list[SealedField] = []
    for name, value in sorted(get_credential_fields(credential_json).items()):
        key = new_key()
        if len(key) != KEY_SIZE:
            raise KycError(f"field key must be {KEY_SIZE} bytes")
        plain = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ciphertext = AESGCM(key).encrypt(_ZERO_NONCE, plain, _field_ad(subject_id, name))
        public_key = compute_field_secret_key(vault_seed, name).public_key()
        fields.append(
            SealedField(
                name=name,
                delegating_pk=compute_umbral_public_key_bytes(public_key),
                wrapped_key=wrap_key(public_key, key),
                ciphertext=ciphertext,
            )
        )
    return SealedCredential(bytes(subject_id), tuple(fields))


def _open_field(subject_id: bytes, sealed: SealedField, key: bytes) -> Any:
    try:
        plain = AESGCM(key).decrypt(
            _ZERO_NONCE, sealed.ciphertext, _field_ad(subject_id, sealed.name)
        )
    except (InvalidTag, ValueError) as exc:
        raise KycError(f"field {sealed.name!r} does not decrypt") from exc
    try:
        return json.loads(plain)
    except (ValueError, RecursionError) as exc:
        raise KycError(f"field {sealed.name!r} does not hold JSON") from exc


def open_own_credential(vault_seed: bytes, sealed: SealedCredential) -> dict[str, Any]:
    """Return every field of the subject's own credential; raises KycError on failure."""
    result: dict[str, Any] = {}
    for field_ in sealed.fields:
        try:
            key = unwrap_key(compute_field_secret_key(vault_seed, field_.name), field_.wrapped_key)
        except KeyWrapError as exc:
            raise KycError(f"field {field_.name!r}: {exc}") from exc
        result[field_.name] = _open_field(sealed.subject_id, field_, key)
    return result


def issue_auditor_kfrags(
    vault_seed: bytes,
    sealed: SealedCredential,
    auditor_pk: umbral_pre.PublicKey,
    threshold: int,
    proxy_public_keys: Sequence[bytes],
) -> dict[str, list[SealedKFrag]]:
    """Return, per field, m-of-n kfrags for ``auditor_pk`` sealed to the proxies.

    Raises KeyWrapError unless 1 <= m <= n and the proxies are distinct.
    """
    signer = compute_subject_signer(vault_seed)
    return {
        field_.name: issue_kfrags(
            compute_field_secret_key(vault_seed, field_.name),
            signer,
            auditor_pk,
            threshold,
            proxy_public_keys,
        )
        for field_ in sealed.fields
    }


def compute_audit_context(request_id: bytes, name: str) -> bytes:
    """Return the context a proxy signs into a cfrag released for one audited field."""
    return b"kyc-audit:" + len(request_id).to_bytes(2, "big") + request_id + name.encode()


def get_field_delegating_pk(sealed: SealedCredential, name: str) -> umbral_pre.PublicKey:
    """Return the Umbral public key that field ``name`` is wrapped under."""
    raw = sealed.get_field(name).delegating_pk
    try:
        return umbral_pre.PublicKey.from_compressed_bytes(raw)
    except ValueError as exc:
        raise KycError(f"field {name!r} has a malformed public key") from exc


def process_field_reencryption(
    proxy_seed: bytes,
    sealed_kfrag: bytes,
    sealed: SealedCredential,
    name: str,
    subject_verifying_pk: umbral_pre.PublicKey,
    auditor_pk: umbral_pre.PublicKey,
    request_id: bytes,
) -> bytes:
    """Proxy step for one approved field: return its signed cfrag for the auditor.

    Call only after :func:`get_audit_release_error` returned None and ``name``
    is among the requested fields. Raises KeyWrapError if the kfrag does not
    open or verify.
    """
    return process_reencryption(
        proxy_seed,
        sealed_kfrag,
        sealed.get_field(name).wrapped_key.capsule,
        subject_verifying_pk,
        get_field_delegating_pk(sealed, name),
        auditor_pk,
        compute_audit_context(request_id, name),
    )


def open_audited_fields(
    auditor_sk: umbral_pre.SecretKey,
    sealed: SealedCredential,
    signed_cfrags_by_field: Mapping[str, Sequence[bytes]],
    threshold: int,
    subject_verifying_pk: umbral_pre.PublicKey,
    request_id: bytes,
    allowed_proxies: Collection[bytes],
) -> dict[str, Any]:
    """Auditor step: decrypt each field for which proxies released enough valid cfrags.

    Raises KycError (wrapping the key-unwrap reason) for the first field that
    cannot be opened, e.g. fewer than ``threshold`` valid cfrags.
    """
    result: dict[str, Any] = {}
    for name in sorted(signed_cfrags_by_field)[:MAX_FIELDS]:
        field_ = sealed.get_field(name)
        try:
            key = open_reencrypted_key(
                auditor_sk,
                field_.wrapped_key,
                signed_cfrags_by_field[name],
                threshold,
                subject_verifying_pk,
                get_field_delegating_pk(sealed, name),
                compute_audit_context(request_id, name),
                allowed_proxies,
            )
        except KeyWrapError as exc:
            raise KycError(f"field {name!r}: {exc}") from exc
        result[name] = _open_field(sealed.subject_id, field_, key)
    return result


_COMMITMENT_LABEL = b"dmchain/kyc/commitment/v1"


def compute_credential_commitment(vault_seed: bytes, credential_json: bytes) -> bytes:
    """Return the 32-byte salted commitment to a credential (salt derived from the vault seed).

    Binds the on-chain record to the plaintext without revealing it: without
    the vault seed the commitment cannot be tested against guessed credentials.
    """
    from consensus.crypto import compute_hash_parts

    salt = compute_hash_parts(_COMMITMENT_LABEL, b"salt", bytes(vault_seed))
    return compute_hash_parts(_COMMITMENT_LABEL, salt, bytes(credential_json))
