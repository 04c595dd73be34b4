"""The result of a training job: integers plus canonical weight bytes (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobResult:
    """Everything an executor reports; all integers except the weight bytes."""

    spec_hash: bytes
    weights: bytes  # ml.models.encode_weights of the final model
    metric_ppm: int  # final model on the validation set
    round_metrics_ppm: tuple[int, ...]
    kept: tuple[tuple[int, ...], ...]  # per round, ascending provider indices
    round_contributions_ppm: tuple[tuple[int, ...], ...]  # per round, per provider
    contributions_ppm: tuple[int, ...]  # per provider, summed over rounds

    def get_kept_counts(self) -> list[int]:
        """Return, per provider, in how many rounds its update was kept."""
        counts = [0] * len(self.contributions_ppm)
        for kept in self.kept:
            for i in kept:
                counts[i] += 1
        return counts
