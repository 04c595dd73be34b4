"""Executors in separate pinned processes agree on the digest; unpinned ones refuse."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ml_helpers import get_split, make_spec

from ml.data import encode_dataset
from ml.determinism import compute_execution_env, get_pinning_errors
from ml.digest import compute_result_digest, decode_result
from ml.spec import encode_spec
from ml.worker import EXIT_BAD_INPUT, EXIT_NOT_PINNED, compute_worker_command, compute_worker_env

ROOT = Path(__file__).resolve().parents[2]


def write_job(tmp: Path, spec) -> tuple[str, list[str], str]:
    split = get_split()
    spec_path = tmp / "spec.bin"
    spec_path.write_bytes(encode_spec(spec))
    providers = []
    for i, ds in enumerate(split.providers):
        path = tmp / f"provider{i}.ds"
        path.write_bytes(encode_dataset(ds))
        providers.append(str(path))
    validation = tmp / "validation.ds"
    validation.write_bytes(encode_dataset(split.validation))
    return str(spec_path), providers, str(validation)


def clean_env() -> dict[str, str]:
    pins = compute_execution_env(make_spec().profile)
    return {k: v for k, v in os.environ.items() if k not in pins}


def test_two_pinned_executor_processes_produce_the_same_digest(tmp_path: Path) -> None:
    spec = make_spec(rounds=3, model={"name": "mlp", "hidden": [16]},
                     aggregation={"rule": "three_sigma"})
    spec_path, providers, validation = write_job(tmp_path, spec)
    env = compute_worker_env(spec.profile, clean_env())
    procs = []
    for name in ("a", "b"):
        cmd = compute_worker_command(spec_path, providers, validation, str(tmp_path / name))
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    digests = [out.strip() for out, _ in outputs]
    assert len(digests[0]) == 64 and digests[0] == digests[1]
    results = [decode_result((tmp_path / name).read_bytes()) for name in ("a", "b")]
    assert results[0] == results[1]
    assert compute_result_digest(results[0]).hex() == digests[0]
    assert results[0].metric_ppm > 500_000


def test_unpinned_executor_refuses_with_clear_error(tmp_path: Path) -> None:
    spec = make_spec(rounds=1)
    spec_path, providers, validation = write_job(tmp_path, spec)
    cmd = compute_worker_command(spec_path, providers, validation, str(tmp_path / "out"))
    env = clean_env()
    env["OMP_NUM_THREADS"] = "2"
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == EXIT_NOT_PINNED
    assert "not pinned" in proc.stderr and "ATEN_CPU_CAPABILITY" in proc.stderr
    assert "OMP_NUM_THREADS=2" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_executor_reports_bad_input(tmp_path: Path) -> None:
    spec = make_spec(rounds=1)
    spec_path, providers, validation = write_job(tmp_path, spec)
    Path(providers[0]).write_bytes(b"garbage")
    cmd = compute_worker_command(spec_path, providers, validation, str(tmp_path / "out"))
    proc = subprocess.run(cmd, env=compute_worker_env(spec.profile, clean_env()), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == EXIT_BAD_INPUT
    assert "DatasetError" in proc.stderr


def test_pinning_errors_list_each_mismatch() -> None:
    profile = make_spec().profile
    errors = get_pinning_errors(profile, {"MKL_CBWR": "AUTO"})
    assert any(e.startswith("MKL_CBWR=AUTO") for e in errors)
    assert any(e.startswith("ATEN_CPU_CAPABILITY=<unset>") for e in errors)
