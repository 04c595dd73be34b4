"""The deterministic runner: repeatability, poisoned-provider robustness, results and digests."""

from __future__ import annotations

import pytest
from ml_helpers import ATTACK_SCALE_PPM, POISONED, TAU_PPM, get_split, make_spec

from ml.digest import ResultError, compute_result_digest, decode_result, encode_result
from ml.models import decode_weights
from ml.quality import compute_quality
from ml.runner import JobError, process_job
from ml.settlement import compute_eligible, compute_settlement
from ml.spec import compute_spec_hash


def run(spec, attack: bool = True, providers=None):
    split = get_split()
    return process_job(
        spec,
        list(providers or split.providers),
        split.validation,
        random_updates={POISONED: ATTACK_SCALE_PPM} if attack else None,
    )


def test_same_job_twice_gives_identical_result_and_digest() -> None:
    spec = make_spec(rounds=3, model={"name": "mlp", "hidden": [16]})
    a, b = run(spec, attack=False), run(spec, attack=False)
    assert a == b
    assert compute_result_digest(a) == compute_result_digest(b)
    assert a.spec_hash == compute_spec_hash(spec)
    assert len(a.round_metrics_ppm) == 3 and a.metric_ppm == a.round_metrics_ppm[-1]
    assert sum(t.size for t in decode_weights(a.weights).values()) == 64 * 16 + 16 + 16 * 10 + 10
    c = run(make_spec(rounds=3, seed=8, model={"name": "mlp", "hidden": [16]}), attack=False)
    assert compute_result_digest(c) != compute_result_digest(a)


def test_result_record_round_trips_and_digest_covers_every_part() -> None:
    result = run(make_spec(rounds=2), attack=False)
    raw = encode_result(result)
    assert decode_result(raw) == result
    digest = compute_result_digest(result)
    from dataclasses import replace

    changed = [
        replace(result, metric_ppm=result.metric_ppm + 1),
        replace(result, contributions_ppm=(1, *result.contributions_ppm[1:])),
        replace(result, kept=((0,), *result.kept[1:])),
        replace(result, weights=result.weights[:-1] + bytes([result.weights[-1] ^ 1])),
        replace(result, spec_hash=bytes(32)),
    ]
    assert all(compute_result_digest(r) != digest for r in changed)
    with pytest.raises(ResultError):
        decode_result(raw[:-1])
    with pytest.raises(ResultError):
        decode_result(b"\x00")


@pytest.mark.parametrize(
    "aggregation",
    [{"rule": "multikrum", "f": 1, "m": 4}, {"rule": "three_sigma"}],
)
def test_poisoned_provider_is_excluded_scored_lowest_and_model_meets_tau(aggregation) -> None:
    robust = run(make_spec(aggregation=aggregation))
    plain = run(make_spec(aggregation="fedavg"))
    kept = robust.get_kept_counts()
    rounds = len(robust.kept)
    # excluded in most rounds; every honest provider kept in most rounds
    assert kept[POISONED] * 2 < rounds
    assert all(kept[i] * 2 >= rounds for i in range(5) if i != POISONED)
    contributions = robust.contributions_ppm
    assert contributions[POISONED] == min(contributions)
    assert all(contributions[POISONED] < c for i, c in enumerate(contributions) if i != POISONED)
    q = compute_quality(contributions)
    assert q[POISONED] == min(q) and all(q[POISONED] < v for i, v in enumerate(q) if i != POISONED)
    # robust aggregation meets the buyer's threshold, plain averaging does measurably worse
    assert robust.metric_ppm >= TAU_PPM
    assert plain.metric_ppm < TAU_PPM
    assert robust.metric_ppm - plain.metric_ppm >= 100_000
    # settlement: the poisoned provider is ineligible and gets nothing
    eligible = compute_eligible(kept, rounds)
    s = compute_settlement(1_000_000, robust.metric_ppm, TAU_PPM, [1, 1, 1], contributions,
                           eligible)
    assert s.met and s.provider_payouts[POISONED] == 0
    assert all(s.provider_payouts[i] > 0 for i in range(5) if i != POISONED)
    t = compute_settlement(1_000_000, plain.metric_ppm, TAU_PPM, [1, 1, 1],
                           plain.contributions_ppm)
    assert not t.met and t.buyer_refund == 700_000


def test_sampled_contribution_also_ranks_poisoned_provider_lowest() -> None:
    result = run(make_spec(rounds=4, contribution={"method": "sampled", "samples": 6}))
    assert result.contributions_ppm[POISONED] == min(result.contributions_ppm)


@pytest.mark.parametrize("model", [{"name": "cnn", "channels": [4]}, "logreg"])
def test_other_models_and_rules_run(model) -> None:
    for aggregation in ("trimmed_mean", "fedavg"):
        result = run(make_spec(rounds=2, model=model, aggregation=aggregation,
                               metric="macro_f1"), attack=False)
        assert 0 < result.metric_ppm <= 1_000_000


def test_runner_input_errors() -> None:
    split = get_split()
    with pytest.raises(JobError):
        process_job(make_spec(), list(split.providers[:4]), split.validation)
    with pytest.raises(JobError):
        process_job(make_spec(), list(split.providers), split.validation, random_updates={9: 1})
    with pytest.raises(JobError, match="NaN or infinity"):
        process_job(make_spec(rounds=1, aggregation="fedavg"), list(split.providers),
                    split.validation, random_updates={0: 10**45})


@pytest.mark.slow
@pytest.mark.parametrize("data_seed", [2, 3, 4])
def test_poison_robustness_across_data_splits(data_seed: int) -> None:
    split = get_split(seed=data_seed)
    attack = {POISONED: ATTACK_SCALE_PPM}
    robust = process_job(make_spec(), list(split.providers), split.validation, attack)
    plain = process_job(make_spec(aggregation="fedavg"), list(split.providers),
                        split.validation, attack)
    assert robust.get_kept_counts()[POISONED] * 2 < len(robust.kept)
    assert robust.contributions_ppm[POISONED] == min(robust.contributions_ppm)
    assert robust.metric_ppm > plain.metric_ppm
