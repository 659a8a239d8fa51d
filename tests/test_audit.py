"""The organizer's audit (harness/audit.py): evidence with numbers and how they were computed."""
from __future__ import annotations

import numpy as np
import pytest

from harness import audit
from tests.test_honest import synthetic_teams

TEAMS = [f"team{i:02d}" for i in range(31)]


def planted(seed: int, share_redone: float = 0.15):
    """30 independent teams (varied skill, rows of varied difficulty) plus team30, a copy of team03
    with 15 % of its rows re-predicted by the copier's own (independent) model."""
    predictions, truth = synthetic_teams(31, 1000, seed=seed)
    rng = np.random.default_rng(100 + seed)
    redo = rng.random(1000) < share_redone
    copy = predictions[3].copy()
    copy[redo] = predictions[30][redo]
    predictions[30] = copy
    return predictions, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_planted_copied_pair_and_flags_no_independent_pair(seed):
    predictions, truth = planted(seed)
    evidence = audit.shared_errors(predictions, truth, TEAMS, num_classes=10)
    assert len(evidence) == 31 * 30 // 2
    flagged = [e.teams for e in evidence if e.flagged]
    assert flagged == [("team03", "team30")]
    top = evidence[0]
    assert top.teams == ("team03", "team30") and top.numbers["shared_wrong"] > 5 * top.numbers["expected"]
    assert top.p_value < 1e-20 and "independently" in top.how
    # the independent pairs: p-values spread as chance allows, none below the Bonferroni level
    others = np.array([e.p_value for e in evidence[1:]])
    assert others.min() > 0.05 / len(evidence) and np.median(others) > 0.2


def test_shared_error_counts_by_hand():
    truth = np.array([0, 1, 2, 0, 1])
    predictions = np.array([[1, 1, 0, 2, 1],   # wrong on rows 0 (1), 2 (0), 3 (2)
                            [1, 1, 1, 2, 0],   # wrong on rows 0 (1), 2 (1), 3 (2), 4 (0)
                            [0, 1, 2, 0, 1]])  # never wrong
    counts = audit.shared_error_counts(predictions, truth, 3)
    assert counts.tolist() == [[3, 2, 0], [2, 4, 0], [0, 0, 0]]  # rows 0 and 3 shared by teams 0 and 1


def test_expected_shared_errors_for_uniform_independent_teams():
    # with few teams every row is equally hard: expectation = e_i * e_j * rows * P(same wrong label)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 20_000)
    wrong = (truth + rng.integers(1, 4, (3, 20_000))) % 4
    right = rng.random((3, 20_000)) < np.array([[0.9], [0.8], [0.7]])
    predictions = np.where(right, truth, wrong)
    expected = audit.expected_shared_errors(predictions, truth, 4)
    errors = (predictions != truth).mean(axis=1)
    assert expected[0, 1] == pytest.approx(errors[0] * errors[1] * 20_000 / 3, rel=0.02)
    observed = audit.shared_error_counts(predictions, truth, 4)
    assert observed[0, 1] == pytest.approx(expected[0, 1], rel=0.1)  # independent: as expected


def test_duplicate_files():
    files = [("ann", "sub1.csv", "aa" * 32), ("bob", "final.csv", "aa" * 32), ("ann", "sub2.csv", "bb" * 32),
             ("cat", "x.csv", "cc" * 32), ("cat", "y.csv", "cc" * 32)]  # the same team twice is no finding
    found = audit.duplicate_files(files)
    assert [e.teams for e in found] == [("ann", "bob")]
    assert found[0].numbers["files"] == ["final.csv", "sub1.csv"] and "SHA-256" in found[0].how


def test_sha256_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"id,label\n")
    import hashlib

    assert audit.sha256_file(tmp_path / "a.csv") == hashlib.sha256(b"id,label\n").hexdigest()


def test_checkpoint_csv_mismatch():
    a = np.arange(100) % 10
    b = a.copy()
    b[:3] = (b[:3] + 1) % 10
    small = audit.checkpoint_csv_mismatch("ann", a, b)  # 3 % > 2 %
    assert small.flagged and small.numbers["disagree"] == 3 and small.numbers["share"] == pytest.approx(0.03)
    assert not audit.checkpoint_csv_mismatch("ann", a, b, max_share=0.05).flagged
    assert not audit.checkpoint_csv_mismatch("ann", a, a).flagged
    with pytest.raises(ValueError, match="same rows"):
        audit.checkpoint_csv_mismatch("ann", a, b[:50])


def test_implausible_scores():
    teams = ["honest", "prober", "lucky"]
    # baseline 0.80; the prober shows 0.99 in public but 0.85 in private (1000 / 2000 rows)
    found = audit.implausible_scores(teams, [0.84, 0.99, 0.95], [0.835, 0.85, 0.945], 1000, 2000, baseline=0.80)
    assert [e.teams[0] for e in found if e.flagged] == ["prober"]
    prober = found[0].numbers
    assert prober["gap"] == pytest.approx(0.14) and prober["gap_limit"] < 0.03
    # "lucky" is far above the baseline but its public and private scores agree: not flagged
    assert not next(e for e in found if e.teams == ("lucky",)).flagged
    assert all(e.how for e in found) and found[0].to_dict()["teams"] == ["prober"]
