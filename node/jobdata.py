"""Edge: how job inputs reach an executor and how the model reaches the buyer.

Datasets and the buyer's validation data are stored encrypted (:mod:`pre.aead`,
a fresh AES-256-GCM key each) in a content-addressed :class:`node.blobstore.BlobStore`;
only hashes go on chain (the asset's ``content_hash`` / ``cipher_hash``, the
job's ``validation_hash`` / ``validation_cipher_hash``). An executor obtains
plaintext of datasets through a :class:`DatasetSource` (the data access grant
path). The validation data comes through :class:`SealedKeySource`: the buyer
posts its AES key sealed to each assigned executor's account key (a NaCl
``SealedBox`` to the X25519 key derived from the Ed25519 account key, as
:mod:`pre.keywrap` does for proxies) on chain in a JOB_KEYS transaction; the
executor reads the one sealed to it from the job document, opens it, reads the
ciphertext from the blob store and checks the plaintext against the on-chain
hash, so a wrong blob or key is refused, never trained on. Nothing is shared
between machines but the chain and the blob endpoints. The buyer keeps its own
copy of the key sealed to itself in a 0600 file in a buyer-local directory
(:func:`process_save_buyer_key`) to seal it to executors added later.

The trained model goes back sealed to the buyer's account key the same way;
the buyer checks the opened bytes against the weights hash anchored on chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import nacl.bindings
import nacl.exceptions
import nacl.public

from consensus.crypto import compute_hash, compute_public_key
from ledger.tx import MAX_SEALED_KEY_SIZE
from node.blobstore import BlobStore, BlobStoreError
from pre.aead import KEY_SIZE, AeadError, decrypt_bytes, encrypt_bytes
from pre.randomness import generate_asset_key, generate_asset_nonce

MAX_JOB_KEYS_SCAN = 1_000  # entries of a job document's ``keys`` looked at


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


def get_buyer_key_path(state_dir: Path, cipher_hash: bytes) -> Path:
    """Return where the buyer keeps its own copy of the key of blob ``cipher_hash``."""
    return Path(state_dir) / f"{cipher_hash.hex()}.key"


def process_save_buyer_key(state_dir: Path, cipher_hash: bytes, seed: bytes, key: bytes) -> Path:
    """Keep ``key`` sealed to the buyer's own account in a 0600 file; returns its path.

    The directory is created 0700; the file is written under a temporary name
    (created 0600) and renamed, so a reader never sees a partial key.
    """
    path = get_buyer_key_path(state_dir, cipher_hash)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(seal_to_account(compute_public_key(seed), key))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def get_buyer_key(state_dir: Path, cipher_hash: bytes, seed: bytes) -> bytes:
    """Return the buyer's copy of the key of blob ``cipher_hash``; JobDataError if unusable."""
    path = get_buyer_key_path(state_dir, cipher_hash)
    try:
        sealed = path.read_bytes()[: MAX_SEALED_KEY_SIZE + 1]
    except OSError as exc:
        raise JobDataError(f"no copy of the data key at {path}: {exc}") from exc
    return _open_key(seed, sealed)


def _open_key(seed: bytes, sealed: bytes) -> bytes:
    if not 0 < len(sealed) <= MAX_SEALED_KEY_SIZE:
        raise JobDataError(f"a sealed key is 1..{MAX_SEALED_KEY_SIZE} bytes")
    key = open_sealed(seed, sealed)
    if len(key) != KEY_SIZE:
        raise JobDataError("sealed data key has the wrong size")
    return key


def compute_key_entries(key: bytes, executors: list[bytes]) -> list[list[bytes]]:
    """Return the JOB_KEYS entries: ``[executor, key sealed to it]`` for each executor."""
    return [[account, seal_to_account(account, key)] for account in executors]


def get_sealed_key_from_job(job: dict[str, Any], account: bytes) -> bytes:
    """Return the validation key sealed to ``account`` in a job document's ``keys``.

    Raises JobDataError when none is there yet (the buyer has not posted
    JOB_KEYS for this executor) or the entry is malformed or oversized.
    """
    entries = job.get("keys")
    if not isinstance(entries, list):
        raise JobDataError("the job document lists no sealed keys")
    for entry in entries[:MAX_JOB_KEYS_SCAN]:
        if not isinstance(entry, dict) or entry.get("executor") != account.hex():
            continue
        text = entry.get("sealed_key")
        if not isinstance(text, str) or len(text) > 2 * MAX_SEALED_KEY_SIZE:
            raise JobDataError("the sealed key in the job document is too large")
        try:
            return bytes.fromhex(text)
        except ValueError as exc:
            raise JobDataError("the sealed key in the job document is not hex") from exc
    raise JobDataError("no validation key sealed to this executor on chain yet")


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
    """Ciphertext from a blob store, opened with a key sealed to this executor (module doc).

    The sealed key comes from the chain (the job document's ``keys``, posted
    by the buyer in JOB_KEYS). A blob missing from the local store is fetched
    with ``fetch_blob`` (e.g. from the nodes' ``GET /v1/blobs/{name}``) and
    re-hashed on the way in.
    """

    def __init__(
        self, store: BlobStore, seed: bytes, fetch_blob: BlobFetcher | None = None
    ) -> None:
        self.store = store
        self.seed = seed
        self.account = compute_public_key(seed)
        self.fetch_blob = fetch_blob

    def get_validation(self, job: dict[str, Any]) -> bytes:
        """Return a job's validation data: its on-chain sealed key, blob and hash check."""
        sealed = get_sealed_key_from_job(job, self.account)
        return self.get_plaintext(
            sealed, bytes.fromhex(job["validation_cipher_hash"]),
            bytes.fromhex(job["validation_hash"]),
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

    def get_plaintext(self, sealed: bytes, cipher_hash: bytes, content_hash: bytes) -> bytes:
        """Open ``sealed``, decrypt blob ``cipher_hash`` and check it against ``content_hash``.

        Raises JobDataError if the key does not open or has the wrong size, the
        blob is unavailable or does not decrypt, or the plaintext hash differs.
        """
        key = _open_key(self.seed, sealed)
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
