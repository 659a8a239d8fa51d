"""One scoring path: predictions aligned to the solution rows -> scores on three splits.

A CSV is parsed into predictions; a checkpoint is run into predictions; both end here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.competition import PRIVATE, PUBLIC, Competition, Solution, load_solution
from harness.errors import SubmissionError
from harness.metrics import SplitScore, split_score
from harness.sniff import sniff

SPLITS = ("public", "private", "all")
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class ScoreReport:
    primary_metric: str
    public: SplitScore
    private: SplitScore
    all: SplitScore

    def split(self, name: str) -> SplitScore:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def primary(self, split: str = "public") -> float:
        return self.split(split).metric(self.primary_metric)

    def to_dict(self) -> dict:
        return {"primary_metric": self.primary_metric, **{s: self.split(s).to_dict() for s in SPLITS}}


def score_predictions(
    predictions: np.ndarray,
    solution: Solution,
    competition: Competition,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> ScoreReport:
    """Score class indices given in solution row order (-1 allowed only on Ignored rows)."""
    predictions = np.asarray(predictions, dtype=np.int64)
    k = competition.num_classes
    if predictions.shape != solution.labels.shape:
        raise SubmissionError(
            f"expected {len(solution)} predictions, one per test image, got {predictions.shape[0]}."
        )
    scored = solution.scored
    bad = scored & ((predictions < 0) | (predictions >= k))
    if bad.any():
        raise SubmissionError(
            f"{int(bad.sum())} test image(s) have no valid prediction; every prediction must be a class "
            f"index from 0 to {k - 1}."
        )
    truth, pred = solution.labels[scored], predictions[scored]
    usage = solution.usage[scored].astype(np.int64)  # int8 on disk: usage * K*K overflows it from K = 12
    # One pass builds the per-split matrices: index = usage * K*K + true * K + pred.
    cms = np.bincount(usage * (k * k) + truth * k + pred, minlength=2 * k * k).reshape(2, k, k)
    parts = {"public": cms[PUBLIC], "private": cms[PRIVATE], "all": cms[PUBLIC] + cms[PRIVATE]}
    scores = {
        name: split_score(cm, competition.classes, competition.primary_metric, resamples, seed + i)
        for i, (name, cm) in enumerate(parts.items())
    }
    return ScoreReport(primary_metric=competition.primary_metric, **scores)


def file_kind(head: bytes) -> str:
    """'checkpoint' or 'csv', decided by content (the first bytes), never by file name."""
    return sniff(head)


def score_file(
    path: str | Path,
    competition: Competition,
    solution: Solution | None = None,
    device: str | None = None,
    save_predictions: str | Path | None = None,
) -> ScoreReport:
    """Score a submission file of either kind; raises ``SubmissionError`` when it is refused."""
    if solution is None:
        solution = load_solution(competition)
    predictions = predict_file(path, competition, solution, device=device)
    if save_predictions is not None:
        from harness.submission import write_predictions_csv

        write_predictions_csv(save_predictions, solution.ids, predictions, competition.classes)
    return score_predictions(predictions, solution, competition)


def predict_file(
    path: str | Path,
    competition: Competition,
    solution: Solution | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Predictions (class indices in solution row order) from a CSV or a checkpoint file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise SubmissionError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise SubmissionError(f"{path} is a folder, not a submission file.") from None
    except OSError as exc:
        raise SubmissionError(f"{path} cannot be read ({exc.strerror}).") from None
    kind = file_kind(head)
    if kind == "csv":
        from harness.submission import read_csv_submission

        if solution is None:
            solution = load_solution(competition)
        return read_csv_submission(path, solution, competition)
    from harness.checkpoint import predict_checkpoint  # imports torch: checkpoints only

    return predict_checkpoint(path, competition, device=device)

