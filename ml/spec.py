"""Training job specification: parse, validate, encode and hash.

A buyer's job names the data assets (one federated client each), a model from
the allow-list in :mod:`ml.models` with bounded parameters, the metric, the
target threshold ``tau`` (ppm), the bid (integer base units), the training
schedule, the aggregation rule, the contribution method and the execution
profile that executors pin (threads and CPU instruction set).

No float is ever held in a spec: the learning rate is a decimal string in JSON
and an integer count of millionths (``lr_micro``) in the spec and its bytes.
Every field is bounded, and every bad field raises :class:`SpecError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consensus import codec
from consensus.crypto import compute_hash_parts

SPEC_VERSION = 1
SPEC_DOMAIN = b"dmchain/ml/jobspec/v1"
ASSET_ID_SIZE = 32
PPM = 1_000_000

MAX_JSON_SIZE = 64 * 1024
MAX_DATASETS = 32
MAX_ROUNDS = 100
MAX_LOCAL_EPOCHS = 20
MAX_BATCH_SIZE = 1024
MAX_LR_MICRO = 10_000_000  # learning rate at most 10.0
MAX_BID = 2**128 - 1
MAX_SEED = 2**63 - 1
MAX_SAMPLES = 1000  # permutations for the sampled Shapley estimate
MAX_THREADS = 64
MAX_MLP_LAYERS = 3
MAX_MLP_WIDTH = 512
MAX_CNN_LAYERS = 2
MAX_CNN_CHANNELS = 32
MAX_K_SIGMA_PPM = 10 * PPM

MODELS = ("logreg", "mlp", "cnn")
METRICS = ("accuracy", "macro_f1")
AGGREGATIONS = ("fedavg", "multikrum", "trimmed_mean", "three_sigma")
CONTRIBUTION_METHODS = ("loo", "sampled")
CPU_CAPABILITIES = ("default", "avx2", "avx512")


class SpecError(ValueError):
    """A job spec is malformed or out of bounds; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ModelSpec:
    """An allow-listed model: ``hidden`` are MLP widths or CNN channels (empty for logreg)."""

    name: str
    hidden: tuple[int, ...] = ()


@dataclass(frozen=True)
class AggregationSpec:
    """A robust aggregation rule and its integer parameters.

    ``f``/``m``: multi-Krum's assumed Byzantine count and number selected.
    ``beta_ppm``: trimmed-mean fraction cut from each end per coordinate.
    ``k_sigma_ppm``: three-sigma boundary ``mu + k * sigma`` (seed 002 uses k = 1).
    ``cosine_min_ppm``: cross-round cosine below which a round counts as attacked.
    """

    rule: str
    f: int = 0
    m: int = 0
    beta_ppm: int = 0
    k_sigma_ppm: int = PPM
    cosine_min_ppm: int = 200_000


@dataclass(frozen=True)
class ContributionSpec:
    """Contribution method: ``loo`` (leave-one-out) or ``sampled`` (permutation Shapley)."""

    method: str
    samples: int = 0


@dataclass(frozen=True)
class ExecutionProfile:
    """What every executor pins: intra-op thread count and CPU instruction set."""

    threads: int = 1
    cpu_capability: str = "avx2"


@dataclass(frozen=True)
class JobSpec:
    """A validated training job; build it with :func:`parse_spec_json` or :func:`decode_spec`."""

    datasets: tuple[bytes, ...]
    model: ModelSpec
    metric: str
    tau_ppm: int
    bid: int
    rounds: int
    local_epochs: int
    lr_micro: int
    batch_size: int
    seed: int
    aggregation: AggregationSpec
    contribution: ContributionSpec
    profile: ExecutionProfile = ExecutionProfile()


# ---------------------------------------------------------------- field checks


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise SpecError(field, f"{value} is outside [{low}, {high}]")
    return value


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(field, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _mapping(field: str, value: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(field, f"must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SpecError(field, f"unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(required - set(value))
    if missing:
        raise SpecError(field, f"missing key(s) {', '.join(map(repr, missing))}")
    return value


def compute_lr_micro(text: Any) -> int:
    """Parse a decimal learning-rate string such as ``"0.05"`` into millionths.

    Accepts digits with an optional point and at most six decimals; the result
    lies in [1, MAX_LR_MICRO]. Raises SpecError otherwise (floats are refused).
    """
    field = "learning_rate"
    if not isinstance(text, str):
        raise SpecError(field, f"must be a decimal string like \"0.05\", got {type(text).__name__}")
    whole, dot, frac = text.partition(".")
    if not whole.isascii() or not whole.isdigit() or (dot and not frac) or len(whole) > 3:
        raise SpecError(field, f"{text!r} is not a plain decimal")
    if frac and (not frac.isascii() or not frac.isdigit() or len(frac) > 6):
        raise SpecError(field, f"{text!r} must have at most 6 decimal digits")
    value = int(whole) * PPM + int(frac.ljust(6, "0") or "0")
    return _int(field, value, 1, MAX_LR_MICRO)


def format_lr(lr_micro: int) -> str:
    """Return the canonical decimal string of a learning rate held in millionths."""
    whole, frac = divmod(lr_micro, PPM)
    text = f"{whole}.{frac:06d}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _asset_id(field: str, value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * ASSET_ID_SIZE:
        raise SpecError(field, f"must be {2 * ASSET_ID_SIZE} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise SpecError(field, "is not hex") from exc


def _model(value: Any) -> ModelSpec:
    if isinstance(value, str):
        value = {"name": value}
    obj = _mapping("model", value, {"name", "hidden", "channels"}, {"name"})
    name = _choice("model.name", obj["name"], MODELS)
    if name == "logreg":
        if "hidden" in obj or "channels" in obj:
            raise SpecError("model", "logreg takes no parameters")
        return ModelSpec(name)
    key, max_layers, max_width = (
        ("hidden", MAX_MLP_LAYERS, MAX_MLP_WIDTH)
        if name == "mlp"
        else ("channels", MAX_CNN_LAYERS, MAX_CNN_CHANNELS)
    )
    other = "channels" if key == "hidden" else "hidden"
    if other in obj:
        raise SpecError(f"model.{other}", f"not a parameter of {name}")
    widths = obj.get(key, [32] if name == "mlp" else [8, 16])
    if not isinstance(widths, list) or not 1 <= len(widths) <= max_layers:
        raise SpecError(f"model.{key}", f"must be a list of 1 to {max_layers} integers")
    return ModelSpec(
        name, tuple(_int(f"model.{key}[{i}]", w, 1, max_width) for i, w in enumerate(widths))
    )


def _aggregation(value: Any, n_datasets: int) -> AggregationSpec:
    if isinstance(value, str):
        value = {"rule": value}
    keys = {"rule", "f", "m", "beta_ppm", "k_sigma_ppm", "cosine_min_ppm"}
    obj = _mapping("aggregation", value, keys, {"rule"})
    rule = _choice("aggregation.rule", obj["rule"], AGGREGATIONS)
    allowed = {
        "fedavg": set(),
        "multikrum": {"f", "m"},
        "trimmed_mean": {"beta_ppm"},
        "three_sigma": {"k_sigma_ppm", "cosine_min_ppm"},
    }[rule]
    extra = sorted(set(obj) - allowed - {"rule"})
    if extra:
        raise SpecError(f"aggregation.{extra[0]}", f"not a parameter of {rule}")
    n = n_datasets
    if rule == "multikrum":
        f_max = max(0, (n - 3) // 2)
        f = _int("aggregation.f", obj.get("f", min(1, f_max)), 0, f_max)
        m = _int("aggregation.m", obj.get("m", n - f), 1, n)
        return AggregationSpec(rule, f=f, m=m)
    if rule == "trimmed_mean":
        beta = _int("aggregation.beta_ppm", obj.get("beta_ppm", 200_000), 0, PPM // 2 - 1)
        if 2 * (beta * n // PPM) >= n:
            raise SpecError("aggregation.beta_ppm", f"trims every one of {n} clients")
        return AggregationSpec(rule, beta_ppm=beta)
    if rule == "three_sigma":
        k = _int("aggregation.k_sigma_ppm", obj.get("k_sigma_ppm", PPM), 0, MAX_K_SIGMA_PPM)
        cos = _int("aggregation.cosine_min_ppm", obj.get("cosine_min_ppm", 200_000), -PPM, PPM)
        return AggregationSpec(rule, k_sigma_ppm=k, cosine_min_ppm=cos)
    return AggregationSpec(rule)


def _contribution(value: Any) -> ContributionSpec:
    if isinstance(value, str):
        value = {"method": value}
    obj = _mapping("contribution", value, {"method", "samples"}, {"method"})
    method = _choice("contribution.method", obj["method"], CONTRIBUTION_METHODS)
    if method == "loo":
        if "samples" in obj:
            raise SpecError("contribution.samples", "not a parameter of loo")
        return ContributionSpec(method)
    return ContributionSpec(
        method, _int("contribution.samples", obj.get("samples", 20), 1, MAX_SAMPLES)
    )


def _profile(value: Any) -> ExecutionProfile:
    obj = _mapping("profile", value, {"threads", "cpu_capability"}, set())
    default = ExecutionProfile()
    return ExecutionProfile(
        threads=_int("profile.threads", obj.get("threads", default.threads), 1, MAX_THREADS),
        cpu_capability=_choice(
            "profile.cpu_capability",
            obj.get("cpu_capability", default.cpu_capability),
            CPU_CAPABILITIES,
        ),
    )


_TOP_KEYS = {
    "version", "datasets", "model", "metric", "tau_ppm", "bid", "rounds", "local_epochs",
    "learning_rate", "batch_size", "seed", "aggregation", "contribution", "profile",
}
_REQUIRED = {"datasets", "model", "tau_ppm", "bid", "rounds", "learning_rate", "seed"}


def compute_spec_from_obj(obj: Any) -> JobSpec:
    """Validate a decoded JSON object and return the JobSpec; raises SpecError per bad field."""
    obj = _mapping("spec", obj, _TOP_KEYS, _REQUIRED)
    _int("version", obj.get("version", SPEC_VERSION), SPEC_VERSION, SPEC_VERSION)
    raw_ids = obj["datasets"]
    if not isinstance(raw_ids, list) or not 1 <= len(raw_ids) <= MAX_DATASETS:
        raise SpecError("datasets", f"must be a list of 1 to {MAX_DATASETS} asset ids")
    ids = tuple(_asset_id(f"datasets[{i}]", v) for i, v in enumerate(raw_ids))
    if len(set(ids)) != len(ids):
        raise SpecError("datasets", "lists the same asset twice")
    return JobSpec(
        datasets=ids,
        model=_model(obj["model"]),
        metric=_choice("metric", obj.get("metric", "accuracy"), METRICS),
        tau_ppm=_int("tau_ppm", obj["tau_ppm"], 0, PPM),
        bid=_int("bid", obj["bid"], 1, MAX_BID),
        rounds=_int("rounds", obj["rounds"], 1, MAX_ROUNDS),
        local_epochs=_int("local_epochs", obj.get("local_epochs", 1), 1, MAX_LOCAL_EPOCHS),
        lr_micro=compute_lr_micro(obj["learning_rate"]),
        batch_size=_int("batch_size", obj.get("batch_size", 32), 1, MAX_BATCH_SIZE),
        seed=_int("seed", obj["seed"], 0, MAX_SEED),
        aggregation=_aggregation(obj.get("aggregation", "fedavg"), len(ids)),
        contribution=_contribution(obj.get("contribution", "loo")),
        profile=_profile(obj.get("profile", {})),
    )


def parse_spec_json(text: str | bytes) -> JobSpec:
    """Parse a JSON job spec; raises SpecError (never another exception) on bad input."""
    if len(text) > MAX_JSON_SIZE:
        raise SpecError("spec", f"JSON is {len(text)} bytes, limit {MAX_JSON_SIZE}")
    try:
        obj = json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_float)
    except SpecError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8
        raise SpecError("spec", f"not valid JSON: {exc}") from exc
    return compute_spec_from_obj(obj)


def _refuse_float(text: str) -> Any:
    raise SpecError("spec", f"floats are not allowed ({text}); use integers or decimal strings")


def compute_spec_json(spec: JobSpec) -> dict[str, Any]:
    """Return the JSON object form of ``spec`` (parse_spec_json round-trips it)."""
    model: dict[str, Any] = {"name": spec.model.name}
    if spec.model.name == "mlp":
        model["hidden"] = list(spec.model.hidden)
    elif spec.model.name == "cnn":
        model["channels"] = list(spec.model.hidden)
    agg = spec.aggregation
    aggregation: dict[str, Any] = {"rule": agg.rule}
    if agg.rule == "multikrum":
        aggregation.update(f=agg.f, m=agg.m)
    elif agg.rule == "trimmed_mean":
        aggregation.update(beta_ppm=agg.beta_ppm)
    elif agg.rule == "three_sigma":
        aggregation.update(k_sigma_ppm=agg.k_sigma_ppm, cosine_min_ppm=agg.cosine_min_ppm)
    contribution: dict[str, Any] = {"method": spec.contribution.method}
    if spec.contribution.method == "sampled":
        contribution["samples"] = spec.contribution.samples
    return {
        "version": SPEC_VERSION,
        "datasets": [d.hex() for d in spec.datasets],
        "model": model,
        "metric": spec.metric,
        "tau_ppm": spec.tau_ppm,
        "bid": spec.bid,
        "rounds": spec.rounds,
        "local_epochs": spec.local_epochs,
        "learning_rate": format_lr(spec.lr_micro),
        "batch_size": spec.batch_size,
        "seed": spec.seed,
        "aggregation": aggregation,
        "contribution": contribution,
        "profile": {
            "threads": spec.profile.threads,
            "cpu_capability": spec.profile.cpu_capability,
        },
    }


def encode_spec(spec: JobSpec) -> bytes:
    """Return the canonical bytes of ``spec`` (integers, strings and ids only)."""
    obj = compute_spec_json(spec)
    obj["datasets"] = list(spec.datasets)
    obj["learning_rate"] = spec.lr_micro
    return codec.encode(obj)


def decode_spec(data: bytes) -> JobSpec:
    """Decode canonical spec bytes; raises SpecError unless they re-encode identically."""
    try:
        obj = codec.decode(data, max_size=MAX_JSON_SIZE)
    except codec.CodecError as exc:
        raise SpecError("spec", f"bad encoding: {exc}") from exc
    if not isinstance(obj, dict):
        raise SpecError("spec", "encoding is not a map")
    ids = obj.get("datasets")
    lr = obj.get("learning_rate")
    if not isinstance(ids, list) or not all(isinstance(d, bytes) for d in ids):
        raise SpecError("datasets", "must be a list of byte strings")
    if isinstance(lr, bool) or not isinstance(lr, int) or lr < 0:
        raise SpecError("learning_rate", "must be a non-negative integer of millionths")
    obj["datasets"] = [d.hex() for d in ids]
    obj["learning_rate"] = format_lr(lr)
    spec = compute_spec_from_obj(obj)
    if encode_spec(spec) != bytes(data):
        raise SpecError("spec", "encoding is not canonical")
    return spec


def compute_spec_hash(spec: JobSpec) -> bytes:
    """Return the 32-byte hash that identifies ``spec`` on chain (domain-separated SHA-256)."""
    return compute_hash_parts(SPEC_DOMAIN, encode_spec(spec))
