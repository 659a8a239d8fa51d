"""Shared fixtures: real competitions built on disk from the bundled digits dataset."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.build import build_competition
from harness.competition import Competition, Solution, load_solution

PODIUM = [sys.executable, "-m", "podium_cli"]  # the `podium` command, as a real process


@pytest.fixture(scope="session")
def digits_competition(tmp_path_factory) -> Competition:
    """A digits competition with 40 decoys, built once per session. Treat it as read-only."""
    root = tmp_path_factory.mktemp("competitions")
    return build_competition("digits", root, name="digits", decoys=40, seed=7)


@pytest.fixture(scope="session")
def digits_solution(digits_competition) -> Solution:
    return load_solution(digits_competition)


def write_submission(path: Path, ids, labels) -> Path:
    """A CSV submission with the given ids and label strings."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["id", "label"])
        out.writerows(zip(ids, labels))
    return path


def noisy_predictions(solution: Solution, accuracy: float, seed: int = 0) -> np.ndarray:
    """Class indices that are right on about ``accuracy`` of the rows (decoys get class 0)."""
    rng = np.random.default_rng(seed)
    truth = np.where(solution.labels < 0, 0, solution.labels)
    wrong = rng.random(len(truth)) > accuracy
    return np.where(wrong, (truth + rng.integers(1, 10, len(truth))) % 10, truth)


# --- PostgreSQL: a throwaway cluster per session, a database per test (tests/pg.py) ---------------
from tests.pg import each_database, pg_cluster, pg_url  # noqa: E402,F401  (fixtures)
