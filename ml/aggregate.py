"""Robust aggregation of client updates.

An update is one client's flattened parameter change for a round (a 1-D
tensor or array; all the same length). Every rule returns an
:class:`AggregateResult`: the aggregate update (float32) and the indices of
the clients it kept, ascending. Arithmetic is float64 with a fixed iteration
order; every choice is by (score, index), so ties always go to the lower index.

Rules:

- ``fedavg``: mean weighted by sample count; keeps everyone.
- ``multikrum`` (Blanchard et al.): score each client by the sum of squared
  distances to its ``n - f - 2`` nearest others, keep the ``m`` lowest scores,
  average them weighted by sample count.
- ``trimmed_mean``: per coordinate, drop the ``floor(beta * n)`` lowest and
  highest values and average the rest. A client counts as kept when its value
  survives the trim in at least half of the coordinates.
- ``three_sigma`` (seed 002): a cross-round check first: if every client's
  cosine similarity to its own previous update is at least ``cosine_min``, no
  attack is assumed and all are averaged. Otherwise (and always in the first
  round), a cross-trainer check: distances to a robust centre (the unweighted
  mean of the multi-Krum selection with ``m = ceil(n / 2)``) are fitted to
  ``N(mu, sigma)`` and clients farther than ``mu + k * sigma`` are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ml.spec import PPM, AggregationSpec

MAX_CLIENTS = 256


class AggregationError(ValueError):
    """Updates or parameters that no rule can aggregate (empty, ragged, non-finite...)."""


@dataclass(frozen=True)
class AggregateResult:
    """The aggregate update and the ascending indices of the clients it kept."""

    vector: torch.Tensor
    kept: tuple[int, ...]


def _stack(updates: Sequence[Any]) -> torch.Tensor:
    if not 1 <= len(updates) <= MAX_CLIENTS:
        raise AggregationError(f"need 1 to {MAX_CLIENTS} updates, got {len(updates)}")
    rows = []
    for i, u in enumerate(updates):
        t = torch.from_numpy(np.asarray(u)) if isinstance(u, np.ndarray) else torch.as_tensor(u)
        if t.dim() != 1:
            raise AggregationError(f"update {i} is not a flat vector")
        rows.append(t.to(torch.float64))
    if len({r.numel() for r in rows}) != 1 or rows[0].numel() == 0:
        raise AggregationError("updates are empty or of different lengths")
    x = torch.stack(rows)
    if not bool(torch.isfinite(x).all()):
        raise AggregationError("an update holds NaN or infinity")
    return x


def _weights(weights: Sequence[int] | None, n: int) -> list[int]:
    if weights is None:
        return [1] * n
    if len(weights) != n or any(isinstance(w, bool) or not isinstance(w, int) for w in weights):
        raise AggregationError("weights must be one integer per update")
    if any(w < 0 for w in weights):
        raise AggregationError("weights must be non-negative")
    return list(weights)


def compute_weighted_mean(
    x: torch.Tensor, weights: Sequence[int], subset: Sequence[int]
) -> torch.Tensor:
    """Return the weighted mean (float32) of the rows ``subset`` of ``x``, summed in index order.

    Zero total weight falls back to the plain mean of the subset.
    """
    if not subset:
        raise AggregationError("cannot average an empty set of clients")
    total = sum(weights[i] for i in subset)
    use = [weights[i] for i in subset] if total > 0 else [1] * len(subset)
    acc = torch.zeros(x.shape[1], dtype=torch.float64)
    for i, w in zip(subset, use, strict=True):
        acc += x[i] * w
    return (acc / sum(use)).to(torch.float32)


def compute_fedavg(updates: Sequence[Any], weights: Sequence[int] | None = None) -> AggregateResult:
    """Sample-weighted mean of all updates; keeps every client."""
    x = _stack(updates)
    w = _weights(weights, x.shape[0])
    kept = tuple(range(x.shape[0]))
    return AggregateResult(compute_weighted_mean(x, w, kept), kept)


def _squared_distances(x: torch.Tensor) -> list[list[float]]:
    n = x.shape[0]
    d = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            d[i][j] = d[j][i] = float(((x[i] - x[j]) ** 2).sum())
    return d


def compute_krum_selection(x: torch.Tensor, f: int, m: int) -> tuple[int, ...]:
    """Return the ``m`` clients with the lowest Krum scores (ties by index), ascending."""
    n = x.shape[0]
    if not (f >= 0 and 1 <= m <= n):
        raise AggregationError(f"multikrum needs f >= 0 and 1 <= m <= n, got f={f} m={m} n={n}")
    if n == 1:
        return (0,)
    neighbours = max(1, n - f - 2)
    d = _squared_distances(x)
    scores = []
    for i in range(n):
        others = sorted(d[i][j] for j in range(n) if j != i)
        scores.append((sum(others[:neighbours]), i))
    return tuple(sorted(i for _, i in sorted(scores)[:m]))


def compute_multikrum(
    updates: Sequence[Any], weights: Sequence[int] | None, f: int, m: int
) -> AggregateResult:
    """Multi-Krum: keep the ``m`` best-scored clients and average them by sample count."""
    x = _stack(updates)
    w = _weights(weights, x.shape[0])
    kept = compute_krum_selection(x, f, m)
    return AggregateResult(compute_weighted_mean(x, w, kept), kept)


def compute_trimmed_mean(updates: Sequence[Any], beta_ppm: int) -> AggregateResult:
    """Coordinate-wise trimmed mean; kept = clients inside the trim on >= half the coordinates."""
    x = _stack(updates)
    n, dim = x.shape
    if not 0 <= beta_ppm < PPM // 2:
        raise AggregationError(f"beta_ppm {beta_ppm} outside [0, {PPM // 2})")
    k = beta_ppm * n // PPM
    if 2 * k >= n:
        raise AggregationError(f"trimming {k} from each end leaves none of {n} clients")
    values, order = torch.sort(x, dim=0, stable=True)
    vector = values[k : n - k].mean(dim=0).to(torch.float32)
    inside = torch.bincount(order[k : n - k].reshape(-1), minlength=n)
    kept = tuple(i for i in range(n) if 2 * int(inside[i]) >= dim)
    return AggregateResult(vector, kept)


def compute_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two vectors in float64 (0.0 when either is zero)."""
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    norm = float(torch.linalg.vector_norm(a64)) * float(torch.linalg.vector_norm(b64))
    return float((a64 * b64).sum()) / norm if norm > 0 else 0.0


def is_attacked_round(
    updates: Sequence[Any], previous: Sequence[Any | None] | None, cosine_min_ppm: int
) -> bool:
    """Seed 002's cross-round check: True if any client's cosine to its previous update is low.

    True when there is no history at all (the first round is always checked).
    """
    if previous is None or all(p is None for p in previous):
        return True
    if len(previous) != len(updates):
        raise AggregationError("previous updates must be one entry (or None) per client")
    threshold = cosine_min_ppm / PPM
    for u, p in zip(updates, previous, strict=True):
        if p is None:
            return True
        cosine = compute_cosine(torch.as_tensor(np.asarray(u)), torch.as_tensor(np.asarray(p)))
        if cosine < threshold:
            return True
    return False


def compute_three_sigma(
    updates: Sequence[Any],
    weights: Sequence[int] | None,
    k_sigma_ppm: int = PPM,
    cosine_min_ppm: int = 0,
    previous: Sequence[Any | None] | None = None,
) -> AggregateResult:
    """Seed 002's two-stage outlier removal, then a sample-weighted mean of the kept clients."""
    x = _stack(updates)
    n = x.shape[0]
    w = _weights(weights, n)
    everyone = tuple(range(n))
    if n < 3 or not is_attacked_round(updates, previous, cosine_min_ppm):
        return AggregateResult(compute_weighted_mean(x, w, everyone), everyone)
    centre_ids = compute_krum_selection(x, max(0, (n - 3) // 2), (n + 1) // 2)
    centre = x[list(centre_ids)].mean(dim=0)
    dist = [float(torch.linalg.vector_norm(x[i] - centre)) for i in range(n)]
    mu = sum(dist) / n
    sigma = (sum((d - mu) ** 2 for d in dist) / (n - 1)) ** 0.5
    bound = mu + sigma * k_sigma_ppm / PPM
    kept = tuple(i for i in range(n) if dist[i] <= bound)
    return AggregateResult(compute_weighted_mean(x, w, kept), kept)


def compute_aggregate(
    spec: AggregationSpec,
    updates: Sequence[Any],
    weights: Sequence[int] | None = None,
    previous: Sequence[Any | None] | None = None,
) -> AggregateResult:
    """Apply the rule named by ``spec``; ``previous`` (last round's updates) feeds three_sigma."""
    if spec.rule == "fedavg":
        return compute_fedavg(updates, weights)
    if spec.rule == "multikrum":
        return compute_multikrum(updates, weights, spec.f, spec.m)
    if spec.rule == "trimmed_mean":
        return compute_trimmed_mean(updates, spec.beta_ppm)
    if spec.rule == "three_sigma":
        return compute_three_sigma(
            updates, weights, spec.k_sigma_ppm, spec.cosine_min_ppm, previous
        )
    raise AggregationError(f"unknown aggregation rule {spec.rule!r}")
