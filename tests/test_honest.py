"""Tiers, rank ranges, the shake-up forecast, the Ladder and medals (harness/honest.py).

The vectorised resampling is checked against a direct bootstrap written the plain way (one
resample at a time, scikit-learn's metrics, Python loops) on small cases.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from harness import honest


def synthetic_teams(teams: int, rows: int, classes: int = 10, seed: int = 0, skill=None):
    """Teams of varied skill on rows of varied difficulty; wrong answers are a random other class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, rows)
    skill = rng.uniform(0.5, 3.0, teams) if skill is None else np.asarray(skill, dtype=float)
    difficulty = rng.normal(0.0, 1.5, rows)
    p_right = 1.0 / (1.0 + np.exp(-(skill[:, None] - difficulty[None, :])))
    right = rng.random((teams, rows)) < p_right
    wrong = (truth[None, :] + rng.integers(1, classes, (teams, rows))) % classes
    return np.where(right, truth[None, :], wrong), truth


def direct_scores(predictions, truth, resamples, seed, draw=None, metric="accuracy"):
    """The plain bootstrap: draw row indices, score every team on them (a mean, or scikit-learn)."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    out = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n if draw is None else draw)
        if metric == "accuracy":
            out.append([np.mean(truth[idx] == p[idx]) for p in predictions])
        elif metric == "sklearn_accuracy":
            out.append([accuracy_score(truth[idx], p[idx]) for p in predictions])
        else:
            out.append([f1_score(truth[idx], p[idx], average="macro", zero_division=0) for p in predictions])
    return np.array(out)


SEED_PLUS_ONE = honest.SEED + 1  # the forecast's seed in honest_board


def direct_ranks(row):
    return [1 + sum(1 for other in row if other > mine) for mine in row]


def direct_tiers(boot, ranking, alpha=0.05):
    tier, current, head = {}, 0, None
    for team in ranking:
        if head is not None:
            p = sum(1 for b in range(len(boot)) if boot[b][head] - boot[b][team] <= 0) / len(boot)
            if p >= alpha:
                tier[team] = current
                continue
        current += 1
        head = team
        tier[team] = current
    return [tier[t] for t in range(len(ranking))]


def test_resample_counts_are_the_plain_bootstrap_draws():
    counts = honest.resample_counts(50, resamples=30, seed=7)
    rng = np.random.default_rng(7)
    for b in range(30):
        assert np.array_equal(counts[b], np.bincount(rng.integers(0, 50, 50), minlength=50))
    assert counts.sum(axis=1).tolist() == [50] * 30
    big = honest.resample_counts(40, resamples=5, seed=1, draw=100)  # a private split larger than the public one
    assert big.sum(axis=1).tolist() == [100] * 5


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_resampled_scores_match_a_direct_bootstrap(metric):
    predictions, truth = synthetic_teams(6, 80, classes=4, seed=3)
    counts = honest.resample_counts(80, resamples=40, seed=5)
    fast = honest.resampled_scores(predictions, truth, counts, metric, num_classes=4)
    slow = direct_scores(predictions, truth, 40, seed=5, metric="sklearn_" + metric if metric == "accuracy" else metric)
    assert fast.shape == (40, 6)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    observed = honest.scores(predictions, truth, metric, num_classes=4)
    reference = [accuracy_score(truth, p) if metric == "accuracy" else f1_score(truth, p, average="macro")
                 for p in predictions]
    np.testing.assert_allclose(observed, reference, atol=1e-12)


def test_ranks_are_competition_ranks():
    s = np.array([[0.5, 0.9, 0.5, 0.7], [0.1, 0.1, 0.1, 0.2]])
    assert honest.ranks(s).tolist() == [[3, 1, 3, 2], [2, 2, 2, 1]]
    rng = np.random.default_rng(0)
    random = rng.integers(0, 5, (20, 9)) / 4
    assert honest.ranks(random).tolist() == [direct_ranks(row) for row in random.tolist()]


def test_tiers_and_ranges_match_a_direct_bootstrap():
    predictions, truth = synthetic_teams(8, 120, seed=11)
    ranking = np.argsort(-honest.scores(predictions, truth), kind="stable")
    boot = direct_scores(predictions, truth, 400, seed=2)
    expected_tiers = direct_tiers(boot.tolist(), ranking.tolist())
    got = honest.tiers(predictions, truth, ranking, resamples=400, seed=2)
    assert got.tolist() == expected_tiers
    assert len(set(expected_tiers)) > 1 and len(set(expected_tiers)) < 8  # both joins and new tiers occur
    # rank ranges: the 5 % and 95 % inverted-CDF quantiles of each team's rank over the resamples
    rank_rows = [direct_ranks(row) for row in boot.tolist()]
    expected = []
    for team in range(8):
        ordered = sorted(row[team] for row in rank_rows)
        expected.append([ordered[math.ceil(0.05 * 400) - 1], ordered[math.ceil(0.95 * 400) - 1]])
    assert honest.rank_ranges(predictions, truth, resamples=400, seed=2).tolist() == expected


def test_tiers_are_paired_a_consistent_small_edge_is_significant_an_unpaired_one_is_not():
    rng = np.random.default_rng(4)
    n = 3000
    truth = rng.integers(0, 10, n)
    a_right = rng.random(n) < 0.90
    a = np.where(a_right, truth, (truth + 1) % 10)
    b = a.copy()
    b[np.flatnonzero(a_right)[:30]] = (truth[np.flatnonzero(a_right)[:30]] + 1) % 10  # A minus 30 rows: 1 % worse
    c_right = rng.random(n) < 0.895  # an independent team about 0.5 % worse
    c = np.where(c_right, truth, (truth + 2) % 10)
    predictions = np.stack([a, c, b])
    s = honest.scores(predictions, truth)
    assert s[0] > s[1] > s[2]
    board = honest.honest_board(predictions, truth)
    # B loses to A on 30 rows and never wins: every resample agrees, so B opens tier 2 ...
    assert board.tier.tolist() == [1, 1, 2]
    assert board.tier_p_value[2] == 0.0 and board.tier_p_value[1] > 0.05
    # ... while C, independent of A, is inside A's noise: same tier, and its rank range spans 1-2
    assert board.rank_range[1].tolist()[0] == 1 and board.rank_range[0].tolist()[1] >= 2


def test_two_equal_teams_are_split_about_one_time_in_ten():
    """The test is one-sided at 5 % in the direction the board already shows, so two truly equal
    teams land in different tiers about 5 % x 2 of the time; far more would mean a broken test."""
    rng = np.random.default_rng(0)
    simulations, splits = 300, 0
    for s in range(simulations):
        truth = rng.integers(0, 10, 500)
        right = rng.random((2, 500)) < 0.85
        predictions = np.where(right, truth, (truth + 1) % 10)
        splits += int(honest.tiers(predictions, truth, resamples=300, seed=s).max() > 1)
    assert 0.05 < splits / simulations < 0.13


def test_tiers_are_stable_between_calls_and_respect_a_given_ranking():
    predictions, truth = synthetic_teams(12, 300, seed=8)
    first = honest.tiers(predictions, truth)
    assert np.array_equal(first, honest.tiers(predictions, truth))
    order = np.argsort(-honest.scores(predictions, truth), kind="stable")
    tiers_in_order = first[order]
    assert tiers_in_order[0] == 1 and np.all(np.diff(tiers_in_order) >= 0) and np.all(np.diff(tiers_in_order) <= 1)
    with pytest.raises(ValueError, match="every team"):
        honest.tiers(predictions, truth, ranking=[0, 1, 2])


def test_correctness_matrix_gives_the_same_accuracy_tiers():
    predictions, truth = synthetic_teams(10, 200, seed=9)
    correct = predictions == truth
    p2, t2 = honest.from_correct(correct)
    assert np.array_equal(honest.tiers(predictions, truth), honest.tiers(p2, t2))
    assert np.array_equal(honest.rank_ranges(predictions, truth), honest.rank_ranges(p2, t2))


def direct_two_stage_scores(predictions, truth, resamples, seed, draw):
    """Per resample: a bootstrap copy of the public rows, then ``draw`` rows from that copy."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    out = []
    for _ in range(resamples):
        population = rng.integers(0, n, n)
        idx = population[rng.integers(0, n, draw)]
        out.append([np.mean(truth[idx] == p[idx]) for p in predictions])
    return np.array(out)


@pytest.mark.parametrize("two_stage", [False, True])
def test_shakeup_forecast_matches_a_direct_simulation(two_stage):
    predictions, truth = synthetic_teams(7, 100, seed=12)
    public_rank = direct_ranks(honest.scores(predictions, truth).tolist())
    if two_stage:
        private = direct_two_stage_scores(predictions, truth, 300, seed=4, draw=233)
    else:
        private = direct_scores(predictions, truth, 300, seed=4, draw=233)
    moved = np.array([[r != p for r, p in zip(direct_ranks(row), public_rank)] for row in private.tolist()])
    got = honest.shakeup_forecast(predictions, truth, 233, resamples=300, seed=4, two_stage=two_stage)
    np.testing.assert_allclose(got, moved.mean(axis=0), atol=1e-12)


def test_shakeup_forecast_is_low_for_a_clear_leader_and_high_for_a_tie():
    # a leader at about 99 %, then two teams with the same public score that disagree on 40 rows
    predictions, truth = synthetic_teams(3, 500, seed=5, skill=[8.0, 2.0, 2.0])
    right = np.flatnonzero(predictions[1] == truth)[:20]
    wrong = np.flatnonzero(predictions[1] != truth)[:20]
    predictions[2] = predictions[1]
    predictions[2, right] = (truth[right] + 1) % 10
    predictions[2, wrong] = truth[wrong]
    s = honest.scores(predictions, truth)
    assert s[1] == s[2] < s[0]
    p = honest.shakeup_forecast(predictions, truth, private_rows=1200)
    assert p[0] < 0.01
    # tied at rank 2 in public: on a private split the winner of the 40 rows keeps rank 2 and the
    # loser drops to 3, each about half the time (an exact tie keeps both at 2)
    assert 0.4 < p[1] < 0.6 and 0.4 < p[2] < 0.6 and p[1] + p[2] < 1.0


def test_honest_board_rows_are_json_ready():
    predictions, truth = synthetic_teams(5, 200, seed=1)
    board = honest.honest_board(predictions, truth, private_rows=400, resamples=500)
    row = board.row(int(np.argmax(board.score)))
    assert row["tier"] == 1 and row["rank_range"][0] == 1 and 0.0 <= row["p_rank_change"] <= 1.0
    assert set(row) == {"tier", "rank_range", "p_rank_change"}
    assert "p_rank_change" not in honest.honest_board(predictions, truth, resamples=200).row(0)


# --------------------------------------------------------------------------- the Ladder

def test_shown_scores_exact_rounded_ladder():
    s = [0.80, 0.81, 0.83, 0.95, 0.90, math.nan, 0.97]
    assert honest.shown_scores(s, "exact")[:5].tolist() == s[:5]
    assert honest.shown_scores([0.81234, 0.5], "rounded", decimals=2).tolist() == [0.81, 0.5]
    ladder = honest.shown_scores(s, "ladder", step=0.05)
    # 0.80 is shown; 0.81 and 0.83 do not beat it by more than 0.05; 0.95 does (shown 0.95);
    # 0.90 does not; a failed submission changes nothing; 0.97 does not beat 0.95 + 0.05
    np.testing.assert_allclose(ladder, [0.80, 0.80, 0.80, 0.95, 0.95, 0.95, 0.95])
    assert honest.ladder_step(400) == pytest.approx(0.05)
    np.testing.assert_allclose(honest.shown_scores([0.5, 0.72], "ladder", public_rows=100), [0.5, 0.7])
    with pytest.raises(ValueError, match="not one of"):
        honest.shown_scores(s, "fuzzy")


def probing_attack(truth_public: np.ndarray, mode: str, **board) -> float:
    """Flip one row at a time from an all-zeros submission and read the shown score.

    A binary task: the all-zeros submission is right exactly where the label is 0; flipping row i
    to 1 raises the accuracy by 1/n when the label is 1 and lowers it otherwise. The attacker
    guesses label 1 when the shown score went up after the flip. Returns the share of public
    labels recovered, after n + 1 submissions.
    """
    n = truth_public.shape[0]
    base = np.zeros(n, dtype=np.int64)
    submissions = [base]
    for i in range(n):
        flipped = base.copy()
        flipped[i] = 1
        submissions.append(flipped)
    true_scores = [float(np.mean(s == truth_public)) for s in submissions]
    shown = honest.shown_scores(true_scores, mode, public_rows=n, **board)
    # the attacker compares each probe's shown score with the shown score of the base submission
    guesses = (shown[1:] > shown[0]).astype(np.int64)
    return float(np.mean(guesses == truth_public))


def test_probing_attack_recovers_labels_exactly_but_not_against_the_ladder():
    rng = np.random.default_rng(0)
    truth_public = rng.integers(0, 2, 400)
    assert probing_attack(truth_public, "exact") == 1.0  # 401 submissions, every public label
    recovered = probing_attack(truth_public, "ladder")  # the same 401 submissions
    # the ladder never moves (each flip changes the score by 1/400, its step is 1/20): the attacker
    # learns nothing and guesses 0 everywhere, i.e. recovers only the labels that happen to be 0
    assert recovered == pytest.approx(np.mean(truth_public == 0))
    assert recovered < 0.6


def test_shown_decimals():
    assert honest.shown_decimals(0.05) == 3 and honest.shown_decimals(1 / math.sqrt(3000)) == 3
    assert honest.shown_decimals(0.5) == 2


# --------------------------------------------------------------------------- medals

def test_medals_top_fractions_and_ties():
    fractions = {"gold": 0.1, "silver": 0.2, "bronze": 0.4}
    medals = honest.assign_medals(list(range(1, 21)), fractions)  # 20 teams: 2 gold, 2 silver, 4 bronze
    assert medals[:8] == ["gold"] * 2 + ["silver"] * 2 + ["bronze"] * 4 and medals[8:] == [None] * 12
    tied = honest.assign_medals([1, 2, 2, 4, 5, 6, 7, 8, 9, 10], fractions)  # 10 teams: gold for rank <= 1
    assert tied[:4] == ["gold", "silver", "silver", "bronze"]
    assert honest.assign_medals([1, 2, 3], {"gold": 0.1}) == [None, None, None]  # 0.3 teams: no gold
    assert honest.assign_medals([1, 2, 3], {"bronze": 0.5}) == ["bronze", None, None]


# --------------------------------------------------------------------------- competition.toml settings

def load_with(tmp_path, settings: str):
    from harness.competition import load_competition

    (tmp_path / "competition.toml").write_text(f'name = "c"\nclasses = ["a", "b"]\n{settings}\n', encoding="utf-8")
    return load_competition(tmp_path)


def test_public_board_setting(tmp_path):
    from harness.competition import PublicBoard

    assert load_with(tmp_path, "").public_board == PublicBoard("exact")
    ladder = load_with(tmp_path, 'public_board = "ladder"').public_board
    assert ladder.mode == "ladder" and ladder.step is None and ladder.step_for(400) == pytest.approx(0.05)
    np.testing.assert_allclose(ladder.shown([0.80, 0.82, 0.90], public_rows=400), [0.80, 0.80, 0.90])
    rounded = load_with(tmp_path, 'public_board = { mode = "rounded", decimals = 2 }').public_board
    assert rounded.shown([0.8149], public_rows=400).tolist() == [0.81]
    stepped = load_with(tmp_path, '[public_board]\nmode = "ladder"\nstep = 0.01').public_board
    assert stepped.step_for(400) == 0.01


@pytest.mark.parametrize(
    "setting, expected",
    [
        ('public_board = "fuzzy"', "'fuzzy' is not one of exact, rounded, ladder"),
        ("public_board = 3", 'public_board must be "exact", "rounded" or "ladder"'),
        ('public_board = { mode = "rounded", decimals = 2.5 }', "decimals must be a whole number from 0 to 10"),
        ('public_board = { mode = "ladder", step = 2 }', "step must be a number between 0 and 1"),
        ('public_board = { mode = "exact", decimals = 2 }', "'exact' takes no other setting, not decimals"),
        ('public_board = { mode = "ladder", decimals = 2 }', "'ladder' takes step, not decimals"),
        ("medals = 0.1", "medals must be a table of top fractions"),
        ("medals = { platinum = 0.01 }", "not platinum"),
        ("medals = { gold = 0 }", "medals.gold must be a fraction"),
        ("medals = { gold = 0.3, silver = 0.2 }", "gold <= silver <= bronze"),
    ],
)
def test_bad_honest_settings_are_refused_with_their_name(tmp_path, setting, expected):
    from harness.errors import CompetitionError

    with pytest.raises(CompetitionError) as info:
        load_with(tmp_path, setting)
    assert expected in str(info.value)


def test_medals_setting(tmp_path):
    competition = load_with(tmp_path, "medals = { gold = 0.1, silver = 0.2, bronze = 0.4 }")
    assert competition.medals == (("gold", 0.1), ("silver", 0.2), ("bronze", 0.4))
    assert honest.assign_medals(list(range(1, 11)), competition.medal_fractions)[:5] == \
        ["gold", "silver", "bronze", "bronze", None]
    assert load_with(tmp_path, "").medals == ()
    assert load_with(tmp_path, "medals = { bronze = 0.5 }").medal_fractions == {"bronze": 0.5}


def test_positional_ranks_break_ties_in_the_given_order():
    s = np.array([[0.5, 0.9, 0.5, 0.7], [0.8, 0.8, 0.8, 0.9]])
    assert honest.ranks(s, tiebreak=[0, 1, 2, 3]).tolist() == [[3, 1, 4, 2], [2, 3, 4, 1]]
    assert honest.ranks(s, tiebreak=[3, 2, 1, 0]).tolist() == [[4, 1, 3, 2], [4, 3, 2, 1]]


def direct_positions(row, order):
    """Board positions: higher score first, equal scores in ``order`` (the earlier submission first)."""
    ranked = sorted(range(len(row)), key=lambda t: (-row[t], order.index(t)))
    return [ranked.index(t) + 1 for t in range(len(row))]


def test_the_boards_forecast_counts_board_positions_like_its_places_gained():
    """The board's "places gained" compares board positions (equal scores: the earlier submission
    first), so its forecast does too: checked against a direct simulation on teams with many ties
    (few rows, coarse accuracies), for two different board orders of the same teams."""
    predictions, truth = synthetic_teams(6, 40, seed=3)
    predictions[1] = predictions[0]  # identical public rows: always tied
    private = direct_two_stage_scores(predictions, truth, 300, seed=SEED_PLUS_ONE, draw=60)
    observed = honest.scores(predictions, truth).tolist()
    for order in (sorted(range(6), key=lambda t: -observed[t]),
                  sorted(range(6), key=lambda t: (-observed[t], -t))):  # ties the other way round
        shown = direct_positions(observed, order)
        moved = np.array([[r != p for r, p in zip(direct_positions(row, order), shown)] for row in private.tolist()])
        board = honest.honest_board(predictions, truth, ranking=order, private_rows=60, resamples=300)
        np.testing.assert_allclose(board.p_rank_change, moved.mean(axis=0), atol=1e-12)
        assert any(sum(observed[t] == observed[u] for u in range(6)) > 1 for t in range(6))  # ties exist
