"""Seed derivation and permutations from SHA-256, independent of any library's RNG.

Every random choice in a job (batch order, Shapley permutations, simulated
attacks) is derived from the spec's seed and a label path, so two executors
make the same choices, and a library upgrade cannot change them.
"""

from __future__ import annotations

from consensus import codec
from consensus.crypto import compute_hash, compute_hash_parts

_DOMAIN = b"dmchain/ml/seed/v1"
MAX_PERMUTATION = 10_000_000


def compute_subseed(seed: int, *labels: str | int) -> int:
    """Return a 63-bit seed derived from ``seed`` and a path of labels."""
    digest = compute_hash_parts(_DOMAIN, codec.encode([seed, list(labels)]))
    return int.from_bytes(digest[:8], "big") >> 1


def compute_permutation(seed: int, n: int) -> list[int]:
    """Return a uniformly shuffled ``list(range(n))`` determined by ``seed`` (Fisher-Yates).

    Draws are 64-bit words of SHA-256(seed, counter) with rejection sampling,
    so the result is unbiased and identical on every platform.
    """
    if not 0 <= n <= MAX_PERMUTATION:
        raise ValueError(f"permutation size {n} outside [0, {MAX_PERMUTATION}]")
    out = list(range(n))
    key = seed.to_bytes(8, "big")
    words: list[int] = []
    counter = 0

    def draw() -> int:
        nonlocal counter
        if not words:
            block = compute_hash(key + counter.to_bytes(8, "big"))
            counter += 1
            words.extend(int.from_bytes(block[i : i + 8], "big") for i in range(24, -1, -8))
        return words.pop()

    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (1 << 64) - ((1 << 64) % bound)
        value = draw()
        while value >= limit:
            value = draw()
        j = value % bound
        out[i], out[j] = out[j], out[i]
    return out
