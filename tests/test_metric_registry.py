"""Every metric in ``harness.metrics.METRICS``, one parametrized case each: adding a metric is one
``register`` call plus its scikit-learn reference below (a registered metric without one fails)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from sklearn import metrics as skm

from harness import metrics as hm
from harness.competition import load_competition
from harness.errors import CompetitionError, PodiumError
from harness.pages import evaluation_markdown
from harness.report import format_report
from harness.scoring import score_predictions
from kagglebridge.export import description as kaggle_description
from kagglebridge.export import export_competition

# name -> (the scikit-learn function, its keyword arguments): the same number, with scikit-learn's
# conventions (zero_division=0); the registered ``Metric.sklearn`` must name the same call.
REFERENCE = {
    "accuracy": (skm.accuracy_score, {}),
    "precision_macro": (skm.precision_score, {"average": "macro"}),
    "recall_macro": (skm.recall_score, {"average": "macro"}),
    "f1_macro": (skm.f1_score, {"average": "macro"}),
}


def reference_value(name: str, y_true, y_pred) -> float:
    fn, kwargs = REFERENCE[name]
    extra = {"zero_division": 0} if fn is not skm.accuracy_score else {}
    return fn(y_true, y_pred, **kwargs, **extra)

REGISTERED = list(hm.METRICS.values())


def cases(seed: int):
    rng = np.random.default_rng(seed)
    for k, n in ((2, 7), (10, 500), (30, 200)):
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, max(1, k - 3), n))  # some classes never predicted
        yield k, y_true, y_pred


@pytest.mark.parametrize("metric", REGISTERED, ids=lambda m: m.name)
def test_registered_metric_equals_scikit_learn(metric):
    assert metric.name in REFERENCE, f"metric {metric.name!r} is registered without a reference in this test"
    fn, kwargs = REFERENCE[metric.name]
    assert metric.sklearn == fn.__name__ + "".join(f" with {k}={v!r}" for k, v in kwargs.items())
    for k, y_true, y_pred in cases(len(metric.name)):
        cm = hm.confusion_matrix(y_true, y_pred, k)
        assert metric.fn(cm) == pytest.approx(reference_value(metric.name, y_true, y_pred), abs=1e-12)
        # A stack of matrices gives one value per matrix (what the bootstrap relies on).
        np.testing.assert_allclose(metric.fn(np.stack([cm, cm])), [metric.fn(cm)] * 2, atol=1e-12)


@pytest.mark.parametrize("metric", REGISTERED, ids=lambda m: m.name)
def test_registered_metric_reaches_every_report(metric, digits_competition, tmp_path):
    """Scoring stores it, the score table shows it, a competition may rank by it (with a CI of it)."""
    rng = np.random.default_rng(0)
    solution_dir = tmp_path / "comp"
    shutil.copytree(digits_competition.root, solution_dir)
    toml = solution_dir / "competition.toml"
    text = re.sub(r'(?m)^primary_metric = .*$', f'primary_metric = "{metric.name}"', toml.read_text())
    toml.write_text(text)
    competition = load_competition(solution_dir)
    assert competition.primary_metric == metric.name
    from harness.competition import load_solution

    solution = load_solution(competition)
    labels = solution.labels
    predictions = np.where(rng.random(len(labels)) < 0.7, labels, rng.integers(0, competition.num_classes, len(labels)))
    predictions = np.where(solution.scored, predictions, 0)
    report = score_predictions(predictions, solution, competition, resamples=200)
    for split in ("public", "private", "all"):
        score = report.split(split)
        assert split in report.to_dict() and metric.name in report.to_dict()[split]
        assert score.metric(metric.name) == pytest.approx(metric.fn(score.confusion_matrix))
    public = report.public
    assert report.primary("public") == public.metric(metric.name)
    assert public.ci_low <= public.metric(metric.name) <= public.ci_high
    assert metric.name in format_report(report)
    # The Evaluation page and the Kaggle export describe it from the registry.
    page = evaluation_markdown(competition)
    assert f"Submissions are ranked by {metric.description} (higher is better)" in page
    also = page.split("The submission page also shows ", 1)[1].split(", a per-class table", 1)[0]
    others = [m.label for m in REGISTERED if m.name != metric.name]
    assert also == ", ".join(others[:-1]) + " and " + others[-1]
    kaggle_text = kaggle_description(competition, {"Public": 10, "Private": 20, "Ignored": 0})
    assert f"**{metric.kaggle}**" in kaggle_text and metric.sklearn in kaggle_text


@pytest.fixture
def error_rate():
    """A lower-is-better metric, registered for one test (the registry is the only place it is named)."""
    metric = hm.register(hm.Metric(
        "error_rate", "Error rate", lambda cm: 1.0 - hm.accuracy(cm),
        description="**error rate**: the share of scored test images whose predicted class is wrong",
        sklearn="1 - accuracy_score", higher_is_better=False,
    ))
    yield metric
    del hm.METRICS[metric.name]


def test_a_lower_is_better_metric_is_ranked_its_way_everywhere(error_rate, digits_competition, tmp_path):
    """One registry entry with ``higher_is_better=False``: the evaluation page says so, the tiers,
    rank ranges, forecast and Ladder run the other way round, and the Kaggle export says why it
    cannot name a Kaggle metric."""
    from harness import honest

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 10, 300)
    accuracy = [0.95, 0.9, 0.6, 0.55, 0.3]
    predictions = np.stack([np.where(rng.random(300) < a, truth, (truth + 1 + rng.integers(0, 9, 300)) % 10)
                            for a in accuracy])
    by_acc = honest.honest_board(predictions, truth, private_rows=500, metric="accuracy", num_classes=10)
    by_err = honest.honest_board(predictions, truth, private_rows=500, metric="error_rate", num_classes=10)
    np.testing.assert_allclose(by_err.score, 1.0 - by_acc.score)
    assert by_err.rank.tolist() == by_acc.rank.tolist()
    assert by_acc.rank[0] == 1 and by_acc.rank[-1] == 5  # the best accuracy is the lowest error rate
    assert by_err.tier.tolist() == by_acc.tier.tolist() and by_err.tier[0] < by_err.tier[-1]
    assert by_err.rank_range.tolist() == by_acc.rank_range.tolist()
    np.testing.assert_allclose(by_err.p_rank_change, by_acc.p_rank_change)
    # The Ladder: a lower value beats the shown one only when lower by more than the step.
    shown = honest.shown_scores([0.40, 0.38, 0.30, 0.35, 0.10], "ladder", step=0.05, higher_is_better=False)
    np.testing.assert_allclose(shown, [0.40, 0.40, 0.30, 0.30, 0.10])
    assert honest.shown_scores([0.40, 0.38, 0.30], "ladder", step=0.05).tolist() == [0.40, 0.40, 0.40]

    root = tmp_path / "comp"
    shutil.copytree(digits_competition.root, root)
    toml = root / "competition.toml"
    toml.write_text(re.sub(r'(?m)^primary_metric = .*$', 'primary_metric = "error_rate"', toml.read_text()))
    competition = load_competition(root)
    page = evaluation_markdown(competition)
    assert "Submissions are ranked by **error rate**: the share of scored test images whose predicted class is " \
           "wrong (lower is better)" in page
    assert "also shows Accuracy, Precision (macro), Recall (macro) and F1 (macro), a per-class table" in page
    with pytest.raises(PodiumError, match="Kaggle has no metric that matches 'error_rate'"):
        export_competition(root, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_unknown_metric_is_refused(digits_competition, tmp_path):
    solution_dir = tmp_path / "comp"
    shutil.copytree(digits_competition.root, solution_dir)
    toml = solution_dir / "competition.toml"
    toml.write_text(re.sub(r'(?m)^primary_metric = .*$', 'primary_metric = "auc"', toml.read_text()))
    with pytest.raises(CompetitionError, match="primary_metric 'auc' is not one of accuracy"):
        load_competition(solution_dir)
    with pytest.raises(ValueError, match="registered twice"):
        hm.register(hm.Metric("accuracy", "Accuracy again", hm.accuracy, "**accuracy**", "accuracy_score"))


def test_a_lower_is_better_metric_ranks_the_board_and_its_ladder_its_way(error_rate, digits_competition,
                                                                         digits_solution, tmp_path):
    """The real app on an ``error_rate`` competition with a Ladder board: the lowest error rate
    leads the board and the API, and a team's shown score only moves when it drops by a step."""
    from tests.test_honest_board import add_team, api_submit, csv_bytes, team_predictions
    from tests.live import make_test_app

    root = tmp_path / "comp"
    shutil.copytree(digits_competition.root, root)
    toml = root / "competition.toml"
    text = re.sub(r'(?m)^primary_metric = .*$', 'primary_metric = "error_rate"', toml.read_text())
    toml.write_text(text.replace("daily_limit = 5\n", 'daily_limit = 50\npublic_board = "ladder"\n'))
    app = make_test_app(tmp_path, root, WTF_CSRF_ENABLED=False, TESTING=True)
    client = app.test_client()
    tokens = {}
    for name, acc in (("Weak", 0.5), ("Strong", 0.95)):
        tokens[name] = add_team(app, name)[1]
        assert api_submit(client, tokens[name], csv_bytes(digits_solution, team_predictions(digits_solution, acc, 1))
                          ).status_code == 201
    rows = client.get("/api/leaderboard").get_json()["rows"]
    assert [r["team"] for r in rows] == ["Strong", "Weak"], rows
    assert rows[0]["score"] < rows[1]["score"]
    assert rows[0]["tier"] == 1 and rows[1]["tier"] == 2
    # A slightly worse submission (more errors) leaves Strong's shown score where it was.
    shown = rows[0]["score"]
    assert api_submit(client, tokens["Strong"], csv_bytes(digits_solution, team_predictions(digits_solution, 0.93, 2))
                      ).status_code == 201
    assert client.get("/api/leaderboard").get_json()["rows"][0]["score"] == shown
