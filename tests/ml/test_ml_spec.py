"""Job spec parsing, bounds, canonical encoding and hashing."""

from __future__ import annotations

import json

import pytest
from ml_helpers import asset_ids, make_spec, spec_obj

from consensus import codec
from ml.spec import (
    MAX_DATASETS,
    SpecError,
    compute_lr_micro,
    compute_spec_hash,
    compute_spec_json,
    decode_spec,
    encode_spec,
    format_lr,
    parse_spec_json,
)


def parse(**overrides: object) -> object:
    return parse_spec_json(json.dumps(spec_obj(**overrides)))


def test_valid_spec_round_trips_through_json_and_bytes() -> None:
    spec = make_spec(model={"name": "mlp", "hidden": [32, 16]}, contribution={
        "method": "sampled", "samples": 12})
    assert spec.model.hidden == (32, 16)
    assert spec.lr_micro == 500_000
    assert parse_spec_json(json.dumps(compute_spec_json(spec))) == spec
    assert decode_spec(encode_spec(spec)) == spec
    assert len(compute_spec_hash(spec)) == 32


def test_hash_changes_with_any_field() -> None:
    base = compute_spec_hash(make_spec())
    assert compute_spec_hash(make_spec(seed=8)) != base
    assert compute_spec_hash(make_spec(learning_rate="0.50001")) != base
    assert compute_spec_hash(make_spec(learning_rate="0.500000")) == base


def test_spec_bytes_hold_no_float() -> None:
    obj = codec.decode(encode_spec(make_spec()))
    assert obj["learning_rate"] == 500_000


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "resnet"}, "model.name"),
        ({"model": {"name": "mlp", "hidden": [4096]}}, "model.hidden[0]"),
        ({"model": {"name": "mlp", "hidden": [8, 8, 8, 8]}}, "model.hidden"),
        ({"model": {"name": "cnn", "channels": [8, 999]}}, "model.channels[1]"),
        ({"model": {"name": "logreg", "hidden": [8]}}, "model"),
        ({"model": {"name": "mlp", "code": "import os"}}, "model"),
        ({"datasets": ["zz" * 32, *asset_ids(4)]}, "datasets[0]"),
        ({"datasets": ["ab" * 31]}, "datasets[0]"),
        ({"datasets": []}, "datasets"),
        ({"datasets": asset_ids(MAX_DATASETS + 1)}, "datasets"),
        ({"datasets": asset_ids(2) * 2 + asset_ids(1)}, "datasets"),
        ({"bid": "100"}, "bid"),
        ({"bid": True}, "bid"),
        ({"bid": 0}, "bid"),
        ({"tau_ppm": 1_000_001}, "tau_ppm"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": 101}, "rounds"),
        ({"batch_size": 4096}, "batch_size"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"learning_rate": "0.0000001"}, "learning_rate"),
        ({"learning_rate": "0"}, "learning_rate"),
        ({"learning_rate": "11"}, "learning_rate"),
        ({"metric": "auc"}, "metric"),
        ({"aggregation": "median"}, "aggregation.rule"),
        ({"aggregation": {"rule": "multikrum", "f": 2}}, "aggregation.f"),
        ({"aggregation": {"rule": "multikrum", "m": 6}}, "aggregation.m"),
        ({"aggregation": {"rule": "fedavg", "f": 1}}, "aggregation.f"),
        ({"aggregation": {"rule": "trimmed_mean", "beta_ppm": 500_000}}, "aggregation.beta_ppm"),
        ({"aggregation": {"rule": "three_sigma", "cosine_min_ppm": 2_000_000}},
         "aggregation.cosine_min_ppm"),
        ({"contribution": {"method": "sampled", "samples": 0}}, "contribution.samples"),
        ({"contribution": "exact_shapley"}, "contribution.method"),
        ({"profile": {"threads": 0}}, "profile.threads"),
        ({"profile": {"cpu_capability": "neon"}}, "profile.cpu_capability"),
        ({"extra": 1}, "spec"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_field_is_named(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(**overrides)
    assert info.value.field == field, str(info.value)


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{", '{"bid": 1.5}', "\xff", json.dumps(spec_obj(bid=1e6)), "x" * 70_000],
)
def test_malformed_json_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError):
        parse_spec_json(text)


def test_missing_required_field() -> None:
    obj = spec_obj()
    del obj["bid"]
    with pytest.raises(SpecError, match="missing key"):
        parse_spec_json(json.dumps(obj))


def test_decode_refuses_garbage_and_non_canonical_bytes() -> None:
    with pytest.raises(SpecError):
        decode_spec(b"\x07\x01")
    obj = codec.decode(encode_spec(make_spec()))
    obj["learning_rate"] = -1
    with pytest.raises(SpecError):
        decode_spec(codec.encode(obj))


def test_learning_rate_decimal_parsing() -> None:
    assert compute_lr_micro("0.05") == 50_000
    assert compute_lr_micro("1") == 1_000_000
    assert compute_lr_micro("0.000001") == 1
    for lr in (1, 50_000, 500_000, 1_000_000, 1_234_567):
        assert compute_lr_micro(format_lr(lr)) == lr
    with pytest.raises(SpecError):
        compute_lr_micro(0.05)
    with pytest.raises(SpecError):
        compute_lr_micro("-0.1")
    with pytest.raises(SpecError):
        compute_lr_micro("1.")
