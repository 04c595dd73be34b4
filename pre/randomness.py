"""Edge: the only place in ``pre/`` that draws fresh randomness.

Everything else takes keys and nonces as arguments, so it can be tested with
fixed values. (Umbral encryption and kfrag generation draw their own
randomness inside ``umbral-pre``; sealing a kfrag to a proxy draws an
ephemeral key inside PyNaCl.)
"""

from __future__ import annotations

import secrets

from pre.aead import ASSET_NONCE_SIZE, KEY_SIZE


def generate_asset_key() -> bytes:
    """Return a fresh 32-byte symmetric key from the OS random source."""
    return secrets.token_bytes(KEY_SIZE)


def generate_asset_nonce() -> bytes:
    """Return a fresh 8-byte asset nonce from the OS random source."""
    return secrets.token_bytes(ASSET_NONCE_SIZE)


def generate_seed(size: int = 32) -> bytes:
    """Return ``size`` fresh random bytes (e.g. an Umbral SecretKeyFactory seed)."""
    return secrets.token_bytes(size)
