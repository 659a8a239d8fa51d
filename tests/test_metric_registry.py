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
from harness.errors import CompetitionError
from harness.report import format_report
from harness.scoring import score_predictions

# name -> (y_true, y_pred) -> value, with scikit-learn's conventions (zero_division=0)
REFERENCE = {
    "accuracy": lambda t, p: skm.accuracy_score(t, p),
    "precision_macro": lambda t, p: skm.precision_score(t, p, average="macro", zero_division=0),
    "recall_macro": lambda t, p: skm.recall_score(t, p, average="macro", zero_division=0),
    "f1_macro": lambda t, p: skm.f1_score(t, p, average="macro", zero_division=0),
}

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
    for k, y_true, y_pred in cases(len(metric.name)):
        cm = hm.confusion_matrix(y_true, y_pred, k)
        assert metric.fn(cm) == pytest.approx(REFERENCE[metric.name](y_true, y_pred), abs=1e-12)
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


def test_unknown_metric_is_refused(digits_competition, tmp_path):
    solution_dir = tmp_path / "comp"
    shutil.copytree(digits_competition.root, solution_dir)
    toml = solution_dir / "competition.toml"
    toml.write_text(re.sub(r'(?m)^primary_metric = .*$', 'primary_metric = "auc"', toml.read_text()))
    with pytest.raises(CompetitionError, match="primary_metric 'auc' is not one of accuracy"):
        load_competition(solution_dir)
    with pytest.raises(ValueError, match="registered twice"):
        hm.register(hm.Metric("accuracy", "Accuracy again", hm.accuracy))
