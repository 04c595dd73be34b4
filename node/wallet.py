"""A wallet: one account's secrets and its data-access bookkeeping in a directory.

Layout (directory 0700, secret files 0600, one line of hex each)::

    DIR/account.key     Ed25519 account seed (signs transactions)
    DIR/umbral.key      Umbral secret key: delegating key of a provider,
                        receiving key of a consumer
    DIR/signing.key     Umbral secret key of the signer that signs kfrags
    DIR/assets/<id>.json    a published asset: wrapped key (under umbral.key),
                            metadata hash, blob names (no symmetric key)
    DIR/requests/<id>.json  an access request this account made
    DIR/agent-state.json    the provider agent's cursor (idempotent restarts)

The symmetric key of an asset is never written anywhere: the provider keeps
it only wrapped under its own Umbral key.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import umbral_pre

from consensus.crypto import SEED_SIZE, compute_public_key
from node.keys import write_secret_file

ACCOUNT_FILE = "account.key"
UMBRAL_FILE = "umbral.key"
SIGNING_FILE = "signing.key"
ASSETS_DIR = "assets"
REQUESTS_DIR = "requests"
AGENT_STATE_FILE = "agent-state.json"
FILE_MODE = 0o600
DIR_MODE = 0o700
_MAX_SECRET_FILE = 256
_MAX_JSON_FILE = 4 * 1024 * 1024


class WalletError(ValueError):
    """A wallet directory that is missing, unsafe or corrupt; the message says which file."""


def _write_secret(path: Path, secret: bytes) -> None:
    write_secret_file(path, (secret.hex() + "\n").encode("ascii"))


def _read_secret(path: Path, size: int) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise WalletError(f"{path}: missing (create a wallet with 'dmchain wallet new')") from None
    if info.st_mode & 0o077:
        raise WalletError(
            f"{path}: permissions {stat.S_IMODE(info.st_mode):04o} are too open; chmod 600 {path}"
        )
    if info.st_size > _MAX_SECRET_FILE:
        raise WalletError(f"{path}: corrupt (too large)")
    try:
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WalletError(f"{path}: corrupt (expected one line of hex)") from exc
    if len(secret) != size:
        raise WalletError(f"{path}: corrupt (expected {size} bytes, got {len(secret)})")
    return secret


def write_json_file(path: Path, value: Any) -> None:
    """Atomically write ``value`` as JSON to ``path`` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    write_secret_file(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json_file(path: Path) -> Any:
    """Return the JSON in ``path`` (None if absent); raises WalletError if corrupt."""
    try:
        if path.stat().st_size > _MAX_JSON_FILE:
            raise WalletError(f"{path}: too large")
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise WalletError(f"{path}: unreadable or not JSON: {exc}") from exc


@dataclass(frozen=True)
class Wallet:
    """An opened wallet directory."""

    path: Path
    seed: bytes
    umbral_secret: bytes
    signing_secret: bytes

    def __repr__(self) -> str:
        return f"Wallet(path={self.path}, account={self.public_key.hex()})"

    @property
    def public_key(self) -> bytes:
        """The account's 32-byte public key (its address)."""
        return compute_public_key(self.seed)

    def get_umbral_secret_key(self) -> umbral_pre.SecretKey:
        """Return the Umbral secret key (delegating for providers, receiving for consumers)."""
        return umbral_pre.SecretKey.from_be_bytes(self.umbral_secret)

    def get_signing_secret_key(self) -> umbral_pre.SecretKey:
        """Return the Umbral secret key that signs kfrags."""
        return umbral_pre.SecretKey.from_be_bytes(self.signing_secret)

    def get_umbral_public_key_bytes(self) -> bytes:
        """Return the 33-byte compressed Umbral public key."""
        return bytes(self.get_umbral_secret_key().public_key().to_compressed_bytes())

    def get_verifying_key_bytes(self) -> bytes:
        """Return the 33-byte compressed verifying key (public key of the kfrag signer)."""
        return bytes(self.get_signing_secret_key().public_key().to_compressed_bytes())

    def get_asset_path(self, asset_id: bytes) -> Path:
        """Return the path of a published asset's record."""
        return self.path / ASSETS_DIR / f"{asset_id.hex()}.json"

    def get_request_path(self, request_id: bytes) -> Path:
        """Return the path of an access request's record."""
        return self.path / REQUESTS_DIR / f"{request_id.hex()}.json"

    def get_asset_record(self, asset_id: bytes) -> dict[str, Any] | None:
        """Return the wallet's record of a published asset, or None."""
        value = read_json_file(self.get_asset_path(asset_id))
        return value if isinstance(value, dict) else None

    def find_request_for_asset(self, asset_id: bytes) -> bytes | None:
        """Return the newest request id this wallet made for ``asset_id``, or None."""
        best: tuple[int, bytes] | None = None
        directory = self.path / REQUESTS_DIR
        if not directory.is_dir():
            return None
        for entry in directory.glob("*.json"):
            record = read_json_file(entry)
            if not isinstance(record, dict) or record.get("asset_id") != asset_id.hex():
                continue
            key = (int(record.get("height", 0)), bytes.fromhex(entry.stem))
            if best is None or key > best:
                best = key
        return None if best is None else best[1]


def process_create_wallet(path: Path, seed: bytes | None = None) -> Wallet:
    """Create a wallet at ``path`` with fresh Umbral keys (and ``seed`` or a fresh one).

    Refuses to overwrite an existing wallet. Edge: draws randomness.
    """
    if (path / ACCOUNT_FILE).exists():
        raise WalletError(f"{path} already holds a wallet")
    if seed is not None and len(seed) != SEED_SIZE:
        raise WalletError(f"an account seed is {SEED_SIZE} bytes ({2 * SEED_SIZE} hex characters)")
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    account = seed if seed is not None else os.urandom(SEED_SIZE)
    umbral_secret = bytes(umbral_pre.SecretKey.random().to_be_bytes())
    signing_secret = bytes(umbral_pre.SecretKey.random().to_be_bytes())
    _write_secret(path / UMBRAL_FILE, umbral_secret)
    _write_secret(path / SIGNING_FILE, signing_secret)
    _write_secret(path / ACCOUNT_FILE, account)
    return Wallet(path, account, umbral_secret, signing_secret)


def load_wallet(path: Path) -> Wallet:
    """Open the wallet at ``path``; raises WalletError naming the bad file."""
    if not path.is_dir():
        raise WalletError(f"wallet {path} does not exist (create it with 'dmchain wallet new')")
    seed = _read_secret(path / ACCOUNT_FILE, SEED_SIZE)
    umbral_secret = _read_secret(path / UMBRAL_FILE, 32)
    signing_secret = _read_secret(path / SIGNING_FILE, 32)
    for name, secret in ((UMBRAL_FILE, umbral_secret), (SIGNING_FILE, signing_secret)):
        try:
            umbral_pre.SecretKey.from_be_bytes(secret)
        except ValueError as exc:
            raise WalletError(f"{path / name}: not a valid Umbral secret key") from exc
    return Wallet(path, seed, umbral_secret, signing_secret)
