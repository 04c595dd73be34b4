"""Result digest and canonical result record.

Executors that ran the same job must report the same digest. The digest is
SHA-256 (:func:`consensus.crypto.compute_hash_parts`, length-prefixed parts)
over a domain tag, the spec hash, the canonical weight bytes and the canonical
encoding of the integer results: final and per-round metrics (ppm), per-round
kept clients, and per-round and total contributions (ppm). No float enters
the digest except the weight bytes themselves.
"""

from __future__ import annotations

from typing import Any

from consensus import codec
from consensus.crypto import DIGEST_SIZE, compute_hash, compute_hash_parts

from ml.result import JobResult

RESULT_DOMAIN = b"dmchain/ml/result/v1"
MAX_RECORD_SIZE = codec.MAX_ENCODED_SIZE


class ResultError(ValueError):
    """Result record bytes that are malformed or not canonical."""


def compute_scores_obj(result: JobResult) -> dict[str, Any]:
    """Return the integer part of a result as a codec-encodable map."""
    return {
        "metric_ppm": result.metric_ppm,
        "round_metrics_ppm": list(result.round_metrics_ppm),
        "kept": [list(k) for k in result.kept],
        "round_contributions_ppm": [list(c) for c in result.round_contributions_ppm],
        "contributions_ppm": list(result.contributions_ppm),
    }


def compute_weights_hash(weights: bytes) -> bytes:
    """Return the SHA-256 of canonical weight bytes (the on-chain model hash)."""
    return compute_hash(weights)


def compute_result_digest(result: JobResult) -> bytes:
    """Return the 32-byte digest of ``result`` that executors compare and the chain records."""
    return compute_hash_parts(
        RESULT_DOMAIN, result.spec_hash, result.weights, codec.encode(compute_scores_obj(result))
    )


def encode_result(result: JobResult) -> bytes:
    """Return the canonical bytes of a whole result (what an executor process hands back)."""
    obj = compute_scores_obj(result)
    obj.update(spec_hash=result.spec_hash, weights=result.weights)
    return codec.encode(obj)


def _ints(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ResultError(f"{name} must be a list of integers")
    return tuple(value)


def decode_result(data: bytes) -> JobResult:
    """Parse :func:`encode_result` bytes; raises ResultError unless well formed and canonical."""
    try:
        obj = codec.decode(data, max_size=MAX_RECORD_SIZE)
    except codec.CodecError as exc:
        raise ResultError(f"bad result encoding: {exc}") from exc
    keys = {"spec_hash", "weights", "metric_ppm", "round_metrics_ppm", "kept",
            "round_contributions_ppm", "contributions_ppm"}
    if not isinstance(obj, dict) or set(obj) != keys:
        raise ResultError(f"result must be a map with keys {sorted(keys)}")
    spec_hash, weights, metric = obj["spec_hash"], obj["weights"], obj["metric_ppm"]
    if not isinstance(spec_hash, bytes) or len(spec_hash) != DIGEST_SIZE:
        raise ResultError("spec_hash must be 32 bytes")
    if not isinstance(weights, bytes) or not isinstance(metric, int) or isinstance(metric, bool):
        raise ResultError("weights must be bytes and metric_ppm an integer")
    for name in ("kept", "round_contributions_ppm"):
        if not isinstance(obj[name], list):
            raise ResultError(f"{name} must be a list")
    result = JobResult(
        spec_hash=spec_hash,
        weights=weights,
        metric_ppm=metric,
        round_metrics_ppm=_ints(obj["round_metrics_ppm"], "round_metrics_ppm"),
        kept=tuple(_ints(k, "kept") for k in obj["kept"]),
        round_contributions_ppm=tuple(
            _ints(c, "round_contributions_ppm") for c in obj["round_contributions_ppm"]
        ),
        contributions_ppm=_ints(obj["contributions_ppm"], "contributions_ppm"),
    )
    if encode_result(result) != bytes(data):
        raise ResultError("result encoding is not canonical")
    return result
