"""Shared builders for the ml tests: digits split and job specs."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from ml.data import DigitsSplit, compute_digits_split
from ml.spec import JobSpec, parse_spec_json

PROVIDERS = 5
POISONED = 4
ATTACK_SCALE_PPM = 3_000_000  # per-coordinate std of the Byzantine update
TAU_PPM = 900_000


@lru_cache(maxsize=4)
def get_split(seed: int = 1, providers: int = PROVIDERS) -> DigitsSplit:
    """Return the digits split used by the tests (cached: it is deterministic)."""
    return compute_digits_split(providers, seed=seed)


def asset_ids(n: int) -> list[str]:
    """Return n distinct hex asset ids."""
    return [f"{i + 1:064x}" for i in range(n)]


def spec_obj(**overrides: Any) -> dict[str, Any]:
    """Return a valid JSON spec object with ``overrides`` applied."""
    obj: dict[str, Any] = {
        "datasets": asset_ids(PROVIDERS),
        "model": "logreg",
        "metric": "accuracy",
        "tau_ppm": TAU_PPM,
        "bid": 1_000_000,
        "rounds": 10,
        "local_epochs": 2,
        "learning_rate": "0.5",
        "batch_size": 16,
        "seed": 7,
        "aggregation": {"rule": "multikrum", "f": 1, "m": 4},
        "contribution": {"method": "loo"},
        "profile": {"threads": 1, "cpu_capability": "avx2"},
    }
    obj.update(overrides)
    return obj


def make_spec(**overrides: Any) -> JobSpec:
    """Return a parsed JobSpec built from :func:`spec_obj`."""
    return parse_spec_json(json.dumps(spec_obj(**overrides)))
