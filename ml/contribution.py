"""Per-round contribution of each client, in integer ppm of the metric.

Contributions are retrain-free (seed 002): a *utility* maps a set of clients
to the metric (ppm), on the buyer's validation data, of the round's starting
model plus the sum of those clients' *terms*. A kept client's term is its
update times ``n_i / N_kept`` (so the kept set's terms sum to the sample-weighted
mean the robust rules use); an excluded client's term is its update times
``n_i / (N_kept + n_i)``, the weight it would have had. Removing a client
therefore removes exactly its term, without re-weighting the others. The
runner supplies the utility; this module only decides which sets to evaluate
and combines the integers.

- ``loo`` against the kept set ``S``: a kept client scores
  ``u(S) - u(S - {i})``; an excluded client scores ``u(S + {i}) - u(S)``, the
  change its update would have caused. Both are the client's marginal effect
  on the aggregate actually used, so a harmful update scores negative.
- ``sampled``: permutation-sampled Shapley value over all clients; each
  permutation comes from :func:`ml.seeding.compute_permutation` with a seed
  derived from the job seed, and the mean marginal is floored to an integer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ml.seeding import compute_permutation, compute_subseed

Utility = Callable[[tuple[int, ...]], int]
MAX_EVALUATIONS = 100_000


class ContributionError(ValueError):
    """Bad contribution parameters (no clients, kept index out of range...)."""


def compute_cached_utility(utility: Utility) -> Utility:
    """Wrap ``utility`` so each distinct client set is evaluated once (keys are sorted tuples)."""
    cache: dict[tuple[int, ...], int] = {}

    def cached(subset: tuple[int, ...]) -> int:
        key = tuple(sorted(subset))
        if key not in cache:
            if len(cache) >= MAX_EVALUATIONS:
                raise ContributionError(f"more than {MAX_EVALUATIONS} utility evaluations")
            cache[key] = utility(key)
        return cache[key]

    return cached


def compute_loo(utility: Utility, n: int, kept: Sequence[int]) -> list[int]:
    """Leave-one-out marginals of all ``n`` clients against the kept set (see module doc)."""
    if n < 1 or any(not 0 <= i < n for i in kept) or len(set(kept)) != len(kept):
        raise ContributionError(f"kept {list(kept)} is not a set of indices below {n}")
    u = compute_cached_utility(utility)
    base = tuple(sorted(kept))
    u_base = u(base)
    out = []
    for i in range(n):
        if i in base:
            out.append(u_base - u(tuple(j for j in base if j != i)))
        else:
            out.append(u((*base, i)) - u_base)
    return out


def compute_sampled_shapley(utility: Utility, n: int, samples: int, seed: int) -> list[int]:
    """Permutation-sampled Shapley values (integer floor of the mean marginal) of ``n`` clients."""
    if n < 1 or samples < 1:
        raise ContributionError(f"need n >= 1 and samples >= 1, got n={n} samples={samples}")
    u = compute_cached_utility(utility)
    totals = [0] * n
    for s in range(samples):
        order = compute_permutation(compute_subseed(seed, "shapley", s), n)
        coalition: list[int] = []
        previous = u(())
        for i in order:
            coalition.append(i)
            current = u(tuple(coalition))
            totals[i] += current - previous
            previous = current
    return [t // samples for t in totals]
