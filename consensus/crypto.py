"""Hashing and Ed25519 signatures shared by every layer.

Keys are 32-byte seeds (private) and 32-byte public keys. Signing is
deterministic (RFC 8032), so it is allowed in the pure core; generating a
fresh key needs randomness and lives at the edge (:func:`node.keys`).
Verification keys are cached so the hot path builds each one once.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import nacl.exceptions
import nacl.signing

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
DIGEST_SIZE = 32


def compute_hash(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data`` (32 bytes)."""
    return hashlib.sha256(data).digest()


def compute_hash_parts(*parts: bytes) -> bytes:
    """Return SHA-256 over length-prefixed ``parts`` (unambiguous concatenation)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


@lru_cache(maxsize=4096)
def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


@lru_cache(maxsize=65536)
def _verify_key(public_key: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(public_key)


def compute_public_key(seed: bytes) -> bytes:
    """Return the Ed25519 public key for a 32-byte private seed."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"private key seed must be {SEED_SIZE} bytes, got {len(seed)}")
    return bytes(_signing_key(seed).verify_key)


def compute_signature(seed: bytes, message: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature of ``message`` under ``seed``."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"private key seed must be {SEED_SIZE} bytes, got {len(seed)}")
    return _signing_key(seed).sign(message).signature


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return True iff ``signature`` is a valid Ed25519 signature of ``message``.

    Never raises: malformed keys or signatures simply give False.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _verify_key(bytes(public_key)).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def compute_seed_from_label(label: str) -> bytes:
    """Return a deterministic 32-byte seed derived from ``label``.

    For simulations and tests only: real node keys come from the OS random source.
    """
    return compute_hash(b"dmchain-test-key:" + label.encode())
