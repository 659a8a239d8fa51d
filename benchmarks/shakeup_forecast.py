"""How well the shake-up forecast did: simulated competitions scored on a real split.

    .venv/bin/python benchmarks/shakeup_forecast.py [--teams 300] [--competitions 10]

Two settings, each ``--competitions`` simulated competitions of ``--teams`` synthetic teams:

1. the real digits split of ``podium init digits`` (540 test rows: 162 public, 378 private);
2. synthetic labels, 3,000 public and 7,000 private rows (the large end of a course competition).

A team has a skill and a row a difficulty; a team answers a row right with probability
``sigmoid(skill - difficulty)`` and otherwise gives a random wrong class. Each team's best of
``--submissions`` attempts (chosen by its public score, as teams do) is its board entry. The
forecast (``harness.honest.shakeup_forecast``) sees the public rows only; the real move is
whether the team's private board position differs from its public one (equal scores in the order
the teams submitted, as the board breaks ties: what its "places gained" column shows). Printed: the Brier score of the
forecast, the Brier score of the best constant forecast (the real share of moves, known only
afterwards), and a calibration table (forecast bins against the share that really moved).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import honest  # noqa: E402

BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0001)


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """(labels, is_public) of the scored rows of a real ``podium init digits`` competition."""
    from harness.build import build_competition
    from harness.competition import IGNORED, PUBLIC, load_solution

    with tempfile.TemporaryDirectory() as tmp:
        competition = build_competition("digits", Path(tmp), name="digits", decoys=0, seed=0)
        solution = load_solution(competition)
    scored = solution.usage != IGNORED
    return solution.labels[scored], solution.usage[scored] == PUBLIC


def synthetic_split(public: int, private: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, public + private)
    is_public = np.zeros(public + private, dtype=bool)
    is_public[rng.choice(public + private, public, replace=False)] = True
    return labels, is_public


def simulate(labels: np.ndarray, is_public: np.ndarray, teams: int, submissions: int, seed: int,
             classes: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(two-stage forecast, one-stage forecast, moved) for every team of one simulated competition."""
    rng = np.random.default_rng(seed)
    rows = labels.shape[0]
    skill = rng.normal(2.0, 1.0, teams)
    difficulty = rng.normal(0.0, 1.5, rows)
    p_right = 1.0 / (1.0 + np.exp(-(skill[:, None] - difficulty[None, :])))
    best_public = np.full(teams, -1.0)
    entry = np.zeros((teams, rows), dtype=np.int64)
    for _ in range(submissions):  # each attempt: the same skill, fresh luck; the team keeps its best public one
        right = rng.random((teams, rows)) < p_right
        wrong = (labels[None, :] + rng.integers(1, classes, (teams, rows))) % classes
        pred = np.where(right, labels[None, :], wrong)
        public_score = (pred[:, is_public] == labels[is_public]).mean(axis=1)
        better = public_score > best_public
        entry[better] = pred[better]
        best_public[better] = public_score[better]
    pub_pred, pub_truth = entry[:, is_public], labels[is_public]
    priv_pred, priv_truth = entry[:, ~is_public], labels[~is_public]
    submitted = rng.permutation(teams)  # who submitted first: the board's order of equal scores
    public_rank = honest.ranks(honest.scores(pub_pred, pub_truth), submitted)
    private_rank = honest.ranks(honest.scores(priv_pred, priv_truth), submitted)
    m = int((~is_public).sum())
    forecast = honest.shakeup_forecast(pub_pred, pub_truth, m, public_rank=public_rank, two_stage=True,
                                       tiebreak=submitted)
    one_stage = honest.shakeup_forecast(pub_pred, pub_truth, m, public_rank=public_rank, two_stage=False,
                                        tiebreak=submitted)
    return forecast, one_stage, private_rank != public_rank


def report(name: str, forecast: np.ndarray, moved: np.ndarray) -> None:
    brier = float(np.mean((forecast - moved) ** 2))
    base = float(moved.mean())
    brier_constant = float(np.mean((base - moved) ** 2))
    print(f"\n{name}: {forecast.size} team-entries, {base:.1%} really changed rank")
    print(f"  Brier score: forecast {brier:.4f}, best constant ({base:.3f}) {brier_constant:.4f}, "
          f"skill {1 - brier / brier_constant if brier_constant else float('nan'):+.2f}")
    print("  forecast bin    teams  mean forecast  really moved")
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        inside = (forecast >= lo) & (forecast < hi)
        if inside.any():
            print(f"  [{lo:4.2f}, {min(hi, 1):4.2f})  {inside.sum():6d}  {forecast[inside].mean():13.3f}  "
                  f"{moved[inside].mean():12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teams", type=int, default=300)
    parser.add_argument("--competitions", type=int, default=10)
    parser.add_argument("--submissions", type=int, default=5, help="attempts per team; the best public one counts")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = [("digits split (162 public / 378 private rows)", digits_split()),
                ("synthetic labels (3000 public / 7000 private rows)", synthetic_split(3000, 7000))]
    for name, (labels, is_public) in settings:
        results = [simulate(labels, is_public, args.teams, args.submissions, seed) for seed in range(args.competitions)]
        moved = np.concatenate([r[2] for r in results])
        title = f"{name}, {args.competitions} competitions x {args.teams} teams, best of {args.submissions}"
        report(title + ", two-stage forecast (the default)", np.concatenate([r[0] for r in results]), moved)
        report(title + ", one-stage forecast", np.concatenate([r[1] for r in results]), moved)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
