"""Poisoned-provider figures: robust vs plain aggregation on sklearn digits.

Five providers hold a Dirichlet(0.5) non-IID split of digits; the buyer holds
20 % as validation data. One provider is poisoned, either as a Byzantine
client sending seeded Gaussian updates or by flipping its labels. For each
aggregation rule the script prints the final accuracy, whether it meets tau,
per-provider exclusion counts, contributions (ppm summed over rounds), the
quality coefficient q and the wall time of the job.

    .venv/bin/python -m bench.ml_poison [--model mlp] [--rounds 10] [--data-seed 1]
"""

from __future__ import annotations

import argparse
import json
import time

from ml.data import compute_digits_split, compute_flipped_labels
from ml.quality import compute_quality
from ml.runner import process_job
from ml.settlement import compute_eligible, compute_settlement
from ml.spec import parse_spec_json

RULES = [
    ("fedavg", "fedavg"),
    ("multikrum f=1 m=4", {"rule": "multikrum", "f": 1, "m": 4}),
    ("three_sigma", {"rule": "three_sigma"}),
    ("trimmed_mean b=0.2", {"rule": "trimmed_mean", "beta_ppm": 200_000}),
]


def main() -> int:
    """Run every (attack, rule) pair and print one block of figures each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="logreg", help="logreg, mlp or cnn")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--poisoned", type=int, default=4)
    parser.add_argument("--scale-ppm", type=int, default=3_000_000,
                        help="per-coordinate std of the Byzantine update, ppm")
    parser.add_argument("--tau-ppm", type=int, default=900_000)
    parser.add_argument("--contribution", default="loo", help="loo or sampled")
    parser.add_argument("--lr", default="0.5", help="learning rate, decimal string")
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    args = parser.parse_args()

    model = {"logreg": "logreg", "mlp": {"name": "mlp", "hidden": [32]},
             "cnn": {"name": "cnn", "channels": [8]}}[args.model]
    split = compute_digits_split(5, seed=args.data_seed)
    print(f"digits: providers {[p.size for p in split.providers]}, "
          f"validation {split.validation.size}; model {args.model}, rounds {args.rounds}, "
          f"tau {args.tau_ppm} ppm, poisoned provider {args.poisoned}")
    attacks = {
        "none": (list(split.providers), None),
        f"random updates (std {args.scale_ppm / 1e6:g})": (
            list(split.providers), {args.poisoned: args.scale_ppm}),
        "label flip (y -> 9 - y)": (
            [compute_flipped_labels(p) if i == args.poisoned else p
             for i, p in enumerate(split.providers)], None),
    }
    for attack, (providers, random_updates) in attacks.items():
        print(f"\n== attack: {attack}")
        for name, rule in RULES:
            spec = parse_spec_json(json.dumps({
                "datasets": [f"{i + 1:064x}" for i in range(5)], "model": model,
                "tau_ppm": args.tau_ppm, "bid": 1_000_000, "rounds": args.rounds,
                "local_epochs": args.epochs, "learning_rate": args.lr, "batch_size": 16, "seed": 7,
                "aggregation": rule, "contribution": args.contribution,
            }))
            start = time.perf_counter()
            result = process_job(spec, providers, split.validation, random_updates)
            seconds = time.perf_counter() - start
            kept = result.get_kept_counts()
            q = compute_quality(result.contributions_ppm)
            payout = compute_settlement(spec.bid, result.metric_ppm, spec.tau_ppm, [1, 1, 1],
                                        result.contributions_ppm,
                                        compute_eligible(kept, spec.rounds))
            excluded = [spec.rounds - k for k in kept]
            print(f"{name:20s} acc {result.metric_ppm / 1e4:6.2f}%  "
                  f"meets tau {'yes' if payout.met else 'no '}  time {seconds:5.2f}s")
            print(f"{'':20s} excluded rounds {excluded}")
            print(f"{'':20s} contribution ppm {list(result.contributions_ppm)}")
            print(f"{'':20s} q ppm {q}  provider payout {list(payout.provider_payouts)}"
                  f"  refund {payout.buyer_refund}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
