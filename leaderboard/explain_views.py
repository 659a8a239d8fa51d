"""The Grad-CAM view of a team's own checkpoint submission (``leaderboard.explanations``).

Only the team that made the submission and the organizer: anyone else gets a 404, as for the
submission page itself.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, send_file, url_for

from leaderboard.auth import is_admin, session_team
from leaderboard.explanations import explanation, explanation_file, start_explanation
from leaderboard.extensions import db
from leaderboard.models import Submission

bp = Blueprint("explain", __name__)


def _own_submission(submission_id: int) -> Submission:
    submission = db.session.get(Submission, submission_id)
    me = session_team()
    if submission is None or not (is_admin() or (me is not None and me.id == submission.team_id)):
        abort(404)
    return submission


@bp.post("/submissions/<int:submission_id>/gradcam")
def start(submission_id: int):
    """The page's button (a CSRF-checked form): start the background job, back to the page."""
    sub = _own_submission(submission_id)
    flash(start_explanation(sub))
    return redirect(url_for("board.submission", submission_id=sub.id) + "#gradcam")


@bp.get("/submissions/<int:submission_id>/gradcam/<path:name>")
def image(submission_id: int, name: str):
    sub = _own_submission(submission_id)
    path = explanation_file(sub, name)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png", max_age=0)


@bp.app_template_global("gradcam_view")
def gradcam_view(sub: Submission):
    """For the submission template: what to show of the Grad-CAM of ``sub``."""
    return explanation(sub)
