"""JSON API for scripts and ``podium submit`` (Bearer team token; the organizer token sees all)."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, g, jsonify, request

from leaderboard.auth import bearer_token, is_admin, require_team_token, team_for_token
from leaderboard.errors import json_errors
from leaderboard.extensions import db
from leaderboard.intake import daily_limit_left, submit
from leaderboard.models import Submission, Team
from leaderboard.honest_board import current_protection, protect_submission_dict, versioned_honest_board
from leaderboard.ranking import is_revealed
from leaderboard.state import current_competition
from leaderboard.visibility import submission_dict

bp = Blueprint("api", __name__, url_prefix="/api")


def _viewer_team_id() -> int | None:
    token = bearer_token()
    team = team_for_token(token) if token else None
    return team.id if team else None


@bp.get("/leaderboard")
def leaderboard():
    competition = current_competition()
    _, honest = versioned_honest_board()
    return jsonify({"competition": competition.name, "title": competition.title, **honest.to_dict()})


@bp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    sub = db.session.get(Submission, submission_id)
    if sub is None or not (is_admin() or _viewer_team_id() == sub.team_id):
        abort(404)
    return jsonify(protect_submission_dict(submission_dict(sub, is_revealed(), owner_view=True), sub))


@bp.get("/teams/<slug>/submissions")
def team_submissions(slug: str):
    team = db.first_or_404(sa.select(Team).where(Team.slug == slug))
    if not (is_admin() or _viewer_team_id() == team.id):
        abort(404)
    subs = db.session.scalars(sa.select(Submission).where(Submission.team_id == team.id).order_by(Submission.id))
    revealed = is_revealed()
    protection = current_protection(revealed)
    return jsonify({"team": team.name, "slug": team.slug,
                    "submissions": [protect_submission_dict(submission_dict(s, revealed, owner_view=True), s, protection)
                                    for s in subs]})


@bp.post("/submissions")
@require_team_token
def create_submission():
    """multipart/form-data: ``file`` (required), ``note``, ``history``. 201 scored, 202 queued, 422 refused."""
    team = g.team
    file = request.files.get("file")
    if file is None:
        return json_errors(400, ["Send the submission as multipart/form-data with the field 'file'."])
    outcome = submit(team, file.filename or "", file.stream, request.form.get("note", ""), request.files.get("history"))
    if outcome.submission is None:
        return json_errors(outcome.status, outcome.messages)
    revealed = is_revealed()
    body = protect_submission_dict(submission_dict(outcome.submission, revealed, owner_view=True),
                                   outcome.submission, current_protection(revealed))
    body["submissions_left_today"] = daily_limit_left(team.id)
    if outcome.messages:
        body["errors"] = outcome.messages
    return jsonify(body), outcome.status
