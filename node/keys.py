"""A node's secret keys: generation, storage in the node home, and loading.

A node holds three secrets, each in its own file under ``<home>/keys/``:

- ``account.key``: the Ed25519 consensus/account seed (32 bytes) that signs
  votes and transactions (public key via :func:`consensus.crypto.compute_public_key`);
- ``identity.key``: the Ed25519 seed of the libp2p identity (32 bytes); the
  peer ID is derived from it, so it stays stable across restarts;
- ``umbral.key``: the Umbral (secp256k1) secret key bytes used for proxy
  re-encryption (``umbral_pre.SecretKey``).

Each file holds the secret as one line of lowercase hex. The directory is
created with mode 0700 and every file with mode 0600; loading refuses files
that other users can read or write, so a copied-in key with loose permissions
is reported instead of silently used.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import umbral_pre
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from consensus.crypto import SEED_SIZE, compute_public_key

KEYS_DIR = "keys"
ACCOUNT_FILE = "account.key"
IDENTITY_FILE = "identity.key"
UMBRAL_FILE = "umbral.key"
UMBRAL_SECRET_SIZE = 32
FILE_MODE = 0o600
DIR_MODE = 0o700
_MAX_KEY_FILE_BYTES = 1024


class KeyFileError(Exception):
    """A key file is missing, unreadable, corrupt, or has unsafe permissions."""


@dataclass(frozen=True)
class NodeKeys:
    """The three secrets of one node (raw bytes; never log these)."""

    account_seed: bytes
    identity_seed: bytes
    umbral_secret: bytes

    def __post_init__(self) -> None:
        for label, value, size in (
            ("account seed", self.account_seed, SEED_SIZE),
            ("identity seed", self.identity_seed, SEED_SIZE),
            ("umbral secret", self.umbral_secret, UMBRAL_SECRET_SIZE),
        ):
            if len(value) != size:
                raise KeyFileError(f"{label} must be {size} bytes, got {len(value)}")

    def __repr__(self) -> str:
        account = self.get_account_public_key().hex()
        return f"NodeKeys(peer_id={self.get_peer_id()}, account={account})"

    def get_account_public_key(self) -> bytes:
        """Return the 32-byte Ed25519 public key of the account/consensus key."""
        return compute_public_key(self.account_seed)

    def get_identity_key_pair(self) -> KeyPair:
        """Return the libp2p Ed25519 key pair of the node identity."""
        return compute_identity_key_pair(self.identity_seed)

    def get_peer_id(self) -> str:
        """Return the libp2p peer ID (base58) derived from the identity seed."""
        return compute_peer_id(self.identity_seed)

    def get_umbral_secret_key(self) -> umbral_pre.SecretKey:
        """Return the Umbral secret key object."""
        return umbral_pre.SecretKey.from_be_bytes(self.umbral_secret)

    def get_umbral_public_key_hex(self) -> str:
        """Return the compressed Umbral public key (33 bytes) as hex."""
        public = self.get_umbral_secret_key().public_key()
        return bytes(public.to_compressed_bytes()).hex()


def compute_identity_key_pair(identity_seed: bytes) -> KeyPair:
    """Return the libp2p Ed25519 key pair for a 32-byte seed (deterministic)."""
    if len(identity_seed) != SEED_SIZE:
        raise KeyFileError(f"identity seed must be {SEED_SIZE} bytes, got {len(identity_seed)}")
    try:
        return create_new_key_pair(identity_seed)
    except ValueError as exc:
        raise KeyFileError(f"identity seed is not a usable Ed25519 seed: {exc}") from exc


def compute_peer_id(identity_seed: bytes) -> str:
    """Return the base58 libp2p peer ID for a 32-byte identity seed (deterministic)."""
    key_pair = compute_identity_key_pair(identity_seed)
    return ID.from_pubkey(key_pair.public_key).to_base58()


def generate_node_keys() -> NodeKeys:
    """Return fresh keys drawn from the operating system's random source."""
    while True:
        identity_seed = os.urandom(SEED_SIZE)
        try:
            compute_identity_key_pair(identity_seed)
        except KeyFileError:
            continue
        break
    umbral_secret = bytes(umbral_pre.SecretKey.random().to_be_bytes())
    return NodeKeys(
        account_seed=os.urandom(SEED_SIZE),
        identity_seed=identity_seed,
        umbral_secret=umbral_secret,
    )


def get_keys_dir(home: Path) -> Path:
    """Return the directory that holds the key files of the node home ``home``."""
    return Path(home) / KEYS_DIR


def is_node_keys_present(home: Path) -> bool:
    """Return True iff all three key files exist under ``home``."""
    keys_dir = get_keys_dir(home)
    return all((keys_dir / name).exists() for name in (ACCOUNT_FILE, IDENTITY_FILE, UMBRAL_FILE))


def save_node_keys(home: Path, keys: NodeKeys, *, overwrite: bool = False) -> None:
    """Write ``keys`` under ``home/keys`` (dir 0700, files 0600).

    Refuses to replace existing key files unless ``overwrite`` is True, so a
    node's identity is never lost by accident. Each file is written to a
    temporary name and renamed, so a crash never leaves a half-written key.
    """
    keys_dir = get_keys_dir(home)
    keys_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(keys_dir, DIR_MODE)
    entries = (
        (ACCOUNT_FILE, keys.account_seed),
        (IDENTITY_FILE, keys.identity_seed),
        (UMBRAL_FILE, keys.umbral_secret),
    )
    if not overwrite:
        existing = [name for name, _ in entries if (keys_dir / name).exists()]
        if existing:
            raise KeyFileError(
                f"refusing to overwrite existing key files in {keys_dir}: {', '.join(existing)}"
            )
    for name, secret in entries:
        _write_secret(keys_dir / name, secret)


def load_node_keys(home: Path) -> NodeKeys:
    """Read and check the three key files under ``home/keys``.

    Raises :class:`KeyFileError` naming the file when one is missing, is
    readable or writable by group/others, or does not hold a valid key.
    """
    keys_dir = get_keys_dir(home)
    account = _read_secret(keys_dir / ACCOUNT_FILE, SEED_SIZE)
    identity = _read_secret(keys_dir / IDENTITY_FILE, SEED_SIZE)
    umbral_secret = _read_secret(keys_dir / UMBRAL_FILE, UMBRAL_SECRET_SIZE)
    compute_identity_key_pair(identity)
    try:
        umbral_pre.SecretKey.from_be_bytes(umbral_secret)
    except ValueError as exc:
        raise KeyFileError(f"{keys_dir / UMBRAL_FILE}: not a valid Umbral secret key") from exc
    return NodeKeys(account_seed=account, identity_seed=identity, umbral_secret=umbral_secret)


def write_secret_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename), mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_secret(path: Path, secret: bytes) -> None:
    write_secret_file(path, (secret.hex() + "\n").encode("ascii"))


def _read_secret(path: Path, size: int) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file is missing") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot stat key file: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: permissions {stat.S_IMODE(info.st_mode):04o} are too open; "
            f"expected 0600 (chmod 600 {path})"
        )
    if info.st_size > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: corrupt key file ({info.st_size} bytes is too large)")
    try:
        text = path.read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"{path}: corrupt key file (expected one line of hex)") from exc
    if len(secret) != size:
        raise KeyFileError(f"{path}: corrupt key file (expected {size} bytes, got {len(secret)})")
    return secret
