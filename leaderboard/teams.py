"""Team pages: log in and out, upload, choose final submissions."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from leaderboard import services
from leaderboard.auth import login_required, login_team, logout, session_team, team_for_login
from leaderboard.intake import daily_limit_left, submit
from leaderboard.visibility import finals_choice
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
    team = session_team()
    if team is not None:
        services.end_team_sessions(team.id)  # every session of the team ends, copied cookies too
    logout()
    return redirect(url_for("board.index"))


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    team = session_team()
    messages: list[str] = []
    status = 200
    if request.method == "POST":
        file = request.files.get("file")
        if file is None or not file.filename:
            messages, status = ["Choose a file to upload: your predictions CSV or a .safetensors checkpoint."], 400
        else:
            outcome = submit(team, file.filename, file.stream, request.form.get("note", ""), request.files.get("history"))
            if outcome.status in (201, 202):
                return redirect(url_for("board.submission", submission_id=outcome.submission.id))
            messages, status = outcome.messages, outcome.status
    competition = current_competition()
    return render_template("upload.html", messages=messages, left=daily_limit_left(team.id), competition=competition,
                           late=competition.is_late(now())), status


@bp.route("/finals", methods=["GET", "POST"])
@login_required
def finals():
    team = session_team()
    error, status = None, 200
    if request.method == "POST":
        chosen = {int(v) for v in request.form.getlist("selected") if v.isascii() and v.isdigit()}  # not "\u00b2"
        try:
            services.set_finals(team.id, chosen)
        except services.FinalsRefused as exc:
            error, status = exc.messages[0], 422
        else:
            flash("Your final submissions are saved." if chosen else
                  "No submission chosen: your best public submissions count as finals.")
            return redirect(url_for("teams.finals"))
    choice = finals_choice(team.id)
    return render_template("finals.html", submissions=choice.submissions, finals=choice.finals, k=choice.k,
                           error=error, shown=choice.shown, protection=choice.protection), status
