"""Time the 'usable yet invisible' path end to end for files of given sizes.

For each size: write a random plaintext file, then time
  encrypt (chunked AES-256-GCM, file to file, with commitment),
  wrap the key (Umbral), issue 3-of-5 kfrags sealed to five proxies,
  three proxies open + verify their kfrag and re-encrypt (signed cfrags),
  the consumer verifies the cfrags and decrypts the key, then decrypts the file,
and check the result is byte-identical. Also times storing the blob in the
blob store and reading it back with verification, and compares the AEAD
candidates on 16 KiB chunks. Temporary files live in a fresh directory under
/tmp that is removed at the end.

Usage: python -m bench.pre_timing [--sizes-mib 1 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import umbral_pre
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from nacl import bindings

from consensus.crypto import compute_public_key, compute_seed_from_label
from node.blobstore import BlobStore
from pre.aead import DEFAULT_CHUNK_SIZE, decrypt_stream, encrypt_stream
from pre.keywrap import issue_kfrags, open_reencrypted_key, process_reencryption, wrap_key
from pre.randomness import generate_asset_key, generate_asset_nonce

T = TypeVar("T")
THRESHOLD = 3
SHARES = 5


def _write_random_file(path: Path, size: int) -> None:
    block = 1024 * 1024
    with path.open("wb") as out:
        remaining = size
        while remaining:
            part = min(block, remaining)
            out.write(os.urandom(part))
            remaining -= part


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000.0, result


def run_once(workdir: Path, size: int) -> dict[str, float]:
    """Run the whole path once for a ``size``-byte file; return milliseconds per step."""
    plain = workdir / "plain.bin"
    blob = workdir / "blob.bin"
    opened = workdir / "opened.bin"
    _write_random_file(plain, size)
    provider_sk = umbral_pre.SecretKey.random()
    signer = umbral_pre.Signer(umbral_pre.SecretKey.random())
    consumer_sk = umbral_pre.SecretKey.random()
    seeds = [compute_seed_from_label(f"bench-proxy-{i}") for i in range(SHARES)]
    proxies = [compute_public_key(s) for s in seeds]
    key, nonce = generate_asset_key(), generate_asset_nonce()
    times: dict[str, float] = {}

    def encrypt() -> object:
        with plain.open("rb") as src, blob.open("wb") as dst:
            return encrypt_stream(key, nonce, src, dst)

    times["encrypt"], _ = _timed(encrypt)
    times["wrap"], wrapped = _timed(lambda: wrap_key(provider_sk.public_key(), key))
    times["kfrags_3of5"], kfrags = _timed(
        lambda: issue_kfrags(provider_sk, signer, consumer_sk.public_key(), THRESHOLD, proxies)
    )

    def reencrypt() -> list[bytes]:
        return [
            process_reencryption(
                seeds[i],
                kfrags[i].sealed,
                wrapped.capsule,
                signer.verifying_key(),
                provider_sk.public_key(),
                consumer_sk.public_key(),
                b"bench-grant",
            )
            for i in range(THRESHOLD)
        ]

    times["reencrypt_3_proxies"], cfrags = _timed(reencrypt)
    times["open_key"], got_key = _timed(
        lambda: open_reencrypted_key(
            consumer_sk,
            wrapped,
            cfrags,
            THRESHOLD,
            signer.verifying_key(),
            provider_sk.public_key(),
            b"bench-grant",
            proxies,
        )
    )

    def decrypt() -> object:
        with blob.open("rb") as src, opened.open("wb") as dst:
            return decrypt_stream(got_key, src, dst)

    times["decrypt"], _ = _timed(decrypt)
    if not filecmp.cmp(plain, opened, shallow=False):
        raise SystemExit("round trip is not byte-identical")
    times["total_pre"] = sum(times.values())
    store = BlobStore(workdir / "store", max_blob_size=size + (size // 8) + 4096)

    def put() -> str:
        with blob.open("rb") as src:
            return store.put_stream(src)

    times["blobstore_put"], name = _timed(put)

    def get() -> int:
        with opened.open("wb") as dst:
            return store.copy_to(name, dst)

    times["blobstore_get_verified"], _ = _timed(get)
    for path in (plain, blob, opened):
        path.unlink()
    shutil.rmtree(workdir / "store")
    return times


def compare_aeads(chunks: int = 2000) -> dict[str, float]:
    """Return encryption throughput in MB/s for each AEAD candidate on 16 KiB chunks."""
    data = os.urandom(DEFAULT_CHUNK_SIZE)
    key = os.urandom(32)
    ad = bytes(25)
    candidates: dict[str, Callable[[], bytes]] = {
        "aes256gcm (cryptography)": lambda: AESGCM(key).encrypt(bytes(12), data, ad),
        "chacha20poly1305 (cryptography)": lambda: ChaCha20Poly1305(key).encrypt(
            bytes(12), data, ad
        ),
        "xchacha20poly1305 (pynacl)": lambda: bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            data, ad, bytes(24), key
        ),
    }
    result = {}
    for name, fn in candidates.items():
        start = time.perf_counter()
        for _ in range(chunks):
            fn()
        elapsed = time.perf_counter() - start
        result[name] = chunks * len(data) / elapsed / 1e6
    return result


def main() -> None:
    """Print timings (median of ``--repeat`` runs) for each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("AEAD encrypt throughput, 16 KiB chunks (MB/s):")
    for name, rate in compare_aeads().items():
        print(f"  {name:34s} {rate:8.0f}")
    workdir = Path(tempfile.mkdtemp(prefix="dmchain-pre-timing-", dir="/tmp"))
    try:
        for mib in args.sizes_mib:
            runs = [run_once(workdir, mib * 1024 * 1024) for _ in range(max(1, args.repeat))]
            print(f"\n{mib} MiB file, median of {len(runs)} runs (ms):")
            for step in runs[0]:
                value = statistics.median(r[step] for r in runs)
                print(f"  {step:24s} {value:10.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
