"""harness.metrics against scikit-learn on randomized inputs."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from harness import metrics as hm


def random_case(rng: np.random.Generator, k: int, n: int, drop_true: int = 0, drop_pred: int = 0):
    """Random labels over k classes; ``drop_*`` classes never occur in the truth / predictions."""
    true_classes = rng.permutation(k)[: k - drop_true]
    pred_classes = rng.permutation(k)[: k - drop_pred]
    y_true = rng.choice(true_classes, size=n)
    # Correlated predictions, so scores are not all near chance.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(pred_classes, size=n))
    y_pred = np.where(np.isin(y_pred, pred_classes), y_pred, rng.choice(pred_classes, size=n))
    return y_true, y_pred


CASES = [
    # (classes, rows, classes absent from truth, classes absent from predictions)
    (2, 5, 0, 0),
    (10, 1000, 0, 0),
    (10, 300, 3, 0),
    (10, 300, 0, 4),
    (10, 40, 2, 5),
    (7, 13, 0, 6),
    (100, 5000, 10, 10),
]


@pytest.mark.parametrize("k,n,drop_true,drop_pred", CASES)
@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn(k, n, drop_true, drop_pred, seed):
    rng = np.random.default_rng(seed * 1000 + k)
    y_true, y_pred = random_case(rng, k, n, drop_true, drop_pred)
    cm = hm.confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(k)))
    assert hm.accuracy(cm) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    for ours, sk in (
        (hm.precision_macro, skm.precision_score),
        (hm.recall_macro, skm.recall_score),
        (hm.f1_macro, skm.f1_score),
    ):
        assert ours(cm) == pytest.approx(sk(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    labels = list(range(k))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(hm.precision_per_class(cm), p, atol=1e-12)
    np.testing.assert_allclose(hm.recall_per_class(cm), r, atol=1e-12)
    np.testing.assert_allclose(hm.f1_per_class(cm), f, atol=1e-12)
    np.testing.assert_array_equal(cm.sum(axis=1), s)


def test_split_score_per_class_matches_classification_report():
    rng = np.random.default_rng(3)
    y_true, y_pred = random_case(rng, 10, 2000, 1, 2)
    names = [f"c{i}" for i in range(10)]
    score = hm.split_score(hm.confusion_matrix(y_true, y_pred, 10), names, resamples=0)
    report = skm.classification_report(
        y_true, y_pred, labels=range(10), target_names=names, output_dict=True, zero_division=0
    )
    for c in score.per_class:
        assert c.precision == pytest.approx(report[c.name]["precision"])
        assert c.recall == pytest.approx(report[c.name]["recall"])
        assert c.f1 == pytest.approx(report[c.name]["f1-score"])
        assert c.support == report[c.name]["support"]
    assert score.n == 2000


def test_metrics_accept_a_stack_of_matrices():
    rng = np.random.default_rng(4)
    cms = np.stack([hm.confusion_matrix(*random_case(rng, 6, 200), 6) for _ in range(8)])
    for name, fn in hm.METRICS.items():
        batched = fn(cms)
        assert batched.shape == (8,), name
        np.testing.assert_allclose(batched, [fn(cm) for cm in cms], atol=1e-12)


def test_empty_matrix_scores_zero_without_warnings():
    cm = np.zeros((3, 3), dtype=np.int64)
    assert hm.accuracy(cm) == 0.0
    assert hm.f1_macro(cm) == 0.0
    assert hm.bootstrap_ci(cm) == (0.0, 0.0)


def test_bootstrap_ci_matches_row_resampling():
    """Multinomial cell draws must give the interval that resampling rows gives."""
    rng = np.random.default_rng(5)
    y_true, y_pred = random_case(rng, 10, 800)
    cm = hm.confusion_matrix(y_true, y_pred, 10)
    for metric in ("accuracy", "f1_macro"):
        low, high = hm.bootstrap_ci(cm, metric, resamples=4000, seed=1)
        rows = np.random.default_rng(2).integers(0, len(y_true), size=(4000, len(y_true)))
        fn = hm.metric_function(metric)
        naive = [fn(hm.confusion_matrix(y_true[r], y_pred[r], 10)) for r in rows]
        n_low, n_high = np.quantile(naive, [0.025, 0.975])
        assert low == pytest.approx(n_low, abs=0.01)
        assert high == pytest.approx(n_high, abs=0.01)
        assert low < fn(cm) < high


def test_bootstrap_ci_is_seeded():
    cm = hm.confusion_matrix(*random_case(np.random.default_rng(6), 10, 500), 10)
    assert hm.bootstrap_ci(cm, "f1_macro", seed=9) == hm.bootstrap_ci(cm, "f1_macro", seed=9)
    assert hm.bootstrap_ci(cm, "f1_macro", seed=9) != hm.bootstrap_ci(cm, "f1_macro", seed=10)


def test_bootstrap_ci_memory_is_bounded_for_many_classes_and_blocks_change_nothing(monkeypatch):
    """Regression: all resampled K x K matrices were held at once (K = 200: 320 MB; K = 1000: 8 GB)."""
    import tracemalloc

    cm = hm.confusion_matrix(*random_case(np.random.default_rng(8), 200, 5000), 200)
    tracemalloc.start()
    try:
        blocked = hm.bootstrap_ci(cm, "f1_macro", resamples=1000, seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 120 * 2**20
    monkeypatch.setattr(hm, "BOOTSTRAP_BLOCK_CELLS", 1 << 40)  # one block
    assert hm.bootstrap_ci(cm, "f1_macro", resamples=1000, seed=3) == blocked


def test_unknown_metric_names_the_choices():
    with pytest.raises(ValueError, match="accuracy"):
        hm.metric_function("auc")


@pytest.mark.parametrize("k", [2, 10, 12, 100])
def test_score_predictions_splits_match_per_split_confusion_matrices(k):
    """Regression: the usage column is int8, and usage * K*K overflowed it for K >= 12."""
    from pathlib import Path

    from harness.competition import IGNORED, PRIVATE, PUBLIC, Competition, Solution
    from harness.scoring import score_predictions

    rng = np.random.default_rng(k)
    n = 600
    usage = rng.choice([PUBLIC, PRIVATE, IGNORED], size=n).astype(np.int8)
    labels = np.where(usage == IGNORED, -1, rng.integers(0, k, n))
    solution = Solution(ids=tuple(f"i{r}" for r in range(n)), labels=labels, usage=usage)
    competition = Competition(root=Path("."), name="c", title="c", classes=tuple(f"c{i}" for i in range(k)))
    preds = np.where(rng.random(n) < 0.7, np.maximum(labels, 0), rng.integers(0, k, n))
    report = score_predictions(preds, solution, competition, resamples=0)
    for name, code in (("public", PUBLIC), ("private", PRIVATE)):
        rows = usage == code
        expected = hm.confusion_matrix(labels[rows], preds[rows], k)
        np.testing.assert_array_equal(report.split(name).confusion_matrix, expected)
        assert report.split(name).accuracy == pytest.approx(skm.accuracy_score(labels[rows], preds[rows]))
    scored = usage != IGNORED
    np.testing.assert_array_equal(report.all.confusion_matrix, hm.confusion_matrix(labels[scored], preds[scored], k))
