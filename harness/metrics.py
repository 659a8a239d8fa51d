"""Classification metrics as pure functions of one confusion matrix.

Conventions follow scikit-learn so the tests can hold us to it: ``cm[t, p]`` counts rows whose
true class is ``t`` and predicted class is ``p``; a ratio with a zero denominator is 0
(``zero_division=0``); macro averages run over the classes present in the truth or the
predictions (scikit-learn's default ``labels``). Every function also accepts a stack of matrices
``[..., K, K]`` and returns one value per matrix, which is what makes the bootstrap vectorised.

``METRICS`` is the registry: one ``Metric`` per score a competition can rank by or a report shows
(name, label, function of the confusion matrix, direction, the sentence that explains it, its
scikit-learn and Kaggle equivalents). Scoring, the stored score report, the leaderboard's tables,
the honest board's direction, the Evaluation page, the Kaggle export and ``podium score`` all read
it, so a new metric is one ``register`` call here plus its row in tests/test_metric_registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

BOOTSTRAP_BLOCK_CELLS = 1 << 22  # int64 cells of resampled confusion matrices held at once (32 MB)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` int64 counts; rows are true classes, columns predicted ones."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den != 0)
    return out


def accuracy(cm: np.ndarray) -> np.ndarray | float:
    cm = np.asarray(cm)
    return _ratio(np.trace(cm, axis1=-2, axis2=-1), cm.sum(axis=(-2, -1)))[()]


def precision_per_class(cm: np.ndarray) -> np.ndarray:
    return _ratio(np.diagonal(cm, axis1=-2, axis2=-1), np.asarray(cm).sum(axis=-2))


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    return _ratio(np.diagonal(cm, axis1=-2, axis2=-1), np.asarray(cm).sum(axis=-1))


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    # 2TP / (2TP + FP + FN) = 2TP / (row sum + column sum): scikit-learn's formula, zero_division=0.
    return _ratio(2 * tp, cm.sum(axis=-1) + cm.sum(axis=-2))


def present_classes(cm: np.ndarray) -> np.ndarray:
    """Mask of classes that occur in the truth or the predictions."""
    cm = np.asarray(cm)
    return (cm.sum(axis=-1) + cm.sum(axis=-2)) > 0


def _macro(per_class: np.ndarray, cm: np.ndarray) -> np.ndarray | float:
    mask = present_classes(cm)
    return _ratio((per_class * mask).sum(axis=-1), mask.sum(axis=-1))[()]


def precision_macro(cm: np.ndarray) -> np.ndarray | float:
    return _macro(precision_per_class(cm), cm)


def recall_macro(cm: np.ndarray) -> np.ndarray | float:
    return _macro(recall_per_class(cm), cm)


def f1_macro(cm: np.ndarray) -> np.ndarray | float:
    return _macro(f1_per_class(cm), cm)


@dataclass(frozen=True)
class Metric:
    """One registered metric: ``fn`` maps a confusion matrix (or a stack of them) to its value(s)."""

    name: str  # the key in competition.toml (primary_metric), in score reports and in the API
    label: str  # for people: table headers
    fn: Callable[[np.ndarray], np.ndarray | float]
    description: str  # Markdown, completes "Submissions are ranked by ...": the Evaluation page, the Kaggle export
    sklearn: str  # the scikit-learn function that computes the same number (the tests hold us to it)
    kaggle: str | None = None  # the name of Kaggle's matching metric (podium kaggle export); None: there is none
    higher_is_better: bool = True  # the boards, tiers, ranges, Ladder and audit rank by it in this direction

    def __call__(self, cm: np.ndarray) -> np.ndarray | float:
        return self.fn(cm)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    METRICS[metric.name] = metric
    return metric


register(Metric(
    "accuracy", "Accuracy", accuracy,
    description="**accuracy**: the share of scored test images whose predicted class is the true class",
    sklearn="accuracy_score", kaggle="Categorization Accuracy",
))
register(Metric(
    "precision_macro", "Precision (macro)", precision_macro,
    description="**macro-averaged precision**: for each class, the share of images predicted as that class that "
    "really are; averaged over the classes with equal weight",
    sklearn="precision_score with average='macro'", kaggle="Precision (Macro)",
))
register(Metric(
    "recall_macro", "Recall (macro)", recall_macro,
    description="**macro-averaged recall**: for each class, the share of its images predicted as that class; "
    "averaged over the classes with equal weight",
    sklearn="recall_score with average='macro'", kaggle="Recall (Macro)",
))
register(Metric(
    "f1_macro", "F1 (macro)", f1_macro,
    description="**macro-averaged F1**: the F1 score of each class (the harmonic mean of its precision and "
    "recall), averaged over the classes with equal weight",
    sklearn="f1_score with average='macro'", kaggle="F-Score (Macro), i.e. Mean F1 averaged over classes",
))

METRIC_NAMES = tuple(METRICS)  # in registration order: the column order of every table


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}") from None


def metric_function(name: str):
    return get_metric(name).fn


def bootstrap_ci(
    cm: np.ndarray,
    metric: str = "accuracy",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over the rows behind ``cm``.

    Resampling n rows with replacement puts each draw in cell (t, p) with probability
    cm[t, p] / n, independently, so a resampled confusion matrix is exactly a multinomial draw
    over the cells. Drawing ``resamples`` of them at once gives the same distribution as
    resampling rows, at a cost independent of n.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    if n == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    if metric == "accuracy":
        # Accuracy sees only how many draws land on the diagonal: merging the multinomial's cells
        # into {diagonal, off-diagonal} gives exactly Binomial(n, accuracy), a hundred times cheaper.
        values = rng.binomial(n, np.trace(cm) / n, size=resamples) / n
    else:
        # Cells with no rows can never be drawn; leave them out of the multinomial. The resampled
        # matrices are built a block at a time (at most BOOTSTRAP_BLOCK_CELLS cells), so memory stays
        # bounded for many classes (K = 1000 would otherwise need 8 GB); consecutive draws from one
        # generator give the same numbers as one big draw.
        flat = cm.ravel()
        nonzero = np.flatnonzero(flat)
        fn = metric_function(metric)
        step = max(1, BOOTSTRAP_BLOCK_CELLS // flat.size)
        parts = []
        for start in range(0, resamples, step):
            size = min(step, resamples - start)
            draws = np.zeros((size, flat.size), dtype=np.int64)
            draws[:, nonzero] = rng.multinomial(n, flat[nonzero] / n, size=size)
            parts.append(np.atleast_1d(fn(draws.reshape(size, *cm.shape))))
        values = np.concatenate(parts)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))


@dataclass(frozen=True)
class ClassScore:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SplitScore:
    """Every registered metric of one split (Public, Private or all scored rows)."""

    n: int
    values: dict[str, float]  # metric name -> value, for every registered metric
    per_class: tuple[ClassScore, ...]
    confusion_matrix: np.ndarray
    ci_low: float
    ci_high: float

    def metric(self, name: str) -> float:
        return float(self.values[get_metric(name).name])

    def __getattr__(self, name: str) -> float:
        """``score.accuracy``, ``score.f1_macro``: a registered metric by attribute."""
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            **{name: self.values[name] for name in METRICS},
            "ci": [self.ci_low, self.ci_high],
            "per_class": [
                {"class": c.name, "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            ],
            "confusion_matrix": self.confusion_matrix.tolist(),
        }


def split_score(
    cm: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    primary_metric: str = "accuracy",
    resamples: int = 1000,
    seed: int = 0,
) -> SplitScore:
    """All registered metrics of one confusion matrix, with a bootstrap CI of the primary metric."""
    cm = np.asarray(cm, dtype=np.int64)
    p, r, f = precision_per_class(cm), recall_per_class(cm), f1_per_class(cm)
    support = cm.sum(axis=1)
    low, high = bootstrap_ci(cm, primary_metric, resamples=resamples, seed=seed) if resamples else (0.0, 0.0)
    return SplitScore(
        n=int(cm.sum()),
        values={name: float(metric.fn(cm)) for name, metric in METRICS.items()},
        per_class=tuple(
            ClassScore(str(name), float(p[i]), float(r[i]), float(f[i]), int(support[i]))
            for i, name in enumerate(class_names)
        ),
        confusion_matrix=cm,
        ci_low=low,
        ci_high=high,
    )
