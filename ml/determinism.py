"""Pin torch so that independent executors produce bit-identical results.

Measured (ARCHITECTURE.md §6): with fixed seeds, deterministic algorithms and a
fixed thread count, torch 2.13 CPU training is bit-for-bit reproducible across
processes; the thread count and the CPU instruction set (``ATEN_CPU_CAPABILITY``
for ATen kernels, ``MKL_CBWR`` for MKL) change the bytes. Those variables are
read when torch loads, so the executor starts a fresh interpreter with
:func:`compute_execution_env` and that process calls :func:`check_pinned`
before any work, then :func:`process_pin_torch`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ml.spec import ExecutionProfile

_MKL_CBWR = {"default": "COMPATIBLE", "avx2": "AVX2", "avx512": "AVX512"}


class DeterminismError(RuntimeError):
    """The process is not pinned to the execution profile, so its results would not agree."""


def compute_execution_env(profile: ExecutionProfile) -> dict[str, str]:
    """Return the environment variables an executor subprocess must start with.

    Merge them over the parent's environment before launching the interpreter;
    torch reads them only at import time.
    """
    threads = str(profile.threads)
    return {
        "ATEN_CPU_CAPABILITY": profile.cpu_capability,
        "MKL_CBWR": _MKL_CBWR[profile.cpu_capability],
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONHASHSEED": "0",
    }


def get_environment_report(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return what this process runs with: pinning variables, torch's CPU capability, threads."""
    env = os.environ if environ is None else environ
    report = {key: env.get(key, "<unset>") for key in compute_execution_env(ExecutionProfile())}
    report["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability().lower()
    report["torch_num_threads"] = str(torch.get_num_threads())
    report["torch_version"] = torch.__version__
    return report


def get_pinning_errors(
    profile: ExecutionProfile, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Return one message per way this process differs from ``profile`` (empty when pinned)."""
    env = os.environ if environ is None else environ
    errors = [
        f"{key}={env.get(key, '<unset>')!s}, profile requires {want}"
        for key, want in compute_execution_env(profile).items()
        if env.get(key) != want
    ]
    actual = torch.backends.cpu.get_cpu_capability().lower()
    if actual != profile.cpu_capability:
        errors.append(
            f"torch runs {actual} kernels, profile requires {profile.cpu_capability} "
            "(the CPU may lack it, or torch was imported before the variable was set)"
        )
    return errors


def check_pinned(profile: ExecutionProfile, environ: Mapping[str, str] | None = None) -> None:
    """Raise DeterminismError listing every mismatch unless the process is pinned to ``profile``."""
    errors = get_pinning_errors(profile, environ)
    if errors:
        raise DeterminismError(
            "environment not pinned to the job's execution profile: " + "; ".join(errors)
        )


def process_pin_torch(profile: ExecutionProfile, seed: int) -> None:
    """Turn on deterministic algorithms, fix the intra-op thread count, and seed torch."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(profile.threads)
    torch.manual_seed(seed)
