"""The organizer's pages: teams and tokens, reveal, rescore, the scoring queue and its workers."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from harness.errors import PodiumError
from leaderboard.auth import admin_required, check_admin_token, create_team, reset_token
from leaderboard.extensions import db
from leaderboard.intake import bump_board_version, record_predictions, storage_path
from leaderboard.jobs import queue_counts, requeue
from leaderboard.models import ScoringJob, Submission, Team
from leaderboard.ranking import is_revealed, set_revealed
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
    from leaderboard.sessions import revoke_admin_sessions

    if is_admin():
        revoke_admin_sessions()
        db.session.commit()
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
        team, token = create_team(request.form.get("name", ""))
    except PodiumError as exc:
        db.session.rollback()
        for message in exc.messages:
            flash(message, "error")
    else:
        session["new_token"] = {"team": team.name, "token": token}
    return redirect(url_for("admin.index"))


@bp.post("/teams/<int:team_id>/token")
@admin_required
def new_token(team_id: int):
    team = db.get_or_404(Team, team_id)
    session["new_token"] = {"team": team.name, "token": reset_token(team)}
    return redirect(url_for("admin.index"))


@bp.post("/reveal")
@admin_required
def reveal():
    set_revealed(request.form.get("reveal") == "1")
    flash("The private board is now public." if is_revealed() else "The private board is hidden again.")
    return redirect(url_for("admin.index"))


@bp.post("/submissions/<int:submission_id>/rescore")
@admin_required
def rescore(submission_id: int):
    """CSVs are scored again at once from the stored file; checkpoints go back to the workers' queue."""
    sub = db.get_or_404(Submission, submission_id)
    if sub.kind == "csv":
        from harness.submission import parse_csv_submission
        from leaderboard.intake import record_refusal
        from leaderboard.state import current_competition, current_solution

        try:
            predictions = parse_csv_submission(storage_path(sub).read_bytes(), current_solution(),
                                               current_competition().classes)
        except PodiumError as exc:
            record_refusal(sub, exc.messages, ours=False)
        except OSError:
            record_refusal(sub, ["The stored file is missing on the server."], ours=True)
        else:
            record_predictions(sub, predictions)
    else:
        requeue(sub)
        bump_board_version()
    db.session.commit()
    flash(f"Submission {sub.id} rescored." if sub.kind == "csv" else f"Submission {sub.id} queued for rescoring.")
    return redirect(url_for("admin.index"))
