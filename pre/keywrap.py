"""Threshold proxy re-encryption of an asset's symmetric key (Umbral, ``umbral-pre``).

Roles and keys:

* the **provider** (delegator) holds an Umbral secret key; the asset key is
  wrapped under its public key (capsule + 72-byte ciphertext) and a signing
  key (``umbral_pre.Signer``, the *verifying key*) signs the key fragments;
* the **consumer** (receiver) holds an Umbral key pair; kfrags are bound to
  its public key;
* each **proxy** is a validator identified by its Ed25519 node key. A kfrag
  is sealed to its proxy with a NaCl ``SealedBox`` to the X25519 key derived
  from that Ed25519 key (libsodium's ``crypto_sign_ed25519_pk_to_curve25519``),
  so only that proxy can read it and no extra key has to be registered.

A proxy publishes its capsule fragment as a *signed cfrag*: the cfrag plus
the capsule, the three Umbral public keys and a context (e.g. the grant id),
signed with the proxy's Ed25519 node key. Umbral does not sign cfrags, so
this signature is what makes a wrong cfrag attributable: a signed cfrag that
fails ``CapsuleFrag.verify`` is itself the evidence, checkable by anyone with
:func:`get_bad_cfrag_evidence_error`.

Umbral operations that encrypt or generate kfrags draw randomness inside
``umbral-pre`` and sealing draws an ephemeral key inside PyNaCl: those are
edge functions. All verification functions are deterministic.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.public
import umbral_pre
from umbral_pre import VerificationError  # type: ignore[attr-defined]  # missing from the stub

from consensus.codec import CodecError, decode, encode
from consensus.crypto import (
    PUBLIC_KEY_SIZE,
    SEED_SIZE,
    SIGNATURE_SIZE,
    compute_hash_parts,
    compute_public_key,
    compute_signature,
    is_valid_signature,
)

MAX_PROXIES = 64
MAX_CONTEXT_SIZE = 256
MAX_SIGNED_CFRAG_SIZE = 4096
MAX_WRAPPED_KEY_SIZE = 1024
UMBRAL_PUBLIC_KEY_SIZE = 33
_CFRAG_TAG = b"dmchain/pre/signed-cfrag/v1"
_SIGNED_CFRAG_KEYS = frozenset(
    {"proxy", "context", "capsule", "cfrag", "verifying_pk", "delegating_pk", "receiving_pk", "sig"}
)


class KeyWrapError(ValueError):
    """Raised for a bad argument, a kfrag that does not open or verify, or a failed unwrap."""


class InsufficientFragmentsError(KeyWrapError):
    """Fewer valid distinct capsule fragments than the threshold; carries any evidence found."""

    def __init__(self, message: str, evidence: Sequence[bytes]) -> None:
        super().__init__(message)
        self.evidence = tuple(evidence)


@dataclass(frozen=True)
class WrappedKey:
    """The symmetric key encrypted under the provider's Umbral public key."""

    capsule: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """Return the canonical encoding."""
        return encode({"capsule": self.capsule, "ciphertext": self.ciphertext})

    @staticmethod
    def from_bytes(data: bytes) -> WrappedKey:
        """Decode; raises KeyWrapError on malformed input."""
        try:
            fields = decode(data, max_size=MAX_WRAPPED_KEY_SIZE)
        except CodecError as exc:
            raise KeyWrapError(f"wrapped key does not decode: {exc}") from exc
        if (
            not isinstance(fields, dict)
            or set(fields) != {"capsule", "ciphertext"}
            or not all(isinstance(v, bytes) for v in fields.values())
        ):
            raise KeyWrapError("wrapped key must hold bytes 'capsule' and 'ciphertext'")
        return WrappedKey(fields["capsule"], fields["ciphertext"])


@dataclass(frozen=True)
class SealedKFrag:
    """One kfrag sealed to one proxy's node key."""

    proxy_public_key: bytes
    sealed: bytes


@dataclass(frozen=True)
class CFragCheck:
    """The consumer's sorting of published signed cfrags."""

    valid: list[umbral_pre.VerifiedCapsuleFrag] = field(default_factory=list)
    valid_proxies: list[bytes] = field(default_factory=list)
    evidence: list[bytes] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def _public_key(raw: bytes, what: str) -> umbral_pre.PublicKey:
    try:
        return umbral_pre.PublicKey.from_compressed_bytes(bytes(raw))
    except (ValueError, TypeError) as exc:
        raise KeyWrapError(f"{what} is not an Umbral public key") from exc


def _capsule(raw: bytes) -> umbral_pre.Capsule:
    try:
        return umbral_pre.Capsule.from_bytes(bytes(raw))
    except (ValueError, TypeError) as exc:
        raise KeyWrapError("capsule does not parse") from exc


def compute_umbral_public_key_bytes(public_key: umbral_pre.PublicKey) -> bytes:
    """Return the 33-byte compressed encoding of an Umbral public key."""
    return bytes(public_key.to_compressed_bytes())


def wrap_key(delegating_pk: umbral_pre.PublicKey, key: bytes) -> WrappedKey:
    """Encrypt ``key`` under the provider's Umbral public key (edge: randomized)."""
    if not 1 <= len(key) <= 64:
        raise KeyWrapError("key to wrap must be 1..64 bytes")
    capsule, ciphertext = umbral_pre.encrypt(delegating_pk, bytes(key))
    return WrappedKey(bytes(capsule), bytes(ciphertext))


def unwrap_key(delegating_sk: umbral_pre.SecretKey, wrapped: WrappedKey) -> bytes:
    """Return the key the owner wrapped; raises KeyWrapError if it does not decrypt."""
    try:
        return bytes(
            umbral_pre.decrypt_original(
                delegating_sk, _capsule(wrapped.capsule), wrapped.ciphertext
            )
        )
    except ValueError as exc:
        raise KeyWrapError(f"wrapped key does not decrypt: {exc}") from exc


def _x25519_public(proxy_public_key: bytes) -> nacl.public.PublicKey:
    if len(proxy_public_key) != PUBLIC_KEY_SIZE:
        raise KeyWrapError(f"proxy key must be a {PUBLIC_KEY_SIZE}-byte Ed25519 public key")
    try:
        raw = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(bytes(proxy_public_key))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise KeyWrapError("proxy key is not a valid Ed25519 public key") from exc
    return nacl.public.PublicKey(raw)


def _x25519_private(proxy_seed: bytes) -> nacl.public.PrivateKey:
    ed_secret = bytes(proxy_seed) + compute_public_key(proxy_seed)
    return nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(ed_secret))


def is_valid_threshold(threshold: int, shares: int) -> bool:
    """Return True iff 1 <= threshold <= shares <= MAX_PROXIES."""
    return (
        type(threshold) is int and type(shares) is int and 1 <= threshold <= shares <= MAX_PROXIES
    )


def issue_kfrags(
    delegating_sk: umbral_pre.SecretKey,
    signer: umbral_pre.Signer,
    receiving_pk: umbral_pre.PublicKey,
    threshold: int,
    proxy_public_keys: Sequence[bytes],
) -> list[SealedKFrag]:
    """Create ``len(proxy_public_keys)`` kfrags with threshold m and seal one to each proxy.

    Raises KeyWrapError unless 1 <= m <= n <= MAX_PROXIES and the proxies are
    distinct valid Ed25519 keys. Edge: randomized.
    """
    shares = len(proxy_public_keys)
    if not is_valid_threshold(threshold, shares):
        raise KeyWrapError(
            f"threshold must satisfy 1 <= m <= n <= {MAX_PROXIES}; got m={threshold}, n={shares}"
        )
    if len({bytes(p) for p in proxy_public_keys}) != shares:
        raise KeyWrapError("proxy keys must be distinct")
    boxes = [nacl.public.SealedBox(_x25519_public(p)) for p in proxy_public_keys]
    kfrags = umbral_pre.generate_kfrags(
        delegating_sk, receiving_pk, signer, threshold, shares, True, True
    )
    return [
        SealedKFrag(bytes(proxy), bytes(box.encrypt(bytes(kfrag))))
        for proxy, box, kfrag in zip(proxy_public_keys, boxes, kfrags, strict=True)
    ]


def open_kfrag(
    proxy_seed: bytes,
    sealed: bytes,
    verifying_pk: umbral_pre.PublicKey,
    delegating_pk: umbral_pre.PublicKey,
    receiving_pk: umbral_pre.PublicKey,
) -> umbral_pre.VerifiedKeyFrag:
    """Open a kfrag sealed to this proxy and verify it against the three keys.

    Raises KeyWrapError if it was sealed to another proxy, is malformed, or was
    not signed by ``verifying_pk`` for this delegator and receiver.
    """
    if len(proxy_seed) != SEED_SIZE:
        raise KeyWrapError(f"proxy seed must be {SEED_SIZE} bytes")
    box = nacl.public.SealedBox(_x25519_private(proxy_seed))
    try:
        raw = box.decrypt(bytes(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise KeyWrapError("kfrag is not sealed to this proxy") from exc
    try:
        kfrag = umbral_pre.KeyFrag.from_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise KeyWrapError("kfrag does not parse") from exc
    try:
        return kfrag.verify(verifying_pk, delegating_pk, receiving_pk)
    except VerificationError as exc:
        raise KeyWrapError(f"kfrag does not verify: {exc}") from exc


def compute_cfrag_message(
    context: bytes,
    capsule: bytes,
    cfrag: bytes,
    verifying_pk: bytes,
    delegating_pk: bytes,
    receiving_pk: bytes,
) -> bytes:
    """Return the 32-byte digest a proxy signs when it publishes a cfrag."""
    return compute_hash_parts(
        _CFRAG_TAG, context, capsule, cfrag, verifying_pk, delegating_pk, receiving_pk
    )


def compute_signed_cfrag(
    proxy_seed: bytes,
    context: bytes,
    capsule: bytes,
    cfrag: bytes,
    verifying_pk: bytes,
    delegating_pk: bytes,
    receiving_pk: bytes,
) -> bytes:
    """Return the encoded signed cfrag a proxy publishes (deterministic signature)."""
    if len(context) > MAX_CONTEXT_SIZE:
        raise KeyWrapError(f"context longer than {MAX_CONTEXT_SIZE} bytes")
    message = compute_cfrag_message(
        context, capsule, cfrag, verifying_pk, delegating_pk, receiving_pk
    )
    return encode(
        {
            "proxy": compute_public_key(proxy_seed),
            "context": bytes(context),
            "capsule": bytes(capsule),
            "cfrag": bytes(cfrag),
            "verifying_pk": bytes(verifying_pk),
            "delegating_pk": bytes(delegating_pk),
            "receiving_pk": bytes(receiving_pk),
            "sig": compute_signature(proxy_seed, message),
        }
    )


def process_reencryption(
    proxy_seed: bytes,
    sealed_kfrag: bytes,
    capsule: bytes,
    verifying_pk: umbral_pre.PublicKey,
    delegating_pk: umbral_pre.PublicKey,
    receiving_pk: umbral_pre.PublicKey,
    context: bytes,
) -> bytes:
    """Proxy step: open and verify its kfrag, re-encrypt ``capsule``, return a signed cfrag.

    Raises KeyWrapError if the kfrag does not open or verify or the capsule
    does not parse. Call only after the proxy policy said "re-encrypt".
    """
    kfrag = open_kfrag(proxy_seed, sealed_kfrag, verifying_pk, delegating_pk, receiving_pk)
    cfrag = umbral_pre.reencrypt(_capsule(capsule), kfrag)
    return compute_signed_cfrag(
        proxy_seed,
        context,
        capsule,
        bytes(cfrag),
        compute_umbral_public_key_bytes(verifying_pk),
        compute_umbral_public_key_bytes(delegating_pk),
        compute_umbral_public_key_bytes(receiving_pk),
    )


def get_signed_cfrag(data: bytes) -> dict[str, Any]:
    """Decode a signed cfrag and check its shape and signature.

    Raises KeyWrapError with the reason if it is malformed or the proxy's
    signature does not verify.
    """
    if not isinstance(data, bytes):
        raise KeyWrapError("signed cfrag must be bytes")
    try:
        fields = decode(data, max_size=MAX_SIGNED_CFRAG_SIZE)
    except CodecError as exc:
        raise KeyWrapError(f"signed cfrag does not decode: {exc}") from exc
    if not isinstance(fields, dict) or set(fields) != _SIGNED_CFRAG_KEYS:
        raise KeyWrapError("signed cfrag must hold exactly the signed cfrag fields")
    if not all(isinstance(v, bytes) for v in fields.values()):
        raise KeyWrapError("every signed cfrag field must be bytes")
    if len(fields["proxy"]) != PUBLIC_KEY_SIZE or len(fields["sig"]) != SIGNATURE_SIZE:
        raise KeyWrapError("proxy key or signature has the wrong size")
    if len(fields["context"]) > MAX_CONTEXT_SIZE:
        raise KeyWrapError(f"context longer than {MAX_CONTEXT_SIZE} bytes")
    message = compute_cfrag_message(
        fields["context"],
        fields["capsule"],
        fields["cfrag"],
        fields["verifying_pk"],
        fields["delegating_pk"],
        fields["receiving_pk"],
    )
    if not is_valid_signature(fields["proxy"], message, fields["sig"]):
        raise KeyWrapError("proxy signature over the cfrag does not verify")
    return fields


def _verify_cfrag(fields: dict[str, Any]) -> umbral_pre.VerifiedCapsuleFrag | str:
    """Return the verified cfrag, or the reason it is wrong (the proxy's fault)."""
    capsule = _capsule(fields["capsule"])
    verifying_pk = _public_key(fields["verifying_pk"], "verifying key")
    delegating_pk = _public_key(fields["delegating_pk"], "delegating key")
    receiving_pk = _public_key(fields["receiving_pk"], "receiving key")
    try:
        cfrag = umbral_pre.CapsuleFrag.from_bytes(fields["cfrag"])
    except (ValueError, TypeError):
        return "cfrag does not parse"
    try:
        return cfrag.verify(capsule, verifying_pk, delegating_pk, receiving_pk)
    except VerificationError as exc:
        return f"cfrag fails verification: {exc}"


def get_cfrag_verification_error(fields: dict[str, Any]) -> str | None:
    """Return None iff the decoded signed cfrag passes ``CapsuleFrag.verify``, else why not.

    ``fields`` is the output of :func:`get_signed_cfrag`. A returned reason
    other than a key or capsule parse error is the proxy's fault. Deterministic;
    never raises.
    """
    try:
        outcome = _verify_cfrag(fields)
    except KeyWrapError as exc:
        return str(exc)
    return outcome if isinstance(outcome, str) else None


def get_bad_cfrag_evidence_error(evidence: bytes) -> str | None:
    """Return None iff ``evidence`` proves its signing proxy published a wrong cfrag.

    ``evidence`` is the signed cfrag as published. It is valid when the
    proxy's Ed25519 signature holds, the capsule and keys parse, and the cfrag
    does not parse or fails ``CapsuleFrag.verify`` against exactly the
    capsule and keys the proxy signed. The caller still checks that the
    signed capsule, keys and context are those of an on-chain grant and that
    the proxy is a custodian of it. Deterministic; never raises.
    """
    try:
        fields = get_signed_cfrag(evidence)
        outcome = _verify_cfrag(fields)
    except KeyWrapError as exc:
        return str(exc)
    if isinstance(outcome, str):
        return None
    return "capsule fragment verifies: the proxy re-encrypted correctly"


def get_cfrag_check(
    signed_cfrags: Sequence[bytes],
    capsule: bytes,
    verifying_pk: umbral_pre.PublicKey,
    delegating_pk: umbral_pre.PublicKey,
    receiving_pk: umbral_pre.PublicKey,
    context: bytes,
    allowed_proxies: Collection[bytes],
) -> CFragCheck:
    """Sort published signed cfrags into valid ones, evidence, and rejected ones.

    A cfrag counts as valid only once per proxy, when its signature holds,
    it names exactly this capsule, keys and context, its proxy is allowed,
    and it passes ``CapsuleFrag.verify``. A correctly signed cfrag for this
    grant that fails verification is returned as evidence.
    """
    check = CFragCheck()
    expected = {
        "capsule": bytes(capsule),
        "verifying_pk": compute_umbral_public_key_bytes(verifying_pk),
        "delegating_pk": compute_umbral_public_key_bytes(delegating_pk),
        "receiving_pk": compute_umbral_public_key_bytes(receiving_pk),
        "context": bytes(context),
    }
    allowed = {bytes(p) for p in allowed_proxies}
    seen_cfrags: set[bytes] = set()
    for position, data in enumerate(signed_cfrags[: MAX_PROXIES * 2]):
        try:
            fields = get_signed_cfrag(data)
        except KeyWrapError as exc:
            check.rejected.append(f"cfrag {position}: {exc}")
            continue
        if any(fields[name] != value for name, value in expected.items()):
            check.rejected.append(f"cfrag {position}: made for another capsule, key or context")
            continue
        if fields["proxy"] not in allowed:
            check.rejected.append(f"cfrag {position}: proxy is not a custodian")
            continue
        if fields["proxy"] in check.valid_proxies or fields["cfrag"] in seen_cfrags:
            check.rejected.append(f"cfrag {position}: duplicate proxy or fragment")
            continue
        outcome = _verify_cfrag(fields)
        if isinstance(outcome, str):
            check.evidence.append(bytes(data))
            check.rejected.append(f"cfrag {position}: {outcome}")
            continue
        seen_cfrags.add(fields["cfrag"])
        check.valid.append(outcome)
        check.valid_proxies.append(fields["proxy"])
    return check


def open_reencrypted_key(
    receiving_sk: umbral_pre.SecretKey,
    wrapped: WrappedKey,
    signed_cfrags: Sequence[bytes],
    threshold: int,
    verifying_pk: umbral_pre.PublicKey,
    delegating_pk: umbral_pre.PublicKey,
    context: bytes,
    allowed_proxies: Collection[bytes],
) -> bytes:
    """Consumer step: verify the published cfrags and decrypt the symmetric key.

    Raises InsufficientFragmentsError (with any bad-cfrag evidence) when fewer
    than ``threshold`` valid distinct cfrags are present, and KeyWrapError if
    the threshold is out of range or decryption fails.
    """
    if type(threshold) is not int or not 1 <= threshold <= MAX_PROXIES:
        raise KeyWrapError(f"threshold must be in 1..{MAX_PROXIES}, got {threshold!r}")
    check = get_cfrag_check(
        signed_cfrags,
        wrapped.capsule,
        verifying_pk,
        delegating_pk,
        receiving_sk.public_key(),
        context,
        allowed_proxies,
    )
    if len(check.valid) < threshold:
        raise InsufficientFragmentsError(
            f"only {len(check.valid)} valid distinct capsule fragments, need {threshold}",
            check.evidence,
        )
    try:
        key = umbral_pre.decrypt_reencrypted(
            receiving_sk,
            delegating_pk,
            _capsule(wrapped.capsule),
            check.valid[:threshold],
            wrapped.ciphertext,
        )
    except ValueError as exc:
        raise KeyWrapError(f"re-encrypted key does not decrypt: {exc}") from exc
    if key is None:
        raise KeyWrapError("re-encrypted key does not decrypt")
    return bytes(key)
