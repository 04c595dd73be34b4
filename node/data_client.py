"""Client side of the data access path: publish, request, fetch, dispute, revoke, fail.

Used by ``dmchain data ...``, the provider agent, the tests and
``bench/data_timing.py``. Nothing secret leaves the process: the symmetric
key of an asset exists only in memory while encrypting or decrypting; on
chain and on the nodes there are only hashes, metadata, ciphertext, the key
wrapped under Umbral, sealed kfrags and capsule fragments.

Blobs of an asset (all content-addressed by SHA-256, stored on ``replicas``
nodes): the ciphertext (``cipher_hash`` on chain), the sealed manifest of
plain-chunk hashes (needed for a dispute proof; encrypted under the asset
key) and a public metadata document (``metadata_hash`` on chain) naming the
other two.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import umbral_pre

from consensus.crypto import compute_public_key
from ledger.records import ACCESS_FAILED
from ledger.tx import TxKind, compute_signed_tx
from node.client import ClientError, NodeClient
from node.wallet import Wallet, read_json_file, write_json_file
from pre import keywrap
from pre.aead import (
    AeadError,
    compute_sealed_manifest,
    decrypt_stream,
    encrypt_stream,
    get_manifest,
)
from pre.commitment import compute_key_commitment
from pre.dispute import DisputeError, compute_dispute_proof_for, find_first_bad_chunk
from pre.randomness import generate_asset_key, generate_asset_nonce

UPLOAD_CHUNK = 1024 * 1024
# 4 KiB AEAD chunks keep a dispute proof (one ciphertext chunk plus its Merkle path,
# about 5 KiB) under a node's default transaction size limit (8 KiB).
PUBLISH_CHUNK_SIZE = 4 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
DEFAULT_REPLICAS = 3
METADATA_VERSION = 1
MAX_METADATA_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 32 * (1 << 20) + 16

Progress = Callable[[str], None]


class DataError(RuntimeError):
    """A data-access step failed; the message says what and what to do next."""


class DisputeNeededError(DataError):
    """The delivered data contradicts its commitment; ``proof_path`` holds the dispute proof."""

    def __init__(self, message: str, proof_path: Path, request_id: bytes) -> None:
        super().__init__(message)
        self.proof_path = proof_path
        self.request_id = request_id


def print_progress(message: str) -> None:
    """Default progress sink: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def _quiet(_message: str) -> None:
    return None


# -- transactions ---------------------------------------------------------------


@dataclass
class TxSender:
    """Signs transactions for one account and waits for them (nonce read from the node)."""

    client: NodeClient
    seed: bytes
    chain_id: str = ""
    fee: int = 0

    def __post_init__(self) -> None:
        if not self.chain_id:
            self.chain_id = str(self.client.get_status()["chain_id"])

    @property
    def public_key(self) -> bytes:
        """The sender's account key."""
        return compute_public_key(self.seed)

    def submit(self, kind: TxKind, payload: list[Any]) -> bytes:
        """Sign with the account's next nonce and submit; returns the transaction hash."""
        nonce = int(self.client.get_account(self.public_key)["nonce"])
        raw = compute_signed_tx(self.seed, self.chain_id, kind, nonce, payload, fee=self.fee)
        try:
            return self.client.submit(raw)
        except ClientError as exc:
            raise DataError(f"{kind.name} refused by the node: {exc}") from exc

    def submit_and_wait(
        self, kind: TxKind, payload: list[Any], level: str = "confirmed", timeout: float = 60.0
    ) -> bytes:
        """Submit and wait until ``level``; raises DataError with the reason if it failed."""
        tx_hash = self.submit(kind, payload)
        wait_tx(self.client, tx_hash, level, timeout, kind.name)
        return tx_hash


def wait_tx(
    client: NodeClient, tx_hash: bytes, level: str, timeout: float, what: str
) -> dict[str, Any]:
    """Wait until ``tx_hash`` reaches ``level``; raises DataError if it failed or timed out."""
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DataError(f"{what} {tx_hash.hex()} not {level} after {timeout:.0f} s: {doc}")
        try:
            doc = client.wait(tx_hash, level, timeout=min(left, 20.0))
        except ClientError as exc:
            if exc.code != "unknown_tx":
                raise DataError(f"{what}: {exc}") from exc
            time.sleep(0.2)
            continue
        if doc.get("status") == "failed":
            raise DataError(f"{what} failed on chain: {doc.get('reason', 'no reason given')}")
        if doc.get("status") == level or (level == "confirmed" and doc.get("status") == "settled"):
            return doc
        time.sleep(0.2)


def process_ensure_pre_key(
    sender: TxSender, wallet: Wallet, with_verifying_key: bool, timeout: float = 60.0
) -> bool:
    """Register the wallet's Umbral key (and verifying key) unless the chain already has it.

    Returns True if a REGISTER_PRE_KEY transaction was needed.
    """
    umbral_key = wallet.get_umbral_public_key_bytes()
    verifying = wallet.get_verifying_key_bytes() if with_verifying_key else b""
    current = sender.client.get_pre_key(wallet.public_key)
    if (
        current is not None
        and current["umbral_key"] == umbral_key.hex()
        and (not with_verifying_key or current["verifying_key"] == verifying.hex())
    ):
        return False
    sender.submit_and_wait(TxKind.REGISTER_PRE_KEY, [umbral_key, verifying], timeout=timeout)
    return True


# -- blobs ----------------------------------------------------------------------


def _file_chunks(path: Path, progress: Progress, label: str) -> Iterator[bytes]:
    size = path.stat().st_size
    sent = 0
    last = time.monotonic()
    started = last
    with path.open("rb") as handle:
        while part := handle.read(UPLOAD_CHUNK):
            sent += len(part)
            now = time.monotonic()
            if now - last >= 1.0 or sent == size:
                rate = sent / max(now - started, 1e-6) / 1e6
                progress(
                    f"{label}: {sent}/{size} bytes ({100 * sent // max(size, 1)}%, {rate:.1f} MB/s)"
                )
                last = now
            yield part


def compute_file_sha256(path: Path) -> str:
    """Return the SHA-256 hex of a file (streamed)."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while part := handle.read(DOWNLOAD_CHUNK):
            hasher.update(part)
    return hasher.hexdigest()


def upload_blob(
    url: str, path: Path, name: str, progress: Progress = _quiet, timeout: float = 300.0
) -> None:
    """PUT the file at ``path`` as blob ``name`` on the node at ``url``; raises DataError."""
    size = path.stat().st_size
    try:
        response = httpx.put(
            f"{url.rstrip('/')}/v1/blobs/{name}",
            content=_file_chunks(path, progress, f"upload {name[:12]} to {url}"),
            headers={"content-length": str(size), "content-type": "application/octet-stream"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise DataError(f"upload to {url} failed: {exc}") from exc
    if response.status_code >= 400:
        raise DataError(
            f"upload to {url} refused: HTTP {response.status_code} {response.text[:200]}"
        )


def replicate_blob(
    urls: Sequence[str], path: Path, name: str, replicas: int, progress: Progress = _quiet
) -> list[str]:
    """Upload the blob to ``replicas`` of ``urls`` (in order, skipping failures); returns them.

    Raises DataError if fewer than ``min(replicas, len(urls))`` nodes stored it.
    """
    wanted = max(1, min(replicas, len(urls)))
    stored: list[str] = []
    errors: list[str] = []
    for url in urls:
        if len(stored) >= wanted:
            break
        try:
            upload_blob(url, path, name, progress)
            stored.append(url)
        except DataError as exc:
            errors.append(str(exc))
            progress(f"replica skipped: {exc}")
    if len(stored) < wanted:
        raise DataError(
            f"blob {name} stored on {len(stored)} of {wanted} nodes: {'; '.join(errors)}"
        )
    return stored


def download_blob(
    urls: Sequence[str], name: str, dest: Path, progress: Progress = _quiet, timeout: float = 300.0
) -> str:
    """Fetch blob ``name`` from the first node of ``urls`` that serves it intact.

    Every download is re-hashed; a node answering with an error (404, or 503
    for a blob it found corrupt and quarantined) or with bytes that do not
    hash to ``name`` is skipped. Returns the URL used; raises DataError if
    none had it.
    """
    errors: list[str] = []
    for url in urls:
        tmp = dest.with_name(dest.name + ".part")
        hasher = hashlib.sha256()
        try:
            with httpx.stream(
                "GET", f"{url.rstrip('/')}/v1/blobs/{name}", timeout=timeout
            ) as response:
                if response.status_code != 200:
                    body = response.read().decode(errors="replace")[:200]
                    errors.append(f"{url}: HTTP {response.status_code} {body}")
                    progress(f"download {name[:12]} from {errors[-1]}; trying the next node")
                    continue
                total = int(response.headers.get("content-length", "0"))
                got = 0
                last = time.monotonic()
                with tmp.open("wb") as out:
                    for part in response.iter_bytes(DOWNLOAD_CHUNK):
                        hasher.update(part)
                        out.write(part)
                        got += len(part)
                        now = time.monotonic()
                        if now - last >= 1.0:
                            progress(f"download {name[:12]} from {url}: {got}/{total} bytes")
                            last = now
        except httpx.HTTPError as exc:
            errors.append(f"{url}: {exc}")
            tmp.unlink(missing_ok=True)
            continue
        if hasher.hexdigest() != name:
            errors.append(f"{url}: served bytes that do not hash to the blob name")
            progress(f"download {name[:12]} from {url}: hash mismatch, trying the next node")
            tmp.unlink(missing_ok=True)
            continue
        os.replace(tmp, dest)
        return url
    raise DataError(f"no node served blob {name} intact: {'; '.join(errors) or 'no nodes given'}")


def _download_small(urls: Sequence[str], name: str, work: Path, limit: int) -> bytes:
    path = work / name
    download_blob(urls, name, path)
    try:
        if path.stat().st_size > limit:
            raise DataError(f"blob {name} is larger than the {limit} bytes expected")
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


# -- publish ----------------------------------------------------------------------


@dataclass
class PublishResult:
    """What ``publish_asset`` did, with its phase times in seconds."""

    asset_id: bytes
    content_hash: bytes
    cipher_hash: bytes
    metadata_hash: bytes
    size: int
    stored_on: list[str]
    phases: dict[str, float] = field(default_factory=dict)


def publish_asset(
    sender: TxSender,
    wallet: Wallet,
    source: Path,
    *,
    tags: list[str],
    licence: str,
    stake: int | None,
    blob_urls: Sequence[str],
    replicas: int = DEFAULT_REPLICAS,
    progress: Progress = _quiet,
    timeout: float = 120.0,
) -> PublishResult:
    """Encrypt ``source`` under a fresh key, store the blobs, wrap the key, register the asset.

    The asset is registered only after every blob is stored on the replicas;
    the wallet keeps the wrapped key for the provider agent.
    """
    phases: dict[str, float] = {}
    started = time.perf_counter()
    params_stake = stake
    if params_stake is None:
        params_stake = 100 * 1_000_000  # the default minimum asset stake s
    wallet_tmp = wallet.path / "tmp"
    wallet_tmp.mkdir(exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=wallet_tmp) as tmp_dir:
        work = Path(tmp_dir)
        blob_path = work / "cipher.blob"
        key = generate_asset_key()
        nonce = generate_asset_nonce()
        with source.open("rb") as src, blob_path.open("wb") as dst:
            sealed = encrypt_stream(key, nonce, src, dst, PUBLISH_CHUNK_SIZE)
        manifest = compute_sealed_manifest(key, sealed.header, sealed.plain_chunk_hashes)
        wrapped = keywrap.wrap_key(wallet.get_umbral_secret_key().public_key(), key)
        del key
        manifest_name = hashlib.sha256(manifest).hexdigest()
        (work / "manifest.blob").write_bytes(manifest)
        metadata = json.dumps(
            {
                "v": METADATA_VERSION,
                "name": source.name,
                "size": sealed.plain_size,
                "cipher_hash": sealed.cipher_hash.hex(),
                "cipher_size": sealed.cipher_size,
                "chunks": sealed.chunk_count,
                "manifest": manifest_name,
                "tags": tags,
                "licence": licence,
            },
            sort_keys=True,
        ).encode()
        metadata_name = hashlib.sha256(metadata).hexdigest()
        (work / "metadata.json").write_bytes(metadata)
        phases["encrypt_s"] = time.perf_counter() - started
        mark = time.perf_counter()
        stored = replicate_blob(blob_urls, blob_path, sealed.cipher_hash.hex(), replicas, progress)
        replicate_blob(blob_urls, work / "manifest.blob", manifest_name, replicas, progress)
        replicate_blob(blob_urls, work / "metadata.json", metadata_name, replicas, progress)
        phases["upload_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    process_ensure_pre_key(sender, wallet, with_verifying_key=True, timeout=timeout)
    payload = [
        sealed.content_hash,
        sealed.cipher_hash,
        sealed.plain_size,
        bytes.fromhex(metadata_name),
        list(tags),
        licence,
        params_stake,
        sealed.commitment,
    ]
    asset_id = sender.submit_and_wait(TxKind.REGISTER_ASSET, payload, timeout=timeout)
    phases["register_s"] = time.perf_counter() - mark
    write_json_file(
        wallet.get_asset_path(asset_id),
        {
            "asset_id": asset_id.hex(),
            "name": source.name,
            "wrapped_key": wrapped.to_bytes().hex(),
            "content_hash": sealed.content_hash.hex(),
            "cipher_hash": sealed.cipher_hash.hex(),
            "metadata_hash": metadata_name,
            "size": sealed.plain_size,
            "stored_on": stored,
        },
    )
    phases["total_s"] = time.perf_counter() - started
    return PublishResult(
        asset_id,
        sealed.content_hash,
        sealed.cipher_hash,
        bytes.fromhex(metadata_name),
        sealed.plain_size,
        stored,
        phases,
    )


# -- request, fetch ------------------------------------------------------------------


def request_access(
    sender: TxSender, wallet: Wallet, asset_id: bytes, timeout: float = 60.0
) -> bytes:
    """Register the consumer's Umbral key if needed, lock the escrow; returns the request id."""
    process_ensure_pre_key(sender, wallet, with_verifying_key=False, timeout=timeout)
    request_id = sender.submit_and_wait(TxKind.REQUEST_ACCESS, [asset_id], timeout=timeout)
    doc = sender.client.get_access(request_id)
    if doc is None:
        raise DataError(f"request {request_id.hex()} confirmed but unknown to the node")
    write_json_file(
        wallet.get_request_path(request_id),
        {"request_id": request_id.hex(), "asset_id": asset_id.hex(), "height": doc["height"]},
    )
    return request_id


def get_access_doc(client: NodeClient, request_id: bytes) -> dict[str, Any] | None:
    """Return the node's access document, or None if the request is unknown."""
    return client.get_access(request_id)


def resolve_request(client: NodeClient, wallet: Wallet, target: bytes) -> bytes:
    """Return the request id for ``target``: itself if it is a request, else the wallet's
    newest request for the asset ``target``."""
    if get_access_doc(client, target) is not None:
        return target
    request_id = wallet.find_request_for_asset(target)
    if request_id is None:
        raise DataError(
            f"{target.hex()} is neither a request nor an asset this wallet requested "
            "(run 'dmchain data request ASSET' first)"
        )
    return request_id


def wait_for_delivery(
    client: NodeClient,
    request_id: bytes,
    timeout: float,
    progress: Progress = _quiet,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Wait until m cfrags are on chain; raises DataError past the deadline or the timeout."""
    deadline_t = time.monotonic() + timeout
    last_note = ""
    while True:
        doc = get_access_doc(client, request_id)
        if doc is None:
            raise DataError(f"request {request_id.hex()} is unknown to the node")
        grant = doc.get("grant")
        count = len(doc["cfrags"]) if grant is None else len(grant["cfrag_proxies"])
        if grant is not None and count >= grant["threshold"]:
            return doc
        if doc["status"] == ACCESS_FAILED:
            raise DataError(f"request {request_id.hex()} failed (refunded) before delivery")
        if doc["current_height"] > doc["deadline"]:
            have = 0 if grant is None else count
            need = "?" if grant is None else grant["threshold"]
            raise DataError(
                f"deadline height {doc['deadline']} passed with {have} of {need} capsule "
                f"fragments; get the escrow back with: dmchain data fail {request_id.hex()}"
            )
        note = (
            "waiting for the provider's grant"
            if grant is None
            else f"{count} of {grant['threshold']} capsule fragments published"
        )
        if note != last_note:
            where = f"height {doc['current_height']}, deadline {doc['deadline']}"
            progress(f"request {request_id.hex()[:16]}: {note} ({where})")
            last_note = note
        if time.monotonic() > deadline_t:
            raise DataError(f"timed out after {timeout:.0f} s: {note}")
        time.sleep(poll_s)


@dataclass
class FetchResult:
    """What ``fetch_asset`` did, with its phase times in seconds."""

    request_id: bytes
    asset_id: bytes
    size: int
    served_by: str
    phases: dict[str, float] = field(default_factory=dict)


def _open_key(wallet: Wallet, doc: dict[str, Any], request_id: bytes) -> bytes:
    grant = doc["grant"]
    wrapped = keywrap.WrappedKey.from_bytes(bytes.fromhex(grant["wrapped_key"]))
    cfrags = [bytes.fromhex(c["signed_cfrag"]) for c in doc["cfrags"]]
    try:
        return keywrap.open_reencrypted_key(
            wallet.get_umbral_secret_key(),
            wrapped,
            cfrags,
            int(grant["threshold"]),
            umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(grant["verifying_pk"])),
            umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(grant["delegating_pk"])),
            request_id,
            [bytes.fromhex(p) for p in grant["proxies"]],
        )
    except keywrap.KeyWrapError as exc:
        raise DataError(f"could not recover the asset key: {exc}") from exc


def fetch_asset(
    client: NodeClient,
    wallet: Wallet,
    target: bytes,
    out: Path,
    *,
    blob_urls: Sequence[str],
    timeout: float = 300.0,
    progress: Progress = _quiet,
) -> FetchResult:
    """Collect and verify m cfrags, recover the key, download, decrypt and check the asset.

    Writes ``out`` only when the plaintext matches the on-chain content hash.
    On a mismatch, builds a dispute proof next to ``out`` and raises
    DisputeNeededError; other failures raise DataError.
    """
    phases: dict[str, float] = {}
    started = time.perf_counter()
    request_id = resolve_request(client, wallet, target)
    doc = wait_for_delivery(client, request_id, timeout, progress)
    phases["wait_grant_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    asset_id = bytes.fromhex(doc["asset_id"])
    asset = client.get_asset(asset_id)
    key = _open_key(wallet, doc, request_id)
    commitment = bytes.fromhex(asset["commitment"])
    if compute_key_commitment(key) != commitment[:32]:
        raise DataError("the recovered key does not match the asset's key commitment")
    phases["key_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".dmchain-fetch-") as tmp_dir:
        work = Path(tmp_dir)
        metadata = json.loads(
            _download_small(blob_urls, asset["metadata_hash"], work, MAX_METADATA_BYTES)
        )
        if metadata.get("cipher_hash") != asset["cipher_hash"]:
            raise DataError("the asset's metadata names another ciphertext than the chain")
        blob_path = work / "cipher.blob"
        served_by = download_blob(blob_urls, asset["cipher_hash"], blob_path, progress)
        phases["download_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        plain_tmp = work / "plain"
        content_hash = bytes.fromhex(asset["content_hash"])
        try:
            with blob_path.open("rb") as src, plain_tmp.open("wb") as dst:
                opened = decrypt_stream(key, src, dst)
            ok = opened.content_hash == content_hash
            reason = "the plaintext does not hash to the committed content hash"
        except AeadError as exc:
            ok, reason = False, f"the ciphertext does not decrypt: {exc}"
        if not ok:
            plain_tmp.unlink(missing_ok=True)
            manifest = _download_small(blob_urls, metadata["manifest"], work, MAX_MANIFEST_BYTES)
            proof_path = out.with_name(out.name + ".dispute-proof")
            with blob_path.open("rb") as src:
                header = src.read(16)
            try:
                hashes = get_manifest(key, header, manifest)
                with blob_path.open("rb") as src:
                    bad = find_first_bad_chunk(key, src, hashes, commitment, content_hash)
                if bad is None:
                    raise DataError(f"{reason}, but no chunk contradicts the commitment")
                proof = compute_dispute_proof_for(key, bad)
            except (AeadError, DisputeError) as exc:
                raise DataError(f"{reason}; no dispute proof can be built: {exc}") from exc
            proof_path.write_bytes(proof)
            raise DisputeNeededError(
                f"{reason} (chunk {bad.index}: {bad.reason}); dispute proof written to "
                f"{proof_path}; file it with: dmchain data dispute {request_id.hex()} "
                f"--proof {proof_path}",
                proof_path,
                request_id,
            )
        os.replace(plain_tmp, out)
        phases["decrypt_s"] = time.perf_counter() - mark
    del key
    phases["total_s"] = time.perf_counter() - started
    return FetchResult(request_id, asset_id, int(asset["size_bytes"]), served_by, phases)


# -- dispute, revoke, fail -------------------------------------------------------------


def file_dispute(sender: TxSender, request_id: bytes, proof: bytes, timeout: float = 60.0) -> bytes:
    """Submit a DISPUTE; raises DataError with the chain's reason if the proof is rejected."""
    return sender.submit_and_wait(TxKind.DISPUTE, [request_id, proof], timeout=timeout)


def revoke_asset(sender: TxSender, asset_id: bytes, timeout: float = 60.0) -> bytes:
    """Submit REVOKE_ASSET and wait for it."""
    return sender.submit_and_wait(TxKind.REVOKE_ASSET, [asset_id], timeout=timeout)


def fail_request(sender: TxSender, request_id: bytes, timeout: float = 60.0) -> bytes:
    """Submit FAIL_ACCESS (consumer: after the deadline) and wait; the escrow is refunded."""
    return sender.submit_and_wait(TxKind.FAIL_ACCESS, [request_id], timeout=timeout)


def load_agent_state(wallet: Wallet) -> dict[str, Any]:
    """Return the provider agent's persisted state (cursor, handled requests)."""
    from node.wallet import AGENT_STATE_FILE

    value = read_json_file(wallet.path / AGENT_STATE_FILE)
    return value if isinstance(value, dict) else {"cursor": 0, "granted": []}


def compute_blob_urls(node_url: str, blob_nodes: str | None) -> list[str]:
    """Return the blob node URLs: ``--blob-nodes`` (comma separated) or just the node."""
    if blob_nodes:
        return [u.strip() for u in blob_nodes.split(",") if u.strip()]
    return [node_url]


def get_testnet_urls(testnet: Path) -> list[str]:
    """Return the HTTP URLs of every node of a testnet directory, in node order."""
    from node.config import load_config

    return [load_config(home).http_url for home in sorted(testnet.glob("node*")) if home.is_dir()]
