"""Edge: how job inputs reach an executor and how the model reaches the buyer.

Datasets and the buyer's validation data are stored encrypted (:mod:`pre.aead`,
a fresh AES-256-GCM key each) in a content-addressed :class:`node.blobstore.BlobStore`;
only hashes go on chain (the asset's ``content_hash`` / ``cipher_hash``, the
job's ``validation_hash`` / ``validation_cipher_hash``). An executor obtains
plaintext through a :class:`DatasetSource`. The source built here,
:class:`SealedKeySource`, reads the ciphertext from the blob store, opens the
data key that was sealed to the executor's account key (a NaCl ``SealedBox``
to the X25519 key derived from the Ed25519 account key, as :mod:`pre.keywrap`
does for proxies) and checks the plaintext against the on-chain hash, so a
wrong blob or key is refused, never trained on. Sealed keys live in a key
directory as ``<ciphertext hash>-<executor account>.key``.

The trained model goes back sealed to the buyer's account key the same way;
the buyer checks the opened bytes against the weights hash anchored on chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import nacl.bindings
import nacl.exceptions
import nacl.public

from consensus.crypto import compute_hash, compute_public_key
from node.blobstore import BlobStore, BlobStoreError
from pre.aead import KEY_SIZE, AeadError, decrypt_bytes, encrypt_bytes
from pre.randomness import generate_asset_key, generate_asset_nonce

MAX_SEALED_KEY_SIZE = 256


class JobDataError(ValueError):
    """A dataset, key or model could not be obtained or failed its hash check."""


def _x25519_public(account: bytes) -> nacl.public.PublicKey:
    if len(account) != 32:
        raise JobDataError("an account key is 32 bytes")
    try:
        return nacl.public.PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(account))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise JobDataError("not a valid Ed25519 account key") from exc


def _x25519_private(seed: bytes) -> nacl.public.PrivateKey:
    secret = bytes(seed) + compute_public_key(seed)
    return nacl.public.PrivateKey(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(secret))


def seal_to_account(account: bytes, data: bytes) -> bytes:
    """Return ``data`` sealed so that only the holder of ``account``'s seed can open it."""
    return bytes(nacl.public.SealedBox(_x25519_public(account)).encrypt(data))


def open_sealed(seed: bytes, sealed: bytes) -> bytes:
    """Open bytes sealed to this seed's account; raises JobDataError if they do not open."""
    try:
        return bytes(nacl.public.SealedBox(_x25519_private(seed)).decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise JobDataError("sealed bytes do not open with this account's key") from exc


def process_store_encrypted(store: BlobStore, plaintext: bytes) -> tuple[bytes, bytes, bytes]:
    """Encrypt ``plaintext`` under a fresh key into ``store``.

    Returns ``(key, content_hash, cipher_hash)``: the SHA-256 of the plaintext
    and of the stored blob.
    """
    key = generate_asset_key()
    blob, _ = encrypt_bytes(key, generate_asset_nonce(), plaintext)
    name = store.put_bytes(blob)
    return key, compute_hash(plaintext), bytes.fromhex(name)


def get_key_path(key_dir: Path, cipher_hash: bytes, account: bytes) -> Path:
    """Return where the data key of blob ``cipher_hash`` sealed to ``account`` is kept."""
    return Path(key_dir) / f"{cipher_hash.hex()}-{account.hex()}.key"


def process_grant_key(key_dir: Path, cipher_hash: bytes, account: bytes, key: bytes) -> Path:
    """Seal a data key to ``account`` and write it to the key directory; returns the path."""
    path = get_key_path(key_dir, cipher_hash, account)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(seal_to_account(account, key))
    tmp.replace(path)
    return path


class DatasetSource(Protocol):
    """Where an executor gets the plaintext of a data asset named in a job."""

    def get_dataset(self, asset_id: bytes, asset: dict[str, Any]) -> bytes:
        """Return the asset's plaintext, checked against its on-chain ``content_hash``.

        ``asset`` is the node's asset document. Raises JobDataError (with the
        reason) if the data is not available yet or is wrong.
        """
        ...


BlobFetcher = Callable[[str, Path], None]  # (blob name, destination file)


class SealedKeySource:
    """Ciphertext from a blob store, the key sealed to this executor (see module doc).

    A blob missing from the local store is fetched with ``fetch_blob`` (e.g.
    from the nodes' ``GET /v1/blobs/{name}``) and re-hashed on the way in.
    """

    def __init__(
        self, store: BlobStore, key_dir: Path, seed: bytes, fetch_blob: BlobFetcher | None = None
    ) -> None:
        self.store = store
        self.key_dir = Path(key_dir)
        self.seed = seed
        self.account = compute_public_key(seed)
        self.fetch_blob = fetch_blob

    def get_dataset(self, asset_id: bytes, asset: dict[str, Any]) -> bytes:
        """Return the asset's plaintext (see DatasetSource)."""
        return self.get_plaintext(
            bytes.fromhex(asset["cipher_hash"]), bytes.fromhex(asset["content_hash"])
        )

    def _load_blob(self, name: str) -> bytes:
        if not self.store.has(name) and self.fetch_blob is not None:
            tmp = self.store.root / f"fetch-{name}.part"
            try:
                self.fetch_blob(name, tmp)
                with tmp.open("rb") as src:
                    self.store.put_stream(src, name)
            except (OSError, BlobStoreError, RuntimeError) as exc:
                raise JobDataError(f"blob {name} could not be fetched: {exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
        return self.store.get_bytes(name)

    def get_plaintext(self, cipher_hash: bytes, content_hash: bytes) -> bytes:
        """Decrypt the blob with the sealed key and check its hash (see DatasetSource)."""
        path = get_key_path(self.key_dir, cipher_hash, self.account)
        try:
            sealed = path.read_bytes()
        except OSError as exc:
            raise JobDataError(f"no data key sealed to this executor at {path}") from exc
        if len(sealed) > MAX_SEALED_KEY_SIZE:
            raise JobDataError(f"sealed key {path} is too large")
        key = open_sealed(self.seed, sealed)
        if len(key) != KEY_SIZE:
            raise JobDataError("sealed data key has the wrong size")
        try:
            blob = self._load_blob(cipher_hash.hex())
        except (BlobStoreError, KeyError, OSError) as exc:
            raise JobDataError(f"blob {cipher_hash.hex()} not available: {exc}") from exc
        try:
            plaintext = decrypt_bytes(key, blob)
        except AeadError as exc:
            raise JobDataError(f"blob {cipher_hash.hex()} does not decrypt: {exc}") from exc
        if compute_hash(plaintext) != content_hash:
            raise JobDataError(f"blob {cipher_hash.hex()} does not match its on-chain hash")
        return plaintext
