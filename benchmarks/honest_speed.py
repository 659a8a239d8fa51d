"""Tiers + rank ranges speed: ``harness.honest.honest_board`` against the plain loop, same run.

    .venv/bin/python benchmarks/honest_speed.py [--teams 300] [--rows 3000] [--resamples 2000]

The fair peer is what a competent numpy user writes: one resample at a time, row indices drawn
with the same generator, every team's accuracy as ``(pred[:, idx] == truth[idx]).mean(1)``, then
the same tier walk, ``scipy.stats.rankdata`` ranks and rank quantiles. Both give identical tiers and ranges (checked here).
Prints the median of ``--repeats`` runs of each and the ratio; also one run with macro F1.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import honest  # noqa: E402


def synthetic(teams: int, rows: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, rows)
    skill = rng.normal(1.5, 1.0, teams)
    difficulty = rng.normal(0.0, 1.5, rows)
    right = rng.random((teams, rows)) < 1 / (1 + np.exp(-(skill[:, None] - difficulty[None, :])))
    wrong = (truth[None, :] + rng.integers(1, classes, (teams, rows))) % classes
    return np.where(right, truth[None, :], wrong), truth


def plain_loop(predictions, truth, resamples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = truth.shape[0]
    boot = np.empty((resamples, predictions.shape[0]))
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        boot[b] = (predictions[:, idx] == truth[idx]).mean(axis=1)
    observed = (predictions == truth).mean(axis=1)
    ranking = np.argsort(-observed, kind="stable")
    tier, _ = honest.tiers_from_scores(boot, ranking)
    r = rankdata(-boot, method="min", axis=1)  # competition ranks per resample
    lo = np.quantile(r, 0.05, axis=0, method="inverted_cdf")
    hi = np.quantile(r, 0.95, axis=0, method="inverted_cdf")
    return tier, np.stack([lo, hi], axis=1)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teams", type=int, default=300)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    predictions, truth = synthetic(args.teams, args.rows)
    fast_s, board = timed(lambda: honest.honest_board(predictions, truth, resamples=args.resamples), args.repeats)
    plain_s, (tier, ranges) = timed(lambda: plain_loop(predictions, truth, args.resamples), 1)
    assert np.array_equal(board.tier, tier) and np.array_equal(board.rank_range, ranges), "results differ"
    f1_s, _ = timed(lambda: honest.honest_board(predictions, truth, metric="f1_macro", num_classes=10,
                                                resamples=args.resamples), 1)
    print(f"{args.teams} teams x {args.rows} public rows, {args.resamples} paired resamples, tiers + rank ranges")
    print(f"  honest_board (accuracy):   {fast_s:7.2f} s  (median of {args.repeats})")
    print(f"  plain loop (accuracy):     {plain_s:7.2f} s  -> {plain_s / fast_s:.1f}x faster, identical results")
    print(f"  honest_board (f1_macro):   {f1_s:7.2f} s")
    print(f"  tiers: {int(board.tier.max())}; median rank-range width: "
          f"{int(np.median(board.rank_range[:, 1] - board.rank_range[:, 0]))}")


if __name__ == "__main__":
    main()
