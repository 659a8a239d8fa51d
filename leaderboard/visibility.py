"""What a viewer may see: rounded public scores always, private ones after the reveal, protected
public scores while the board is protected; a team's history and its finals as its pages show them."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from leaderboard.extensions import db
from leaderboard.honest_board import Protection, current_protection, shown_scores_of, visible_finals
from leaderboard.models import Submission
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import ROUND, is_revealed
from leaderboard.services import finals_candidates
from leaderboard.state import current_competition


def _rounded(value):
    if isinstance(value, float):
        return round(value, ROUND)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def visible_result(submission: Submission, revealed: bool) -> dict | None:
    """The score report a participant may see: the public split (and private + all after reveal).

    Before reveal "all" is withheld too: with the public part known it would give the private one away.
    """
    if submission.result_json is None:
        return None
    splits = ("public", "private", "all") if revealed else ("public",)
    out = {"primary_metric": submission.result_json.get("primary_metric")}
    for split in splits:
        if split in submission.result_json:
            out[split] = _rounded(submission.result_json[split])
    return out


def page_result(submission: Submission, revealed: bool, protection: Protection) -> dict | None:
    """The score report on the submission page: ``visible_result``, or nothing at all while the
    board is protected (the public report would give the exact public score away)."""
    return None if protection.active else visible_result(submission, revealed)


@dataclass(frozen=True)
class TeamHistory:
    """A team's page: the submissions listed (newest first), the chart's points, the starred finals."""

    submissions: list[Submission]
    ranked_points: list[tuple[float, float]]  # (UTC timestamp, shown public score) of on-time scored ones
    late_points: list[tuple[float, float]]
    shown: dict[int, float | None]  # submission id -> the public score shown
    finals: set[int]
    protection: Protection
    revealed: bool


def team_history(team_id: int, owner: bool) -> TeamHistory:
    """What the team page shows: everything to the team itself and the organizer (``owner``), only the
    scored submissions to anyone else; public scores as shown under the probing protection."""
    subs = list(db.session.scalars(
        sa.select(Submission).where(Submission.team_id == team_id).order_by(Submission.created_at)))
    scored = [s for s in subs if s.status == SubmissionStatus.SCORED]
    protection = current_protection()
    shown = shown_scores_of(subs, protection)
    points = {late: [(s.created_at.timestamp(), shown[s.id]) for s in scored
                     if s.late == late and shown[s.id] is not None] for late in (False, True)}
    finals = visible_finals(team_id, current_competition().final_selections, protection) if owner else set()
    return TeamHistory(submissions=list(reversed(subs if owner else scored)), ranked_points=points[False],
                       late_points=points[True], shown=shown, finals=finals, protection=protection,
                       revealed=is_revealed())


@dataclass(frozen=True)
class FinalsChoice:
    """The finals page: the team's eligible submissions in the order shown, the starred ones."""

    submissions: list[Submission]
    finals: set[int]
    shown: dict[int, float | None]
    k: int
    protection: Protection


def finals_choice(team_id: int) -> FinalsChoice:
    """Best public score first; under probing protection neither the order of the exact scores nor
    the default finals (the best exact ones) may show: newest first, the shown score only, stars
    on chosen finals only."""
    candidates = finals_candidates(team_id)
    protection = current_protection()
    if protection.active:
        candidates.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    k = current_competition().final_selections
    return FinalsChoice(submissions=candidates, finals=visible_finals(team_id, k, protection),
                        shown=shown_scores_of(candidates, protection), k=k, protection=protection)


def submission_dict(submission: Submission, revealed: bool, owner_view: bool) -> dict:
    out = {
        "id": submission.id,
        "team": submission.team.slug,
        "kind": submission.kind,
        "status": submission.status,
        "messages": list(submission.messages or []),
        "created_at": submission.created_at.isoformat(),
        "late": submission.late,
        "selected": submission.selected,
        "public_score": None if submission.public_score is None else round(submission.public_score, ROUND),
        "public_ci": [
            None if v is None else round(v, ROUND) for v in (submission.public_ci_low, submission.public_ci_high)
        ],
        "counts_toward_limit": submission.counts_toward_limit,
        "result": visible_result(submission, revealed),
        "has_history": submission.history_csv is not None,
    }
    if owner_view:
        out["note"] = submission.note
        out["original_name"] = submission.original_name
        out["sha256"] = submission.sha256
    if revealed:
        out["private_score"] = None if submission.private_score is None else round(submission.private_score, ROUND)
    return out
