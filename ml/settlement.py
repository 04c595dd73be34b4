"""Integer split of a job's bid (seed 001's 30/70 split, seed 002's reward, seed 004's refund).

- The executor part, ``bid * executor_share_ppm // 1_000_000``, always goes to
  the executors, split in proportion to their participation counts.
- The data part (the rest) goes to the providers only when the model meets
  the buyer's threshold (``metric_ppm >= tau_ppm``); otherwise, or when no
  provider is eligible, it is refunded to the buyer.
- Among eligible providers, ``fixed_share_ppm`` of the data part is split
  equally (participation), and the rest in proportion to positive
  contribution ``max(0, c_i)`` (equally if no contribution is positive).
  Ineligible providers (e.g. excluded as outliers in most rounds) get nothing.

Every split uses the largest-remainder method with ties to the lower index,
so each part is paid out exactly: refund + executors + providers == bid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ml.spec import MAX_BID, PPM

MAX_PARTIES = 1024


class SettlementError(ValueError):
    """Bad bid, shares, weights or party lists."""


@dataclass(frozen=True)
class SettlementPolicy:
    """Shares in ppm: executors' part of the bid, and the fixed part of the data part."""

    executor_share_ppm: int = 300_000
    fixed_share_ppm: int = 200_000


@dataclass(frozen=True)
class Settlement:
    """Who receives what, in base units; the parts sum exactly to the bid."""

    met: bool
    buyer_refund: int
    executor_payouts: tuple[int, ...]
    provider_payouts: tuple[int, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def compute_split(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to non-negative ``weights``; the parts sum to ``total``.

    Floors first, then one unit each to the largest remainders (ties: lower index).
    Raises SettlementError if the weights are empty, negative or all zero.
    """
    if not _is_int(total) or total < 0:
        raise SettlementError(f"total must be a non-negative integer, got {total!r}")
    if not 1 <= len(weights) <= MAX_PARTIES or not all(_is_int(w) and w >= 0 for w in weights):
        raise SettlementError(f"need 1 to {MAX_PARTIES} non-negative integer weights")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise SettlementError("weights are all zero")
    parts = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda j: (-remainders[j], j))[:left]:
        parts[i] += 1
    return parts


def compute_eligible(kept_counts: Sequence[int], rounds: int) -> list[bool]:
    """A provider is eligible when its update was kept in at least half of the rounds."""
    if rounds < 1 or any(not _is_int(k) or not 0 <= k <= rounds for k in kept_counts):
        raise SettlementError("kept counts must lie in [0, rounds] with rounds >= 1")
    return [2 * k >= rounds for k in kept_counts]


def compute_settlement(
    bid: int,
    metric_ppm: int,
    tau_ppm: int,
    executor_weights: Sequence[int],
    contributions: Sequence[int],
    eligible: Sequence[bool] | None = None,
    policy: SettlementPolicy = SettlementPolicy(),
) -> Settlement:
    """Split ``bid`` among buyer refund, executors and providers (see module doc)."""
    if not _is_int(bid) or not 0 <= bid <= MAX_BID:
        raise SettlementError(f"bid must be an integer in [0, {MAX_BID}]")
    if not (_is_int(metric_ppm) and _is_int(tau_ppm)):
        raise SettlementError("metric_ppm and tau_ppm must be integers")
    if not (0 <= policy.executor_share_ppm <= PPM and 0 <= policy.fixed_share_ppm <= PPM):
        raise SettlementError("policy shares must lie in [0, 1_000_000]")
    if not 1 <= len(contributions) <= MAX_PARTIES or not all(map(_is_int, contributions)):
        raise SettlementError(f"need 1 to {MAX_PARTIES} integer contributions")
    flags = [True] * len(contributions) if eligible is None else list(eligible)
    if len(flags) != len(contributions) or not all(isinstance(e, bool) for e in flags):
        raise SettlementError("eligible must be one bool per provider")
    executor_part = bid * policy.executor_share_ppm // PPM
    executor_payouts = tuple(compute_split(executor_part, executor_weights))
    data_part = bid - executor_part
    met = metric_ppm >= tau_ppm
    providers = [0] * len(contributions)
    chosen = [i for i, ok in enumerate(flags) if ok]
    if not met or not chosen:
        return Settlement(met, data_part, executor_payouts, tuple(providers))
    fixed_part = data_part * policy.fixed_share_ppm // PPM
    for i, amount in zip(chosen, compute_split(fixed_part, [1] * len(chosen)), strict=True):
        providers[i] += amount
    positive = [max(0, contributions[i]) for i in chosen]
    shares = positive if sum(positive) > 0 else [1] * len(chosen)
    for i, amount in zip(chosen, compute_split(data_part - fixed_part, shares), strict=True):
        providers[i] += amount
    return Settlement(met, 0, executor_payouts, tuple(providers))
