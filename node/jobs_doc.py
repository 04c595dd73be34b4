"""JSON documents of training jobs and executors, read from the ledger state.

Used by the node's HTTP API (``GET /v1/jobs/{id}``, ``GET /v1/executors/{account}``).
Every list in a document is bounded by the ledger (at most ``job_max_executors``
posts and executors per job, ``MAX_QUERY_ITEMS`` open jobs per executor).
A job document's ``keys`` lists the validation-data key sealed to each assigned
executor that has one (JOB_KEYS), hex encoded.
"""

from __future__ import annotations

from typing import Any

from ledger import queries
from ledger.state import State
from ml.spec import SpecError, compute_spec_json, decode_spec


def _hex(value: bytes) -> str:
    return value.hex()


def get_executor_doc(state: State, account: bytes) -> dict[str, Any] | None:
    """Return an executor's record and its open job ids, or None if not registered."""
    ex = queries.get_executor(state, account) if len(account) == 32 else None
    if ex is None:
        return None
    return {
        "account": account.hex(),
        "stake": ex.stake,
        "fee": ex.fee,
        "endpoint": ex.endpoint,
        "active": ex.active,
        "height": ex.height,
        "open_jobs": [j.hex() for j in queries.get_executor_jobs(state, account)],
        "accepted": ex.accepted,
        "slashed": ex.slashed,
    }


def get_job_doc(state: State, job_id: bytes) -> dict[str, Any] | None:
    """Return a job with its spec, executors, posts, anchored result and settlement."""
    job = queries.get_job(state, job_id) if len(job_id) == 32 else None
    if job is None:
        return None
    try:
        spec = decode_spec(job.spec)
        spec_doc: dict[str, Any] | None = compute_spec_json(spec)
        datasets = list(spec.datasets)
    except SpecError:
        spec_doc, datasets = None, []

    def endpoint(account: bytes) -> str:
        ex = queries.get_executor(state, account)
        return ex.endpoint if ex is not None else ""

    doc: dict[str, Any] = {
        "job_id": job_id.hex(),
        "buyer": job.buyer.hex(),
        "status": job.status,
        "spec": spec_doc,
        "spec_hash": job.spec_hash.hex(),
        "validation_hash": job.validation_hash.hex(),
        "validation_cipher_hash": job.validation_cipher_hash.hex(),
        "bid": job.bid,
        "height": job.height,
        "deadline": job.deadline,
        "assigned": [{"executor": a.hex(), "endpoint": endpoint(a)} for a in job.assigned],
        "keys": [
            {"executor": a.hex(), "sealed_key": sealed.hex()}
            for a, sealed in queries.get_job_sealed_keys(state, job_id, job.assigned)
        ],
        "posts": [
            {
                "executor": p[0].hex(),
                "digest": p[1].hex(),
                "weights_hash": p[2].hex(),
                "metric_ppm": p[3],
                "contributions_ppm": list(p[4]),
                "kept_counts": list(p[5]),
            }
            for p in job.posts
        ],
        "agreed": [a.hex() for a in job.agreed],
        "slashed": [a.hex() for a in job.slashed],
        "digest": job.digest.hex(),
        "weights_hash": job.weights_hash.hex(),
        "metric_ppm": job.metric_ppm,
        "contributions_ppm": list(job.contributions_ppm),
        "kept_counts": list(job.kept_counts),
        "settlement": None,
        "quality": [],
        "closed_height": job.closed_height,
    }
    if job.settlement:
        refund, executors, providers = job.settlement
        doc["settlement"] = {
            "buyer_refund": refund,
            "executors": [
                {"executor": a.hex(), "amount": amount}
                for a, amount in zip(job.agreed, executors, strict=False)
            ],
            "providers": [
                {
                    "asset_id": asset_id.hex(),
                    "provider": _provider(state, asset_id),
                    "amount": amount,
                }
                for asset_id, amount in zip(datasets, providers, strict=False)
            ],
        }
    doc["quality"] = [
        {"asset_id": a.hex(), "quality_ppm": qv}
        for a, qv in zip(datasets, job.quality, strict=False)
    ]
    return doc


def _provider(state: State, asset_id: bytes) -> str:
    asset = queries.get_asset(state, asset_id)
    return asset.provider.hex() if asset is not None else ""
