"""Executor process: run one job from files, in a fresh pinned interpreter.

The executor service launches ``python -m ml.worker`` with
:func:`compute_worker_env` (its environment plus the profile's pinning
variables, which torch reads only at import) and :func:`compute_worker_command`.
The process refuses to train unless it is pinned to the spec's execution
profile, then writes the canonical result record (:func:`ml.digest.encode_result`)
and prints the result digest in hex.

Exit status: 0 done; 2 bad input (spec, dataset, job); 3 environment not
pinned. The reason is printed on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ml.data import MAX_BYTES, DatasetError, decode_dataset
from ml.determinism import DeterminismError, check_pinned, compute_execution_env
from ml.digest import compute_result_digest, encode_result
from ml.runner import JobError, process_job
from ml.spec import MAX_JSON_SIZE, ExecutionProfile, SpecError, decode_spec

EXIT_BAD_INPUT = 2
EXIT_NOT_PINNED = 3


def compute_worker_env(
    profile: ExecutionProfile, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return ``base`` (default: this process's environment) with the profile's pins set."""
    env = dict(os.environ if base is None else base)
    env.update(compute_execution_env(profile))
    return env


def compute_worker_command(
    spec_path: str, provider_paths: Sequence[str], validation_path: str, out_path: str,
    python: str = sys.executable,
) -> list[str]:
    """Return the argv that runs one job (providers in the spec's dataset order)."""
    argv = [python, "-m", "ml.worker", "--spec", spec_path, "--validation", validation_path]
    for path in provider_paths:
        argv += ["--provider", path]
    return [*argv, "--out", out_path]


def _read(path: str, limit: int) -> bytes:
    size = Path(path).stat().st_size
    if size > limit:
        raise DatasetError(f"{path} is {size} bytes, limit {limit}")
    return Path(path).read_bytes()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by ``argv``; returns the exit status (see module doc)."""
    parser = argparse.ArgumentParser(prog="python -m ml.worker", description=__doc__)
    parser.add_argument("--spec", required=True, help="canonical spec bytes (ml.spec.encode_spec)")
    parser.add_argument("--provider", action="append", default=[], help="provider dataset file")
    parser.add_argument("--validation", required=True, help="buyer's validation dataset file")
    parser.add_argument("--out", required=True, help="where to write the result record")
    args = parser.parse_args(argv)
    try:
        spec = decode_spec(_read(args.spec, MAX_JSON_SIZE))
        check_pinned(spec.profile)
        providers = [decode_dataset(_read(p, MAX_BYTES)) for p in args.provider]
        validation = decode_dataset(_read(args.validation, MAX_BYTES))
        result = process_job(spec, providers, validation)
    except DeterminismError as exc:
        print(f"ml.worker: refused: {exc}", file=sys.stderr)
        return EXIT_NOT_PINNED
    except (SpecError, DatasetError, JobError, OSError) as exc:
        print(f"ml.worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    Path(args.out).write_bytes(encode_result(result))
    print(compute_result_digest(result).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
