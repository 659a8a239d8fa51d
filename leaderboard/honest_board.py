"""The honest board: tiers, rank ranges, the shake-up forecast, probing protection and medals.

Wires ``harness.honest`` into the leaderboard. Everything here is computed ONCE PER BOARD VERSION
(the ``board_version`` row in the Setting table, bumped with every score change) and kept in the
app's board cache beside the ranked board, so a page view or an API call costs one primary-key
read when nothing changed.

- The row-level predictions of each team's ranked submission are read the way a rescore reads
  them: a CSV from its stored file (``intake.parse_stored_csv``); a checkpoint from the
  predictions its worker sent, kept beside the stored file (``recording.predictions_path``).
  They are kept per submission (id, sha256) so a new board version re-reads only new files.
- Probing protection (``public_board`` in competition.toml): while it is ``"rounded"`` or
  ``"ladder"`` and the private board is not revealed, every public score a participant sees is
  the protected one (``shown_public``); the board ranks by the shown scores and the tiers, ranges,
  forecast and tie order use the submission that set each team's shown score (the Ladder's
  setter; when rounded, the earliest submission that reached the best rounded score), so a
  submission that does not change the shown score changes nothing anyone can read.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import sqlalchemy as sa

from harness.competition import PRIVATE, PUBLIC
from harness.honest import assign_medals, honest_board, orientation, shown_decimals
from leaderboard.extensions import db
from leaderboard.intake import parse_stored_csv
from leaderboard.models import Submission
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import Board, ROUND, is_revealed, ranked_filter, versioned_board
from leaderboard.recording import load_saved_predictions
from leaderboard.state import current_competition, current_solution, podium_state

TIER_EXPLANATION = (
    "Tiers: walking down the board, a team stays in the tier of the team that opened it unless that team "
    "beats it in more than 95 % of 2,000 paired bootstrap redraws of the test rows; places inside a tier "
    "are not shown to differ. The range beside a rank holds 90 % of the team's ranks over the same redraws."
)
FORECAST_EXPLANATION = (
    "Shake-up forecast: the chance that a team's private rank differs from its public one, from 2,000 "
    "simulated private splits of the real private size drawn from the public rows."
)


# --------------------------------------------------------------------------- protection

@dataclass(frozen=True)
class Protection:
    """How public scores are shown now: ``mode`` "exact" (also after the reveal), "rounded" or "ladder"."""

    mode: str
    decimals: int
    step: float | None

    @property
    def active(self) -> bool:
        return self.mode != "exact"

    def show(self, value: float | None) -> float | None:
        """A single value as shown (rounded to the decimals, or to the ladder's step's decimals)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return round(float(value), self.decimals)

    def describe(self) -> str:
        if self.mode == "rounded":
            return f"Public scores are shown rounded to {self.decimals} decimals until the reveal (probing protection)."
        if self.mode == "ladder":
            return (f"Public scores follow the Ladder until the reveal: a team's shown score changes only when a "
                    f"submission beats it by more than {self.step:.4f}, and is shown rounded to that step "
                    "(probing protection).")
        return ""


def public_rows() -> int:
    return int(np.count_nonzero(current_solution().usage == PUBLIC))


def current_protection(revealed: bool | None = None) -> Protection:
    """The protection in force now: the competition's ``public_board`` before the reveal, exact after."""
    setting = current_competition().public_board
    revealed = is_revealed() if revealed is None else revealed
    if revealed or setting.mode == "exact":
        return Protection("exact", ROUND, None)
    if setting.mode == "rounded":
        return Protection("rounded", setting.decimals, None)
    step = setting.step_for(public_rows())
    return Protection("ladder", shown_decimals(step), step)


def team_ladders(protection: Protection, team_ids=None) -> dict[int, tuple[dict[int, float], int | None]]:
    """Per team: ({submission id: shown public score after it}, the id of the submission that set
    the team's current shown score), over its ranked (scored, on-time) submissions in time order.

    Ladder: the shown score after each submission, its setter the one that last moved it. Rounded:
    each submission's own rounded score; the setter is the EARLIEST submission that reached the
    best rounded score, so a later one that improves only beyond the shown decimals changes
    nothing (not the tiers, ranges, forecast or tie order either). Exact: own scores, no setter."""
    query = (sa.select(Submission.id, Submission.team_id, Submission.public_score)
             .where(ranked_filter()).order_by(Submission.team_id, Submission.created_at, Submission.id))
    if team_ids is not None:
        query = query.where(Submission.team_id.in_(list(team_ids)))
    by_team: dict[int, list[tuple[int, float]]] = {}
    for sub_id, team_id, score in db.session.execute(query):
        by_team.setdefault(team_id, []).append((sub_id, float(score)))
    setting = current_competition().public_board
    sign = orientation(current_competition().primary_metric)
    out = {}
    for team_id, subs in by_team.items():
        ids = [s for s, _ in subs]
        values = [v for _, v in subs]
        if protection.mode == "ladder":
            shown = setting.shown(values, public_rows(), sign > 0)
            setter, last = None, -math.inf
            for sub_id, value in zip(ids, shown):
                if math.isfinite(value) and value != last:
                    setter, last = sub_id, value
            out[team_id] = ({i: protection.show(v) for i, v in zip(ids, shown)}, setter)
        else:
            rounded = [protection.show(v) for v in values]
            setter, best = None, -math.inf
            if protection.mode == "rounded":
                for sub_id, value in zip(ids, rounded):
                    if value is not None and sign * value > best:
                        setter, best = sub_id, sign * value
            out[team_id] = (dict(zip(ids, rounded)), setter)
    return out


def shown_public(submission: Submission, protection: Protection | None = None) -> float | None:
    """The public score a participant is shown for ``submission`` (the exact one, rounded, if unprotected)."""
    protection = protection or current_protection()
    if submission.public_score is None:
        return None
    if protection.mode != "ladder":
        return protection.show(submission.public_score)
    if submission.late or submission.status != SubmissionStatus.SCORED:
        # late submissions never move the ladder; they are shown rounded to the step
        return round(round(submission.public_score / protection.step) * protection.step, protection.decimals)
    shown, _ = team_ladders(protection, [submission.team_id]).get(submission.team_id, ({}, None))
    return shown.get(submission.id)


def shown_scores_of(submissions, protection: Protection) -> dict[int, float | None]:
    """{submission id: shown public score} for one team's submissions (one ladder query at most)."""
    if protection.mode != "ladder":
        return {s.id: protection.show(s.public_score) for s in submissions}
    team_ids = {s.team_id for s in submissions}
    ladders = team_ladders(protection, team_ids) if team_ids else {}
    out = {}
    for s in submissions:
        if s.public_score is None:
            out[s.id] = None
        elif s.id in ladders.get(s.team_id, ({}, None))[0]:
            out[s.id] = ladders[s.team_id][0][s.id]
        else:
            out[s.id] = shown_public(s, protection)
    return out


def visible_finals(team_id: int, final_selections: int, protection: Protection) -> set[int]:
    """The finals a team is shown with a star: under protection only the ones it chose (its default
    finals are its best *exact* public scores, which the star would give away)."""
    from leaderboard.ranking import team_finals

    if protection.active:
        return set(db.session.scalars(sa.select(Submission.id).where(
            Submission.team_id == team_id, Submission.selected.is_(True), ranked_filter())))
    return team_finals(team_id, final_selections)


def protect_submission_dict(body: dict, submission: Submission, protection: Protection | None = None) -> dict:
    """``visibility.submission_dict`` with the public score protected (no interval, no public report)."""
    protection = protection or current_protection()
    if not protection.active:
        return body
    body = dict(body)
    body["public_score"] = shown_public(submission, protection)
    body["public_ci"] = [None, None]
    body["public_board"] = protection.mode
    result = body.get("result")
    if result:
        result = dict(result)
        result.pop("public", None)
        body["result"] = result
    return body


# --------------------------------------------------------------------------- predictions

_predictions_lock = threading.Lock()


def ranked_predictions(submission_ids: list[int]) -> dict[int, np.ndarray]:
    """Row-level predictions (test.npz order) of the given submissions, where they can be read."""
    cache = podium_state().board_cache
    with _predictions_lock:
        known = cache.get("honest_predictions")
        if known is None:
            known = {}
            cache.put("honest_predictions", known)
    rows = db.session.execute(
        sa.select(Submission.id, Submission.sha256, Submission.kind, Submission.stored_path)
        .where(Submission.id.in_(submission_ids))
    ).all()
    out = {}
    for sub_id, sha, kind, stored in rows:
        hit = known.get(sub_id)
        if hit is not None and hit[0] == sha:
            preds = hit[1]
        else:
            if kind == "csv":
                preds = parse_stored_csv(stored).predictions
            else:
                preds = load_saved_predictions(stored)
            if preds is not None:
                preds = np.asarray(preds, dtype=np.int64)
            with _predictions_lock:
                known[sub_id] = (sha, preds)
        if preds is not None and preds.shape[0] == len(current_solution()):
            out[sub_id] = preds
    return out


# --------------------------------------------------------------------------- the board

@dataclass(frozen=True)
class HonestBoard:
    """The board as shown (protected scores, ranked as shown) and each team's honest numbers."""

    board: Board
    protection: Protection
    extras: dict[int, dict] = field(default_factory=dict)  # team id -> tier, rank_range, p_rank_change, ...
    medals: bool = False

    def to_dict(self) -> dict:
        out = self.board.to_dict()
        for row, data in zip(self.board.rows, out["rows"]):
            extra = self.extras.get(row.team_id, {})
            for key in ("tier", "rank_range", "p_rank_change"):
                data[key] = extra.get(key)
            if self.protection.active:
                data["score"] = row.score
            if self.board.revealed:
                data["private_tier"] = extra.get("private_tier")
                data["private_rank_range"] = extra.get("private_rank_range")
                if self.medals:
                    data["medal"] = extra.get("medal")
        out["public_board"] = self.protection.mode
        return out


def _split_numbers(pred_by_sub: dict[int, np.ndarray], order: list[tuple[int, int]], mask: np.ndarray,
                   private_rows: int | None) -> dict[int, dict]:
    """honest_board over ``order`` [(team id, submission id)], best first, on the rows in ``mask``."""
    usable = [(team, sub) for team, sub in order if sub in pred_by_sub]
    if not usable or not mask.any():
        return {}
    solution = current_solution()
    competition = current_competition()
    predictions = np.stack([pred_by_sub[sub][mask] for _, sub in usable])
    truth = solution.labels[mask]
    numbers = honest_board(predictions, truth, ranking=list(range(len(usable))), private_rows=private_rows,
                           metric=competition.primary_metric, num_classes=competition.num_classes)
    return {team: numbers.row(i) for i, (team, _) in enumerate(usable)}


def compute_honest(board: Board) -> HonestBoard:
    competition = current_competition()
    solution = current_solution()
    protection = current_protection(board.revealed)
    rows = list(board.rows)
    # Shown public scores; under the Ladder, the submission that set each team's shown score.
    setters: dict[int, int] = {}
    if protection.active:
        ladders = team_ladders(protection)
        new_rows = []
        for row in rows:
            shown, setter = ladders.get(row.team_id, ({}, None))
            if setter is not None:
                setters[row.team_id] = setter
                value = shown[setter]
            else:
                value = protection.show(row.score)
            new_rows.append(replace(row, score=value, ci_low=None, ci_high=None))
        rows = new_rows
        # The row is the setter's: its id and time (the best exact submission's time would tell a
        # team that a probe raised its exact score). Ranked as shown: equal shown scores go to the
        # earlier setter, never by the exact score.
        created = dict(db.session.execute(
            sa.select(Submission.id, Submission.created_at).where(Submission.id.in_(list(setters.values())))
        ).all()) if setters else {}
        rows = [replace(r, submission_id=setters[r.team_id], submitted_at=created[setters[r.team_id]])
                if r.team_id in setters else r for r in rows]
        sign = orientation(competition.primary_metric)
        rows.sort(key=lambda r: (-(sign * r.score if r.score is not None else -math.inf), r.submitted_at, r.team_id))
        rows = [replace(r, rank=i + 1) for i, r in enumerate(rows)]
    public_order = [(r.team_id, setters.get(r.team_id, r.submission_id)) for r in sorted(rows, key=lambda r: r.rank)]
    wanted = [sub for _, sub in public_order]
    if board.revealed:
        wanted += [r.private_submission_id for r in rows if r.private_submission_id is not None]
    preds = ranked_predictions(wanted)
    private_mask = solution.usage == PRIVATE
    extras: dict[int, dict] = {team: {} for team, _ in public_order}
    for team, data in _split_numbers(preds, public_order, solution.usage == PUBLIC,
                                     int(np.count_nonzero(private_mask))).items():
        extras[team].update(data)
    medals = bool(competition.medals)
    if board.revealed:
        private_order = [(r.team_id, r.private_submission_id) for r in rows if r.private_rank is not None]
        private_order.sort(key=lambda t: next(r.private_rank for r in rows if r.team_id == t[0]))
        for team, data in _split_numbers(preds, private_order, private_mask, None).items():
            extras[team]["private_tier"] = data["tier"]
            extras[team]["private_rank_range"] = data["rank_range"]
        if medals and private_order:
            ranks = [next(r.private_rank for r in rows if r.team_id == team) for team, _ in private_order]
            for (team, _), medal in zip(private_order, assign_medals(ranks, competition.medal_fractions)):
                extras[team]["medal"] = medal
    shown_board = Board(metric=board.metric, revealed=board.revealed, rows=tuple(rows))
    return HonestBoard(board=shown_board, protection=protection, extras=extras, medals=medals)


_compute_lock = threading.Lock()


def versioned_honest_board() -> tuple[str, HonestBoard]:
    """(board version, the honest board), computed once per board version (and per process: one
    request computes it while the others that arrive meanwhile wait for it)."""
    version, board = versioned_board()
    cache = podium_state().board_cache
    hit = cache.get("honest_board")
    if hit is not None and hit[0] == version:
        return hit
    with _compute_lock:
        hit = cache.get("honest_board")
        if hit is not None and hit[0] == version:
            return hit
        honest = compute_honest(board)
        cache.put("honest_board", (version, honest))
    return version, honest
