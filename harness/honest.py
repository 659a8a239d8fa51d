"""Honest leaderboard numbers: tiers, rank ranges, a shake-up forecast, the Ladder, medals.

Every function here is pure numpy over one split's row-level results:

- ``predictions``: int class indices ``[T, n]``, one row per team, one column per scored row of
  the split (the same rows, in the same order, for every team);
- ``truth``: int class indices ``[n]``.

A team is a row index of ``predictions``; every per-team result is indexed the same way. A
correctness matrix (bool ``[T, n]``) can stand in for predictions + truth with
``from_correct``. Scores are the metric's own values; everything that ranks (ranks, tiers, ranges,
the forecast, the Ladder) follows the registered metric's direction (``Metric.higher_is_better``;
a callable metric is taken as higher-is-better), through ``orientation``.

Resampling is *paired*: one resample draws row indices once and every team is scored on the same
rows, so two teams' scores move together exactly as much as their predictions agree. Resamples
are drawn from ``numpy.random.default_rng(seed)`` a block at a time, which yields the same
indices as drawing them one resample at a time; a fixed seed makes a board stable between
requests.

The API (see ``honest_board`` for the one call a board needs):

- ``tiers``: a team stays in the current tier while the tier's first team is not significantly
  better (one-sided paired bootstrap test at ``alpha``);
- ``rank_ranges``: each team's 90 % interval of its rank over the resamples;
- ``shakeup_forecast``: the probability that a team's private rank differs from its public rank
  (board positions, equal scores in the board's order, when given that order);
- ``shown_scores``: the public score a team is shown under the ``public_board`` setting (exact,
  rounded, or Blum & Hardt's Ladder);
- ``assign_medals``: Kaggle-style medals for the top fractions of ranked teams.

No torch, no Flask, no database.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
ALPHA = 0.05  # one-sided level of the tier test
RANGE_CONFIDENCE = 0.90
TWO_STAGE = True  # the forecast's private splits also carry the public scores' own uncertainty
_BLOCK_DRAWS = 1 << 22  # row indices drawn at once (32 MB of int64)
_BLOCK_CELLS = 1 << 24  # resampled confusion-matrix cells held at once (64 MB of float32)


# --------------------------------------------------------------------------- inputs

def from_correct(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predictions, truth)`` equivalent to a correctness matrix, for accuracy only.

    A right answer becomes prediction 1 and a wrong one 0 against a truth of all ones, so
    accuracy is unchanged (other metrics are not meaningful on this encoding).
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2:
        raise ValueError(f"correct must be [teams, rows], got shape {correct.shape}")
    return correct.astype(np.int64), np.ones(correct.shape[1], dtype=np.int64)


def _check(predictions: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions)
    truth = np.asarray(truth)
    if predictions.ndim != 2 or truth.ndim != 1 or predictions.shape[1] != truth.shape[0]:
        raise ValueError(
            f"predictions must be [teams, rows] and truth [rows]; got {predictions.shape} and {truth.shape}"
        )
    if truth.shape[0] == 0:
        raise ValueError("no rows to score")
    return predictions.astype(np.int64, copy=False), truth.astype(np.int64, copy=False)


def orientation(metric: str | Callable) -> int:
    """+1 when a higher value of ``metric`` is better, -1 when a lower one is: ranking by
    ``orientation * score`` (higher first) ranks by the metric's own direction."""
    if callable(metric):
        return 1
    from harness import metrics

    return 1 if metrics.get_metric(metric).higher_is_better else -1


def _metric_fn(metric: str | Callable) -> Callable:
    if callable(metric):
        return metric
    from harness import metrics

    return metrics.metric_function(metric)


# --------------------------------------------------------------------------- resampling

def resample_counts(rows: int, resamples: int = RESAMPLES, seed: int = SEED, draw: int | None = None,
                    two_stage: bool = False) -> np.ndarray:
    """How often each of ``rows`` rows is drawn in each resample: int32 ``[resamples, rows]``.

    Each resample draws ``draw`` row indices (default ``rows``: a bootstrap resample) uniformly
    with replacement, ``rng.integers(0, rows, draw)`` per resample in order. Scores computed from
    these counts equal scores of the resampled rows, at the cost of one matrix product.

    ``two_stage``: each resample first draws a bootstrap copy of the rows (``rows`` indices, the
    population the rows might have come from), then ``draw`` rows from that copy; a score on it
    varies as much as the public estimate *and* a new split together.
    """
    draw = rows if draw is None else int(draw)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, rows), dtype=np.int32)
    step = max(1, _BLOCK_DRAWS // max(draw + (rows if two_stage else 0), 1))
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        if two_stage:  # one resample at a time: the copy, then the draw from it
            idx = np.empty((size, draw), dtype=np.int64)
            for b in range(size):
                population = rng.integers(0, rows, size=rows)
                idx[b] = population[rng.integers(0, rows, size=draw)]
        else:
            idx = rng.integers(0, rows, size=(size, draw))
        flat = (idx + (np.arange(size, dtype=np.int64) * rows)[:, None]).ravel()
        counts[start:start + size] = np.bincount(flat, minlength=size * rows).reshape(size, rows)
    return counts


def scores(predictions: np.ndarray, truth: np.ndarray, metric: str | Callable = "accuracy",
           num_classes: int | None = None) -> np.ndarray:
    """Each team's observed score on all rows: float64 ``[T]``."""
    predictions, truth = _check(predictions, truth)
    ones = np.ones((1, truth.shape[0]), dtype=np.int32)
    return resampled_scores(predictions, truth, ones, metric, num_classes)[0]


def resampled_scores(predictions: np.ndarray, truth: np.ndarray, counts: np.ndarray,
                     metric: str | Callable = "accuracy", num_classes: int | None = None) -> np.ndarray:
    """Every team's score in every resample given by ``counts`` (``resample_counts``): ``[B, T]``.

    Accuracy is one float32 matrix product (exact: integer counts below 2**24). Any other metric
    builds every team's resampled confusion matrices as one product of the counts with a sparse
    row -> (team, truth, prediction) cell indicator, a block of teams at a time, then applies
    the metric to the stack ``[B, teams, K, K]``.
    """
    predictions, truth = _check(predictions, truth)
    counts = np.asarray(counts)
    totals = counts.sum(axis=1, dtype=np.int64).astype(np.float64)
    if metric == "accuracy":
        correct = (predictions == truth).astype(np.float32)
        hits = counts.astype(np.float32) @ correct.T
        return hits.astype(np.float64) / totals[:, None]
    from scipy import sparse

    fn = _metric_fn(metric)
    k = int(num_classes if num_classes is not None else max(predictions.max(), truth.max()) + 1)
    teams, rows = predictions.shape
    weights = counts.astype(np.float32)
    out = np.empty((counts.shape[0], teams))
    block = max(1, _BLOCK_CELLS // max(1, counts.shape[0] * k * k))
    for start in range(0, teams, block):
        stop = min(teams, start + block)
        size = stop - start
        # one column per (team, truth, prediction) cell; row r of the split falls in one per team
        cells = (np.arange(size)[:, None] * (k * k) + truth[None, :] * k + predictions[start:stop]).ravel()
        onehot = sparse.csr_matrix(
            (np.ones(size * rows, dtype=np.float32), (np.tile(np.arange(rows), size), cells)),
            shape=(rows, size * k * k),
        )
        cm = np.rint(np.asarray((onehot.T @ weights.T).T)).astype(np.int64)
        out[:, start:stop] = fn(cm.reshape(-1, size, k, k))
    return out


def ranks(score_matrix: np.ndarray, tiebreak: Sequence[int] | None = None) -> np.ndarray:
    """Competition ranks ("1224"): 1 + the number of teams with a strictly higher score.

    ``score_matrix`` is ``[..., T]``; the ranks have the same shape. Exact (no float offsets).
    With ``tiebreak`` (``[T]``, lower first: the board's order, where equal scores go to the
    earlier submission), the ranks are board positions instead ("1234"): equal scores are
    ordered by it, as the board orders them.
    """
    s = np.asarray(score_matrix, dtype=np.float64)
    if tiebreak is not None:
        flat = s.reshape(-1, s.shape[-1])
        key = np.broadcast_to(np.asarray(tiebreak, dtype=np.int64), flat.shape)
        order = np.lexsort((key, -flat), axis=1)  # score descending, then tiebreak ascending
        out = np.empty(flat.shape, dtype=np.int64)
        np.put_along_axis(out, order, np.broadcast_to(np.arange(1, flat.shape[1] + 1), flat.shape), axis=1)
        return out.reshape(s.shape)
    flat = s.reshape(-1, s.shape[-1])
    order = np.argsort(-flat, axis=1, kind="stable")
    ordered = np.take_along_axis(flat, order, axis=1)
    position = np.broadcast_to(np.arange(flat.shape[1]), flat.shape)
    new = np.ones(flat.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(new, position, 0), axis=1)
    out = np.empty(flat.shape, dtype=np.int64)
    np.put_along_axis(out, order, first + 1, axis=1)
    return out.reshape(s.shape)


# --------------------------------------------------------------------------- tiers and ranges

def _ranking(observed: np.ndarray, ranking: Sequence[int] | None) -> np.ndarray:
    if ranking is None:
        return np.argsort(-observed, kind="stable")
    ranking = np.asarray(ranking, dtype=np.int64)
    if sorted(ranking.tolist()) != list(range(observed.shape[0])):
        raise ValueError("ranking must list every team (row of predictions) exactly once")
    return ranking


def tiers_from_scores(boot: np.ndarray, ranking: Sequence[int], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Tiers from resampled scores ``[B, T]`` and a ranking (team indices, best first).

    Walking down the ranking, the first team opens tier 1. Each next team is compared with the
    *first team of the current tier*: the one-sided p-value is the share of resamples in which
    that first team does not beat it (difference <= 0). When the p-value is below ``alpha`` the
    gap is significant and the team opens the next tier; otherwise it joins the current one.
    Returns ``(tier [T], p_value [T])`` indexed by team: each team's p-value against the head
    it was compared with (0 for the leader; below ``alpha`` for a team that opened a tier).
    """
    boot = np.asarray(boot)
    tier = np.zeros(boot.shape[1], dtype=np.int64)
    p_value = np.zeros(boot.shape[1])
    current, head = 0, None
    for team in ranking:
        if head is not None:
            p = float(np.mean(boot[:, head] - boot[:, team] <= 0))
            p_value[team] = p
            if p >= alpha:
                tier[team] = current
                continue
        current += 1
        head = team
        tier[team] = current
    return tier, p_value


def tiers(predictions: np.ndarray, truth: np.ndarray, ranking: Sequence[int] | None = None, *,
          metric: str | Callable = "accuracy", num_classes: int | None = None, alpha: float = ALPHA,
          resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Tier of each team (1, 2, ...): see ``tiers_from_scores``. ``ranking`` defaults to the
    observed scores, best first (ties in row order)."""
    predictions, truth = _check(predictions, truth)
    sign = orientation(metric)
    ranking = _ranking(sign * scores(predictions, truth, metric, num_classes), ranking)
    boot = resampled_scores(predictions, truth, resample_counts(truth.shape[0], resamples, seed), metric, num_classes)
    return tiers_from_scores(sign * boot, ranking, alpha)[0]


def rank_ranges_from_scores(boot: np.ndarray, confidence: float = RANGE_CONFIDENCE) -> np.ndarray:
    """``[T, 2]`` int: the (1-confidence)/2 and (1+confidence)/2 quantiles of each team's rank
    over the resamples (the inverted-CDF quantile: the smallest rank reached by that share).
    ``boot`` is oriented: higher is better."""
    r = ranks(boot)
    tail = (1.0 - confidence) / 2.0
    lo = np.quantile(r, tail, axis=0, method="inverted_cdf")
    hi = np.quantile(r, 1.0 - tail, axis=0, method="inverted_cdf")
    return np.stack([lo, hi], axis=1).astype(np.int64)


def rank_ranges(predictions: np.ndarray, truth: np.ndarray, *, metric: str | Callable = "accuracy",
                num_classes: int | None = None, confidence: float = RANGE_CONFIDENCE,
                resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Each team's 90 % rank interval ``[T, 2]`` when all teams' rows are resampled together."""
    predictions, truth = _check(predictions, truth)
    boot = resampled_scores(predictions, truth, resample_counts(truth.shape[0], resamples, seed), metric, num_classes)
    return rank_ranges_from_scores(orientation(metric) * boot, confidence)


# --------------------------------------------------------------------------- shake-up forecast

def shakeup_forecast(predictions: np.ndarray, truth: np.ndarray, private_rows: int, *,
                     public_rank: Sequence[int] | None = None, metric: str | Callable = "accuracy",
                     num_classes: int | None = None, resamples: int = RESAMPLES, seed: int = SEED + 1,
                     two_stage: bool = TWO_STAGE, tiebreak: Sequence[int] | None = None) -> np.ndarray:
    """Probability ``[T]`` that each team's private rank differs from its public rank.

    Each simulated private split draws ``private_rows`` rows with replacement from the public rows
    (the same rows for every team) and ranks the teams on it; the forecast is the share of
    simulated splits where a team's rank is not its public rank. ``public_rank`` defaults to the
    ranks of the observed public scores. With ``tiebreak`` (the board's order of equal scores) the
    ranks are board positions on both sides, as the board's "places gained" counts them; without
    it, competition ranks. Uses public information only.
    """
    predictions, truth = _check(predictions, truth)
    sign = orientation(metric)
    if public_rank is None:
        public_rank = ranks(sign * scores(predictions, truth, metric, num_classes), tiebreak)
    public_rank = np.asarray(public_rank, dtype=np.int64)
    counts = resample_counts(truth.shape[0], resamples, seed, draw=int(private_rows), two_stage=two_stage)
    simulated = ranks(sign * resampled_scores(predictions, truth, counts, metric, num_classes), tiebreak)
    return np.mean(simulated != public_rank[None, :], axis=0)


@dataclass(frozen=True)
class HonestBoard:
    """What a board row needs, indexed by team (row of ``predictions``)."""

    score: np.ndarray  # [T] observed public score
    rank: np.ndarray  # [T] competition rank of ``score``
    tier: np.ndarray  # [T] 1, 2, ...
    tier_p_value: np.ndarray  # [T] p-value against the tier's first team (0 for a tier's first team)
    rank_range: np.ndarray  # [T, 2] 90 % rank interval
    p_rank_change: np.ndarray | None  # [T] shake-up forecast (None without private_rows)

    def row(self, team: int) -> dict:
        """One team's numbers as JSON-ready values (the ``/api/leaderboard`` names)."""
        out = {
            "tier": int(self.tier[team]),
            "rank_range": [int(self.rank_range[team, 0]), int(self.rank_range[team, 1])],
        }
        if self.p_rank_change is not None:
            out["p_rank_change"] = float(self.p_rank_change[team])
        return out


def honest_board(predictions: np.ndarray, truth: np.ndarray, *, ranking: Sequence[int] | None = None,
                 private_rows: int | None = None, metric: str | Callable = "accuracy",
                 num_classes: int | None = None, alpha: float = ALPHA, resamples: int = RESAMPLES,
                 seed: int = SEED) -> HonestBoard:
    """Tiers, rank ranges and (given ``private_rows``) the shake-up forecast in one call.

    Tiers and ranges share one set of paired resamples of the public rows (seed ``seed``); the
    forecast draws its private splits with ``seed + 1``. Compute once per board version.
    """
    predictions, truth = _check(predictions, truth)
    sign = orientation(metric)
    observed = scores(predictions, truth, metric, num_classes)
    order = _ranking(sign * observed, ranking)
    boot = sign * resampled_scores(predictions, truth, resample_counts(truth.shape[0], resamples, seed), metric,
                                   num_classes)
    tier, p_value = tiers_from_scores(boot, order, alpha)
    rank = ranks(sign * observed)
    forecast = None
    if private_rows:
        # board positions: equal scores keep the ranking's order (the board's: the earlier submission first)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        forecast = shakeup_forecast(predictions, truth, private_rows, public_rank=position + 1, metric=metric,
                                    num_classes=num_classes, resamples=resamples, seed=seed + 1, tiebreak=position)
    return HonestBoard(observed, rank, tier, p_value, rank_ranges_from_scores(boot), forecast)


# --------------------------------------------------------------------------- probing protection

PUBLIC_BOARD_MODES = ("exact", "rounded", "ladder")


def ladder_step(public_rows: int) -> float:
    """Blum & Hardt's default step: 1 / sqrt(number of public rows)."""
    if public_rows < 1:
        raise ValueError("the public split has no rows")
    return 1.0 / math.sqrt(public_rows)


def shown_scores(scores_in_order: Sequence[float], mode: str = "exact", *, decimals: int = 4,
                 step: float | None = None, public_rows: int | None = None,
                 higher_is_better: bool = True) -> np.ndarray:
    """The public score shown after each of one team's submissions, in submission order.

    - ``"exact"``: the score itself;
    - ``"rounded"``: the score rounded to ``decimals``;
    - ``"ladder"`` (Blum & Hardt 2015): the shown value changes only when a submission beats the
      value shown so far by more than ``step`` (default ``1/sqrt(public_rows)``); it is then the
      submission's score rounded to a multiple of the step. Otherwise the previous value is shown
      again, so small differences between submissions never reach the team. A NaN score (a
      failed submission) never beats anything. For a lower-is-better metric (``higher_is_better``
      False) "beats" means lower by more than the step.
    """
    values = np.asarray(scores_in_order, dtype=np.float64)
    if mode == "exact":
        return values.copy()
    if mode == "rounded":
        return np.round(values, int(decimals))
    if mode != "ladder":
        raise ValueError(f"public_board mode {mode!r} is not one of {', '.join(PUBLIC_BOARD_MODES)}")
    if step is None:
        if public_rows is None:
            raise ValueError("the ladder needs a step or the number of public rows")
        step = ladder_step(public_rows)
    sign = 1.0 if higher_is_better else -1.0
    out = np.empty_like(values)
    best = -math.inf  # oriented: sign * the shown value
    for i, value in enumerate(values):
        if sign * value > best + step:  # False for NaN
            best = sign * (round(value / step) * step)
        out[i] = sign * best if math.isfinite(best) else math.nan
    return out


def shown_decimals(step: float) -> int:
    """Decimals that show a multiple of ``step`` without hiding the step (at least 2)."""
    return max(2, int(math.ceil(-math.log10(step))) + 1)


# --------------------------------------------------------------------------- medals

MEDALS = ("gold", "silver", "bronze")


def assign_medals(rank: Sequence[int], fractions: Mapping[str, float]) -> list[str | None]:
    """Kaggle-style medals: a team with competition rank ``r`` among ``N`` ranked teams gets the
    best medal whose top fraction ``f`` satisfies ``r <= f * N`` (so tied teams share a medal);
    ``None`` for the rest. ``fractions`` holds some of gold/silver/bronze (cumulative top
    fractions, e.g. ``{"gold": 0.1, "silver": 0.2, "bronze": 0.4}``)."""
    rank = np.asarray(rank, dtype=np.int64)
    n = rank.shape[0]
    out: list[str | None] = []
    for r in rank:
        medal = None
        for name in MEDALS:
            if name in fractions and r <= fractions[name] * n + 1e-9:
                medal = name
                break
        out.append(medal)
    return out
