"""Evidence for the organizer: shared errors, duplicate files, checkpoint/CSV mismatch, odd scores.

Evidence, not verdicts. Every function returns ``Evidence`` records: the teams, the numbers, and
``how``, one sentence saying how the numbers were computed. ``flagged`` only says that a number
crossed the level the organizer chose; a flagged record is a reason to look, never proof (two
students who studied together may share mistakes honestly).

Pure numpy/scipy over arrays; no Flask, no database. ``predictions`` is int ``[T, n]`` (one row
per team, the same rows in the same order), ``truth`` is int ``[n]``.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

ALPHA = 0.05  # family-wise level for the shared-errors test (Bonferroni over all pairs)
MIN_TEAMS_FOR_DIFFICULTY = 10  # fewer teams: every row counts as equally hard


@dataclass(frozen=True)
class Evidence:
    """One finding: ``kind``, the teams involved, its numbers, how they were computed."""

    kind: str  # "shared_errors" | "duplicate_file" | "checkpoint_csv" | "implausible_score"
    teams: tuple[str, ...]
    numbers: dict = field(default_factory=dict)
    p_value: float | None = None
    flagged: bool = False
    how: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["teams"] = list(self.teams)
        return out


# --------------------------------------------------------------------------- shared errors

def shared_error_counts(predictions: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``[T, T]``: rows where both teams are wrong *with the same label*."""
    predictions = np.asarray(predictions, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    wrong = predictions != truth[None, :]
    out = np.zeros((predictions.shape[0],) * 2)
    for label in range(num_classes):
        w = (wrong & (predictions == label)).astype(np.float32)
        out += w @ w.T
    return np.rint(out).astype(np.int64)


def expected_shared_errors(predictions: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``[T, T]``: the expected shared-error count if the teams erred independently.

    Team ``i`` is wrong on row ``r`` with the probability ``error_probabilities`` fits (its own
    error rate and the row's difficulty, independently of other teams). Two wrong answers on a row of
    class ``y`` agree with probability ``sum_l pi[y, l]**2``, ``pi[y]`` being the wrong labels all
    teams gave on rows of class ``y``. The expectation sums the product over the rows.
    """
    predictions = np.asarray(predictions, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    wrong = predictions != truth[None, :]
    p = error_probabilities(wrong)
    cells = np.broadcast_to(truth, predictions.shape)[wrong] * num_classes + predictions[wrong]
    confusion = np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    pi = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    agree = (pi ** 2).sum(axis=1)[truth]  # [rows]
    return (p * agree[None, :]) @ p.T


def error_probabilities(wrong: np.ndarray, iterations: int = 30) -> np.ndarray:
    """``[T, n]``: P(team i is wrong on row r) under ``logit p = a_i + b_r`` (a Rasch model).

    ``a_i`` is the team's weakness and ``b_r`` the row's difficulty, fitted by maximum likelihood
    (alternating Newton steps) so that each team's expected errors equal its errors and each row's
    expected errors equal the errors all teams made on it. With fewer than
    ``MIN_TEAMS_FOR_DIFFICULTY`` teams the rows cannot be told apart: ``p = error rate``.
    """
    wrong = np.asarray(wrong, dtype=np.float64)
    teams, rows = wrong.shape
    error = wrong.mean(axis=1)
    if teams < MIN_TEAMS_FOR_DIFFICULTY:
        return np.repeat(error[:, None], rows, axis=1)
    clip = 12.0
    eps = 0.5 / rows
    a = np.log(np.clip(error, eps, 1 - eps) / (1 - np.clip(error, eps, 1 - eps)))
    b = np.zeros(rows)
    with np.errstate(over="ignore"):
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-(a[:, None] + b[None, :])))
            b = np.clip(b + (wrong - p).sum(axis=0) / np.maximum((p * (1 - p)).sum(axis=0), 1e-9), -clip, clip)
            p = 1.0 / (1.0 + np.exp(-(a[:, None] + b[None, :])))
            a = np.clip(a + (wrong - p).sum(axis=1) / np.maximum((p * (1 - p)).sum(axis=1), 1e-9), -clip, clip)
        return 1.0 / (1.0 + np.exp(-(a[:, None] + b[None, :])))


def shared_errors(predictions: np.ndarray, truth: np.ndarray, teams: Sequence[str], num_classes: int,
                  alpha: float = ALPHA) -> list[Evidence]:
    """Every pair of teams, most suspicious first: shared wrong answers against chance.

    The p-value is the Poisson upper tail ``P(X >= observed)`` with the independent-errors
    expectation as mean (a sum of rare independent events; Poisson is conservative here because
    its variance is at least the true one). A pair is flagged when its p-value is below
    ``alpha / number of pairs`` (Bonferroni), so that among independent teams the chance of any
    flag at all is at most ``alpha``.
    """
    from scipy.stats import poisson

    predictions = np.asarray(predictions, dtype=np.int64)
    if len(teams) != predictions.shape[0]:
        raise ValueError("one team name per row of predictions")
    observed = shared_error_counts(predictions, truth, num_classes)
    expected = expected_shared_errors(predictions, truth, num_classes)
    i, j = np.triu_indices(len(teams), k=1)
    pairs = len(i)
    p_values = poisson.sf(observed[i, j] - 1, np.maximum(expected[i, j], 1e-12))
    accuracy = (predictions == np.asarray(truth)[None, :]).mean(axis=1)
    level = alpha / max(pairs, 1)
    how = (
        "Rows where both teams gave the same wrong label, against the count expected if each team erred "
        "independently (a fitted model of each team's error rate and each row's difficulty), with wrong labels "
        f"as common as across all teams; Poisson upper-tail p-value, flagged below {alpha:g}/{pairs} pairs."
    )
    out = []
    for a, b, p in sorted(zip(i.tolist(), j.tolist(), p_values.tolist()), key=lambda t: (t[2], t[0], t[1])):
        e = float(expected[a, b])
        out.append(Evidence(
            kind="shared_errors",
            teams=(teams[a], teams[b]),
            numbers={
                "shared_wrong": int(observed[a, b]),
                "expected": e,
                "ratio": float(observed[a, b] / e) if e > 0 else math.inf,
                "accuracy": [float(accuracy[a]), float(accuracy[b])],
                "rows": int(predictions.shape[1]),
            },
            p_value=float(p),
            flagged=bool(p < level),
            how=how,
        ))
    return out


# --------------------------------------------------------------------------- duplicate files

def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def duplicate_files(files: Iterable[tuple[str, str, str]]) -> list[Evidence]:
    """``files`` holds ``(team, file label, sha256)``; one record per digest sent by two or more teams."""
    by_digest: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for team, label, digest in files:
        by_digest[digest].append((team, label))
    out = []
    for digest, uses in sorted(by_digest.items()):
        teams = sorted({team for team, _ in uses})
        if len(teams) < 2:
            continue
        out.append(Evidence(
            kind="duplicate_file",
            teams=tuple(teams),
            numbers={"sha256": digest, "files": sorted(label for _, label in uses)},
            flagged=True,
            how="The SHA-256 digests of the submitted files' bytes are equal: the files are byte-for-byte identical.",
        ))
    return out


# --------------------------------------------------------------------------- checkpoint vs CSV

def checkpoint_csv_mismatch(team: str, checkpoint_predictions: np.ndarray, csv_predictions: np.ndarray,
                            max_share: float = 0.02) -> Evidence:
    """How often a team's checkpoint, run by the server, disagrees with the CSV the team uploaded."""
    a = np.asarray(checkpoint_predictions)
    b = np.asarray(csv_predictions)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("the checkpoint's and the CSV's predictions must cover the same rows")
    share = float(np.mean(a != b))
    return Evidence(
        kind="checkpoint_csv",
        teams=(team,),
        numbers={"disagree": int(np.count_nonzero(a != b)), "rows": int(a.size), "share": share,
                 "max_share": max_share},
        flagged=share > max_share,
        how=f"The share of test rows where the server's run of the checkpoint and the uploaded CSV predict "
            f"different labels, flagged above {max_share:.0%}.",
    )


# --------------------------------------------------------------------------- implausible scores

def implausible_scores(teams: Sequence[str], public: Sequence[float], private: Sequence[float],
                       public_rows: int, private_rows: int, baseline: float, margin: float = 0.10,
                       z: float = 1.96, higher_is_better: bool = True) -> list[Evidence]:
    """Teams far above the reference baseline whose public score also beats their private one by
    more than the noise of two independent splits allows (accuracy-like scores in [0, 1]).

    Flagged when ``public - baseline > margin`` and ``public - private > z * se``, with
    ``se = sqrt(pub(1-pub)/public_rows + priv(1-priv)/private_rows)``: the gap's 95 % interval
    (z = 1.96) does not reach 0. Typical of a model tuned on the public rows (or of leaked labels).
    For a lower-is-better metric both differences are taken the other way round ("above" = better).
    """
    public = np.asarray(public, dtype=np.float64)
    private = np.asarray(private, dtype=np.float64)
    se = np.sqrt(public * (1 - public) / public_rows + private * (1 - private) / private_rows)
    sign = 1.0 if higher_is_better else -1.0
    out = []
    for k, team in enumerate(teams):
        gap = sign * float(public[k] - private[k])
        above = sign * float(public[k] - baseline)
        out.append(Evidence(
            kind="implausible_score",
            teams=(team,),
            numbers={"public": float(public[k]), "private": float(private[k]), "baseline": float(baseline),
                     "above_baseline": above, "gap": gap, "gap_limit": float(z * se[k])},
            flagged=bool(above > margin and gap > z * se[k]),
            how=f"Public score minus the reference baseline (flag above {margin:g}) and public minus private "
                f"score against {z:g} standard errors of two independent splits of {public_rows} and "
                f"{private_rows} rows.",
        ))
    return sorted(out, key=lambda e: (not e.flagged, -e.numbers["gap"]))
