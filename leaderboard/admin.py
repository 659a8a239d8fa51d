"""The organizer's pages: teams and tokens, reveal, rescore, the scoring queue and its workers."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from harness.errors import PodiumError
from leaderboard import services
from leaderboard.auth import admin_required, check_admin_token
from leaderboard.extensions import db
from leaderboard.jobs import queue_counts
from leaderboard.models import ScoringJob, Submission, Team
from leaderboard.ranking import is_revealed
from leaderboard.teams import _safe_next

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if check_admin_token(request.form.get("token", "")):
            from leaderboard.sessions import start_admin_session

            start_admin_session()
            return redirect(_safe_next(request.args.get("next") or url_for("admin.index")))
        error = "That is not the organizer token."
    return render_template("admin_login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    from leaderboard.auth import is_admin

    if is_admin():
        services.end_organizer_sessions()
    session.clear()
    return redirect(url_for("board.index"))


@bp.get("/")
@admin_required
def index():
    teams = db.session.execute(
        sa.select(Team, sa.func.count(Submission.id)).outerjoin(Submission).group_by(Team.id).order_by(Team.name)
    ).all()
    jobs = list(db.session.scalars(sa.select(ScoringJob).order_by(ScoringJob.id.desc()).limit(50)))
    workers = db.session.execute(
        sa.select(ScoringJob.worker_name, sa.func.count(ScoringJob.id), sa.func.max(ScoringJob.updated_at))
        .where(ScoringJob.worker_name.is_not(None)).group_by(ScoringJob.worker_name)
    ).all()
    counts = queue_counts()
    recent = list(db.session.scalars(sa.select(Submission).order_by(Submission.id.desc()).limit(30)))
    return render_template("admin.html", teams=teams, jobs=jobs, workers=workers, counts=counts, recent=recent,
                           revealed=is_revealed(), new_token=session.pop("new_token", None))


@bp.post("/teams")
@admin_required
def add_team():
    try:
        team, token = services.create_team(request.form.get("name", ""))
    except PodiumError as exc:
        for message in exc.messages:
            flash(message, "error")
    else:
        session["new_token"] = {"team": team.name, "token": token}
    return redirect(url_for("admin.index"))


@bp.post("/teams/<int:team_id>/token")
@admin_required
def new_token(team_id: int):
    db.get_or_404(Team, team_id)
    team, token = services.reset_token(team_id)
    session["new_token"] = {"team": team.name, "token": token}
    return redirect(url_for("admin.index"))


@bp.post("/reveal")
@admin_required
def reveal():
    services.reveal(request.form.get("reveal") == "1")
    flash("The private board is now public." if is_revealed() else "The private board is hidden again.")
    return redirect(url_for("admin.index"))


@bp.post("/submissions/<int:submission_id>/rescore")
@admin_required
def rescore(submission_id: int):
    """CSVs are scored again at once from the stored file; checkpoints go back to the workers' queue."""
    sub = services.rescore(submission_id)
    if sub is None:
        abort(404)
    flash(f"Submission {sub.id} rescored." if sub.kind == "csv" else f"Submission {sub.id} queued for rescoring.")
    return redirect(url_for("admin.index"))
