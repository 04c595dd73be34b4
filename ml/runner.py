"""Run one training job deterministically.

Each provider's dataset is one federated client. Per round, in provider
order: load the global model, train ``local_epochs`` of mini-batch SGD with a
batch order from :func:`ml.seeding.compute_permutation`, and submit the update
(local minus global parameters). The spec's aggregation rule combines the
updates and names the kept clients; contributions are measured against the
round's starting model on the buyer's validation data (:mod:`ml.contribution`);
the aggregate is added to the global model and the new model is evaluated.

Inputs fix the output: same spec, same datasets, same pinned environment
(:mod:`ml.determinism`) give the same weight bytes, metrics, kept sets and
contributions. A job whose training produces NaN or infinity fails with a
:class:`JobError` (deterministically, so executors agree on the failure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ml.aggregate import AggregationError, compute_aggregate
from ml.contribution import compute_loo, compute_sampled_shapley
from ml.data import Dataset
from ml.determinism import process_pin_torch
from ml.metrics import compute_metric_ppm
from ml.models import build_model, encode_weights, get_vector, process_load_vector
from ml.result import JobResult
from ml.seeding import compute_permutation, compute_subseed
from ml.spec import PPM, JobSpec, compute_spec_hash


class JobError(ValueError):
    """The job cannot run on these inputs, or its training diverged."""


def _check_inputs(spec: JobSpec, providers: Sequence[Dataset], validation: Dataset) -> None:
    if len(providers) != len(spec.datasets):
        raise JobError(f"spec names {len(spec.datasets)} datasets, got {len(providers)}")
    for i, ds in enumerate(providers):
        if ds.features != validation.features or ds.classes != validation.classes:
            raise JobError(
                f"provider {i} has {ds.features} features / {ds.classes} classes, validation "
                f"has {validation.features} / {validation.classes}"
            )


def _train_local(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: JobSpec, round_no: int, client: int
) -> None:
    optimiser = torch.optim.SGD(model.parameters(), lr=spec.lr_micro / PPM)
    n = int(y.shape[0])
    model.train()
    for epoch in range(spec.local_epochs):
        order = torch.tensor(
            compute_permutation(compute_subseed(spec.seed, "batch", round_no, client, epoch), n),
            dtype=torch.int64,
        )
        for start in range(0, n, spec.batch_size):
            idx = order[start : start + spec.batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()


def _compute_terms(
    updates: list[torch.Tensor], sizes: list[int], kept: tuple[int, ...]
) -> list[torch.Tensor]:
    """Each client's term in the round's aggregate: ``n_i / N_kept * update_i`` if kept,
    ``n_i / (N_kept + n_i) * update_i`` (its weight had it been kept) otherwise."""
    n_kept = sum(sizes[i] for i in kept)
    terms = []
    for i, update in enumerate(updates):
        total = n_kept if i in kept else n_kept + sizes[i]
        terms.append(update.to(torch.float64) * (sizes[i] / max(1, total)))
    return terms


def _evaluate(model: nn.Module, vector: torch.Tensor, x: torch.Tensor, y: np.ndarray,
              metric: str, classes: int) -> int:
    process_load_vector(model, vector)
    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).numpy()
    return compute_metric_ppm(metric, predicted, y, classes)


def process_job(
    spec: JobSpec,
    providers: Sequence[Dataset],
    validation: Dataset,
    random_updates: Mapping[int, int] | None = None,
) -> JobResult:
    """Train the job and return its result; raises JobError on bad inputs or divergence.

    ``random_updates`` is for simulations only: it maps a provider index to a
    scale (ppm) and replaces that provider's update with seeded Gaussian noise
    of that per-coordinate standard deviation (a Byzantine client).
    """
    _check_inputs(spec, providers, validation)
    attacks = dict(random_updates or {})
    if any(not 0 <= i < len(providers) or s < 0 for i, s in attacks.items()):
        raise JobError("random_updates names an unknown provider or a negative scale")
    process_pin_torch(spec.profile, compute_subseed(spec.seed, "init"))
    features, classes = validation.features, validation.classes
    model = build_model(spec.model, features, classes)
    global_vector = get_vector(model)
    xs = [torch.from_numpy(ds.x.copy()) for ds in providers]
    ys = [torch.from_numpy(ds.y.copy()) for ds in providers]
    sizes = [ds.size for ds in providers]
    x_val = torch.from_numpy(validation.x.copy())
    y_val = validation.y

    previous: list[torch.Tensor] | None = None
    round_metrics: list[int] = []
    kept_sets: list[tuple[int, ...]] = []
    round_contributions: list[tuple[int, ...]] = []
    for r in range(spec.rounds):
        updates: list[torch.Tensor] = []
        for i in range(len(providers)):
            if i in attacks:
                gen = torch.Generator().manual_seed(compute_subseed(spec.seed, "attack", r, i))
                noise = torch.randn(global_vector.shape, generator=gen, dtype=torch.float32)
                updates.append(noise * (attacks[i] / PPM))
                continue
            process_load_vector(model, global_vector)
            _train_local(model, xs[i], ys[i], spec, r, i)
            updates.append(get_vector(model) - global_vector)
        try:
            result = compute_aggregate(spec.aggregation, updates, sizes, previous)
        except AggregationError as exc:
            raise JobError(f"round {r}: {exc}") from exc
        terms = _compute_terms(updates, sizes, result.kept)
        start = global_vector

        def utility(subset: tuple[int, ...], start: torch.Tensor = start,
                    terms: list[torch.Tensor] = terms) -> int:
            acc = torch.zeros(start.shape, dtype=torch.float64)
            for i in subset:
                acc += terms[i]
            vector = start + acc.to(torch.float32)
            return _evaluate(model, vector, x_val, y_val, spec.metric, classes)

        if spec.contribution.method == "loo":
            scores = compute_loo(utility, len(providers), result.kept)
        else:
            scores = compute_sampled_shapley(
                utility, len(providers), spec.contribution.samples,
                compute_subseed(spec.seed, "contribution", r),
            )
        global_vector = start + result.vector
        round_metrics.append(_evaluate(model, global_vector, x_val, y_val, spec.metric, classes))
        kept_sets.append(result.kept)
        round_contributions.append(tuple(scores))
        previous = updates

    process_load_vector(model, global_vector)
    totals = tuple(sum(rc[i] for rc in round_contributions) for i in range(len(providers)))
    return JobResult(
        spec_hash=compute_spec_hash(spec),
        weights=encode_weights(model),
        metric_ppm=round_metrics[-1],
        round_metrics_ppm=tuple(round_metrics),
        kept=tuple(kept_sets),
        round_contributions_ppm=tuple(round_contributions),
        contributions_ppm=totals,
    )
