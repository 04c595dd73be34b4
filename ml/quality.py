"""Quality coefficient ``q`` (integer ppm in ``[q_min, 1_000_000]``) from contributions.

Formula, all integer:

1. target: min-max normalise the contributions of the job onto
   ``[q_min, 1_000_000]``::

       target_i = q_min + (1_000_000 - q_min) * (c_i - c_min) // (c_max - c_min)

   (every target is 1_000_000 when all contributions are equal).
2. bounded update from the previous coefficient toward the target::

       q_i = prev_i + (target_i - prev_i) * step_ppm // 1_000_000

   clamped to ``[q_min, 1_000_000]``; with no previous value, ``q_i = target_i``.

``q`` is non-decreasing in the contribution for a fixed previous value, so with
no history (or equal history) the lowest contributor gets the lowest ``q`` and
equal contributions get equal ``q``. ``q_min > 0`` keeps ``q`` inside ``(0, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml.spec import PPM

Q_MIN_PPM = 10_000
STEP_PPM = 500_000
MAX_PROVIDERS = 1024


class QualityError(ValueError):
    """Bad contribution vector, previous coefficients or parameters."""


def compute_quality_targets(contributions: Sequence[int], q_min: int = Q_MIN_PPM) -> list[int]:
    """Return the min-max normalised targets of step 1 (see module doc)."""
    if not 1 <= len(contributions) <= MAX_PROVIDERS:
        raise QualityError(f"need 1 to {MAX_PROVIDERS} contributions")
    if any(isinstance(c, bool) or not isinstance(c, int) for c in contributions):
        raise QualityError("contributions must be integers")
    if not 1 <= q_min <= PPM:
        raise QualityError(f"q_min {q_min} outside [1, {PPM}]")
    low, high = min(contributions), max(contributions)
    if low == high:
        return [PPM] * len(contributions)
    return [q_min + (PPM - q_min) * (c - low) // (high - low) for c in contributions]


def compute_quality(
    contributions: Sequence[int],
    previous: Sequence[int] | None = None,
    step_ppm: int = STEP_PPM,
    q_min: int = Q_MIN_PPM,
) -> list[int]:
    """Return the new quality coefficients, each in ``[q_min, 1_000_000]`` (see module doc)."""
    targets = compute_quality_targets(contributions, q_min)
    if previous is None:
        return targets
    if len(previous) != len(contributions) or any(
        isinstance(p, bool) or not isinstance(p, int) or not 0 < p <= PPM for p in previous
    ):
        raise QualityError(f"previous must be one integer in (0, {PPM}] per contribution")
    if not 0 <= step_ppm <= PPM:
        raise QualityError(f"step_ppm {step_ppm} outside [0, {PPM}]")
    return [
        min(PPM, max(q_min, p + (t - p) * step_ppm // PPM))
        for p, t in zip(previous, targets, strict=True)
    ]
