"""Team pages: log in and out, upload, choose final submissions."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for

from harness.errors import SubmissionError
from leaderboard.auth import login_required, login_team, logout, session_team, team_for_login
from leaderboard.extensions import db
from leaderboard.intake import LimitReached, Upload, accept, bump_board_version, daily_limit_left, read_history_upload
from leaderboard.models import Submission
from leaderboard.ranking import team_finals
from leaderboard.state import current_competition, now

bp = Blueprint("teams", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //evil) is followed after login.

    No control character or space either: ``/<TAB>/evil.com`` reached the Location header as
    ``//evil.com`` (an open redirect), and a newline raised a 500.
    """
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and target.isprintable() and not any(c.isspace() for c in target)):
        return target
    return url_for("board.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        team = team_for_login(request.form.get("name", ""), request.form.get("token", ""))
        if team is not None:
            login_team(team)
            return redirect(_safe_next(request.args.get("next")))
        error = "That team name and token do not match."
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout_view():
    logout()
    return redirect(url_for("board.index"))


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    team = session_team()
    competition = current_competition()
    messages: list[str] = []
    status = 200
    if request.method == "POST":
        file = request.files.get("file")
        history = request.files.get("history")
        if file is None or not file.filename:
            messages, status = ["Choose a file to upload: your predictions CSV or a .safetensors checkpoint."], 400
        else:
            try:
                submission = accept(team, Upload(
                    filename=file.filename, data=file.stream, note=request.form.get("note", ""),
                    history=read_history_upload(history),
                ))
            except LimitReached as exc:
                messages, status = exc.messages, 429
            except SubmissionError as exc:
                messages, status = exc.messages, 422
            else:
                if submission.status == "refused":
                    messages, status = submission.messages, 422
                else:
                    return redirect(url_for("board.submission", submission_id=submission.id))
    return render_template(
        "upload.html", messages=messages, left=daily_limit_left(team.id), competition=competition,
        late=competition.is_late(now()),
    ), status


@bp.route("/finals", methods=["GET", "POST"])
@login_required
def finals():
    team = session_team()
    k = current_competition().final_selections
    error = None
    status = 200
    if request.method == "POST":
        chosen = {int(v) for v in request.form.getlist("selected") if v.isascii() and v.isdigit()}  # not "\u00b2"
        if len(chosen) > k:
            error, status = f"Choose at most {k} final submission{'s' if k != 1 else ''}.", 422
        else:
            eligible = set(db.session.scalars(sa.select(Submission.id).where(
                Submission.team_id == team.id, Submission.status == "scored", Submission.late.is_(False))))
            if not chosen <= eligible:
                error, status = "Only your own scored, on-time submissions can be finals.", 422
            else:
                db.session.execute(sa.update(Submission).where(Submission.team_id == team.id).values(
                    selected=Submission.id.in_(chosen) if chosen else False))
                bump_board_version()
                db.session.commit()
                flash("Your final submissions are saved." if chosen else
                      "No submission chosen: your best public submissions count as finals.")
                return redirect(url_for("teams.finals"))
    subs = list(db.session.scalars(sa.select(Submission).where(
        Submission.team_id == team.id, Submission.status == "scored", Submission.late.is_(False)
    ).order_by(Submission.public_score.desc(), Submission.created_at)))
    return render_template("finals.html", submissions=subs, finals=team_finals(team.id, k), k=k, error=error), status
