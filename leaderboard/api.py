"""JSON API for scripts and ``podium submit`` (Bearer team token; the organizer token sees all)."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, g, jsonify, request

from harness.errors import SubmissionError
from leaderboard.auth import bearer_token, is_admin, require_team_token, team_for_token
from leaderboard.extensions import db
from leaderboard.intake import LimitReached, Upload, accept, daily_limit_left, read_history_upload
from leaderboard.models import Submission, Team
from leaderboard.ranking import current_board, is_revealed
from leaderboard.state import current_competition
from leaderboard.visibility import submission_dict

bp = Blueprint("api", __name__, url_prefix="/api")


def _errors(status: int, messages: list[str]):
    response = jsonify({"errors": messages})
    response.status_code = status
    return response


def _viewer_team_id() -> int | None:
    token = bearer_token()
    team = team_for_token(token) if token else None
    return team.id if team else None


@bp.get("/leaderboard")
def leaderboard():
    competition = current_competition()
    return jsonify({"competition": competition.name, "title": competition.title, **current_board().to_dict()})


@bp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    sub = db.session.get(Submission, submission_id)
    if sub is None or not (is_admin() or _viewer_team_id() == sub.team_id):
        abort(404)
    return jsonify(submission_dict(sub, is_revealed(), owner_view=True))


@bp.get("/teams/<slug>/submissions")
def team_submissions(slug: str):
    team = db.first_or_404(sa.select(Team).where(Team.slug == slug))
    if not (is_admin() or _viewer_team_id() == team.id):
        abort(404)
    subs = db.session.scalars(sa.select(Submission).where(Submission.team_id == team.id).order_by(Submission.id))
    revealed = is_revealed()
    return jsonify({"team": team.name, "slug": team.slug,
                    "submissions": [submission_dict(s, revealed, owner_view=True) for s in subs]})


@bp.post("/submissions")
@require_team_token
def create_submission():
    """multipart/form-data: ``file`` (required), ``note``, ``history``. 201 scored/queued, 422 refused."""
    team = g.team
    file = request.files.get("file")
    if file is None:
        return _errors(400, ["Send the submission as multipart/form-data with the field 'file'."])
    history = request.files.get("history")
    try:
        sub = accept(team, Upload(filename=file.filename or "", data=file.stream, note=request.form.get("note", ""),
                                  history=read_history_upload(history)))
    except LimitReached as exc:
        return _errors(429, exc.messages)
    except SubmissionError as exc:
        return _errors(422, exc.messages)
    body = submission_dict(sub, is_revealed(), owner_view=True)
    body["submissions_left_today"] = daily_limit_left(team.id)
    if sub.status == "refused":
        body["errors"] = list(sub.messages)
        return jsonify(body), 422
    return jsonify(body), (201 if sub.status == "scored" else 202)
