"""Public pages: the board, a team's history, a submission (its team and the organizer only)."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, render_template, request, send_file
from markupsafe import Markup

from leaderboard.auth import is_admin, session_team
from leaderboard.extensions import db
from leaderboard.intake import storage_path
from leaderboard.kaggle_service import kaggle_tab_shown
from leaderboard.models import Submission, Team
from leaderboard.ranking import is_revealed
from leaderboard.state import current_competition, podium_state
from leaderboard.charts import epoch_ticks, line_chart, max_epoch_ticks, time_label, time_tick_label
from leaderboard.visibility import TeamHistory, page_result, team_history
from leaderboard.honest_board import (FORECAST_EXPLANATION, TIER_EXPLANATION, current_protection, shown_public,
                                      versioned_honest_board)

bp = Blueprint("board", __name__)

SPLITS = {"public": "public", "private": "private", "all": "all rows"}


@bp.get("/")
def index():
    version, honest = versioned_honest_board()
    board = honest.board
    cache = podium_state().board_cache
    hit = cache.get("board_html")
    if hit is not None and hit[0] == version:
        table = hit[1]
    else:
        # Our own autoescaped render of the table, kept per board version: the page then costs one
        # small query and the page frame, whatever the number of teams.
        table = Markup(render_template("board_table.html", board=board, honest=honest))
        cache.put("board_html", (version, table))
    me = session_team()
    return render_template("board.html", board=board, honest=honest, table=table, my_slug=me.slug if me else None,
                           tier_explanation=TIER_EXPLANATION, forecast_explanation=FORECAST_EXPLANATION,
                           kaggle_tab=kaggle_tab_shown(version))


@bp.get("/teams/<slug>")
def team(slug: str):
    team = db.first_or_404(sa.select(Team).where(Team.slug == slug))
    me = session_team()
    owner = is_admin() or (me is not None and me.id == team.id)
    history = team_history(team.id, owner)
    return render_template(
        "team.html", team=team, submissions=history.submissions, chart=_history_chart(history), owner=owner,
        finals=history.finals, revealed=history.revealed, shown=history.shown, protection=history.protection,
    )


def _history_chart(history: TeamHistory):
    series = [("public score", history.ranked_points)] + ([("late", history.late_points)] if history.late_points else [])
    return line_chart(series, x_label=time_label, y_label=lambda y: f"{y:.4f}",
                      x_tick_label=time_tick_label([t for _, pts in series for t, _ in pts]), x_title="time (UTC)")


def _viewable_submission(submission_id: int) -> Submission:
    """A submission its own team or the organizer may open; 404 for everyone else (no existence leak)."""
    submission = db.session.get(Submission, submission_id)
    me = session_team()
    if submission is None or not (is_admin() or (me is not None and me.id == submission.team_id)):
        abort(404)
    return submission


def _history_view(submission: Submission):
    if not submission.history_csv:
        return None
    from harness.diagnosis import diagnose, read_history

    history = read_history(submission.history_csv.encode("utf-8"))
    epochs = [float(row["epoch"]) for row in history]
    col = history.column
    ticks = epoch_ticks(epochs, max_epoch_ticks(max(epochs, default=1)))
    axis = {"x_label": lambda x: f"epoch {x:g}", "x_tick_label": lambda x: f"{x:g}", "x_values": ticks,
            "x_title": "epoch"}
    loss = line_chart([("train loss", list(zip(epochs, col("train_loss")))),
                       ("val loss", list(zip(epochs, col("val_loss"))))], **axis)
    acc = line_chart([("train accuracy", list(zip(epochs, col("train_acc")))),
                      ("val accuracy", list(zip(epochs, col("val_acc"))))], **axis)
    return {"loss": loss, "acc": acc, "diagnosis": diagnose(history), "epochs": len(history)}


@bp.get("/submissions/<int:submission_id>")
def submission(submission_id: int):
    sub = _viewable_submission(submission_id)
    team = db.session.get(Team, sub.team_id)
    revealed = is_revealed()
    protection = current_protection(revealed)
    result = page_result(sub, revealed, protection)
    # The per-class table and the heat map of one split: public by default; private or all rows only
    # once revealed (visible_result holds nothing else before), so ?split=private asks for nothing.
    splits = [s for s in SPLITS if result is not None and s in result]
    split = request.args.get("split", "public")
    if split not in splits:
        split = "public"
    return render_template(
        "submission.html", sub=sub, team=team, result=result, revealed=revealed, splits=splits, split=split,
        split_names=SPLITS, history=_history_view(sub), classes=current_competition().classes,
        protection=protection, shown_score=shown_public(sub, protection) if protection.active else None,
    )


@bp.get("/submissions/<int:submission_id>/file")
def submission_file(submission_id: int):
    """The team's own uploaded file, as an attachment under a name we choose."""
    sub = _viewable_submission(submission_id)
    path = storage_path(sub)
    if not path.is_file():
        abort(404)
    ext = path.suffix
    return send_file(path, as_attachment=True, download_name=f"submission-{sub.id}{ext}",
                     mimetype="text/csv" if ext == ".csv" else "application/octet-stream")
