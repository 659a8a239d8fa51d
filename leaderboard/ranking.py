"""The boards, ranked in SQL: best public score per team, and after reveal the finals' private score.

Ties go to the earlier submission. Boards are cached per board version (bumped in the same
transaction as any score change), so a page view is one primary-key read when nothing changed.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import sqlalchemy as sa

from harness.metrics import get_metric
from leaderboard.extensions import db
from leaderboard.models import Setting, Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.state import current_competition, podium_state

ROUND = 4
BOARD_VERSION = "board_version"  # Setting keys
REVEALED = "revealed"


@dataclass(frozen=True)
class BoardRow:
    rank: int
    team_id: int
    team_name: str
    team_slug: str
    submission_id: int
    score: float
    ci_low: float | None
    ci_high: float | None
    submitted_at: dt.datetime
    entries: int = 0
    last_at: dt.datetime | None = None
    private_rank: int | None = None
    private_score: float | None = None
    private_submission_id: int | None = None

    @property
    def shakeup(self) -> int | None:
        """Places gained (+) or lost (-) from the public to the private board."""
        return None if self.private_rank is None else self.rank - self.private_rank

    def to_dict(self, revealed: bool) -> dict:
        out = {
            "rank": self.rank,
            "team": self.team_name,
            "slug": self.team_slug,
            "score": round(self.score, ROUND),
            "ci": [None if v is None else round(v, ROUND) for v in (self.ci_low, self.ci_high)],
            "entries": self.entries,
            "last_submission": self.last_at.isoformat() if self.last_at else None,
        }
        if revealed:
            out.update(
                private_rank=self.private_rank,
                private_score=None if self.private_score is None else round(self.private_score, ROUND),
                shakeup=self.shakeup,
            )
        return out


@dataclass(frozen=True)
class Board:
    metric: str
    revealed: bool
    rows: tuple[BoardRow, ...]

    def to_dict(self) -> dict:
        return {"metric": self.metric, "revealed": self.revealed, "rows": [r.to_dict(self.revealed) for r in self.rows]}


def bump_board_version() -> None:
    """Invalidate every cached board, in this process and others, when the transaction commits."""
    db.session.execute(
        sa.update(Setting)
        .where(Setting.key == BOARD_VERSION)
        .values(value=sa.cast(sa.cast(Setting.value, sa.Integer) + 1, sa.String))
    )


def board_version() -> str:
    return db.session.scalar(sa.select(Setting.value).where(Setting.key == BOARD_VERSION)) or "0"


def is_revealed() -> bool:
    return db.session.scalar(sa.select(Setting.value).where(Setting.key == REVEALED)) == "1"


def set_revealed(value: bool) -> None:
    """Show or hide the private board, in the caller's transaction (``services.reveal`` commits)."""
    db.session.execute(sa.update(Setting).where(Setting.key == REVEALED).values(value="1" if value else "0"))
    bump_board_version()


def best_first(column):
    """``column`` in the order of the competition's primary metric: descending when higher is better."""
    return column.desc() if get_metric(current_competition().primary_metric).higher_is_better else column.asc()


def ranked_filter():
    """The submissions a board ranks: scored and on time (also the ones a team may pick as finals)."""
    return sa.and_(Submission.status == SubmissionStatus.SCORED, Submission.late.is_(False))


def public_best() -> list[sa.Row]:
    """Each team's best public submission (ties: the earlier), best team first."""
    ranked = (
        sa.select(
            Submission.id, Submission.team_id, Submission.public_score, Submission.public_ci_low,
            Submission.public_ci_high, Submission.created_at,
            sa.func.row_number().over(
                partition_by=Submission.team_id,
                order_by=(best_first(Submission.public_score), Submission.created_at, Submission.id),
            ).label("rn"),
        )
        .where(ranked_filter())
        .subquery()
    )
    query = (
        sa.select(ranked, Team.name, Team.slug)
        .join(Team, Team.id == ranked.c.team_id)
        .where(ranked.c.rn == 1)
        .order_by(best_first(ranked.c.public_score), ranked.c.created_at, ranked.c.id)
    )
    return list(db.session.execute(query))


def final_ids_subquery(final_selections: int):
    """Each team's finals: its selected submissions, or by default its best public ones."""
    base = (
        sa.select(
            Submission.id, Submission.team_id, Submission.selected, Submission.private_score, Submission.created_at,
            sa.func.row_number().over(
                partition_by=Submission.team_id,
                order_by=(best_first(Submission.public_score), Submission.created_at, Submission.id),
            ).label("pub_rn"),
            sa.func.max(sa.case((Submission.selected.is_(True), 1), else_=0)).over(
                partition_by=Submission.team_id
            ).label("has_selection"),
        )
        .where(ranked_filter())
        .subquery()
    )
    return (
        sa.select(base.c.id, base.c.team_id, base.c.private_score, base.c.created_at)
        .where(
            sa.or_(
                sa.and_(base.c.has_selection == 1, base.c.selected.is_(True)),
                sa.and_(base.c.has_selection == 0, base.c.pub_rn <= final_selections),
            )
        )
        .subquery()
    )


def private_best(final_selections: int) -> list[sa.Row]:
    finals = final_ids_subquery(final_selections)
    ranked = sa.select(
        finals,
        sa.func.row_number().over(
            partition_by=finals.c.team_id, order_by=(best_first(finals.c.private_score), finals.c.created_at, finals.c.id)
        ).label("rn"),
    ).subquery()
    query = (
        sa.select(ranked.c.id, ranked.c.team_id, ranked.c.private_score)
        .where(ranked.c.rn == 1)
        .order_by(best_first(ranked.c.private_score), ranked.c.created_at, ranked.c.id)
    )
    return list(db.session.execute(query))


def team_entries() -> dict[int, tuple[int, dt.datetime]]:
    rows = db.session.execute(
        sa.select(Submission.team_id, sa.func.count(Submission.id), sa.func.max(Submission.created_at)).group_by(
            Submission.team_id
        )
    )
    out = {}
    for team_id, count, last in rows:
        if isinstance(last, str):  # aggregate results bypass the column type on SQLite
            last = dt.datetime.fromisoformat(last)
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.timezone.utc)
        out[team_id] = (count, last)
    return out


def compute_board(revealed: bool) -> Board:
    competition = current_competition()
    entries = team_entries()
    rows = [
        BoardRow(
            rank=i + 1, team_id=r.team_id, team_name=r.name, team_slug=r.slug, submission_id=r.id,
            score=r.public_score, ci_low=r.public_ci_low, ci_high=r.public_ci_high, submitted_at=r.created_at,
            entries=entries.get(r.team_id, (0, None))[0], last_at=entries.get(r.team_id, (0, None))[1],
        )
        for i, r in enumerate(public_best())
    ]
    if revealed:
        private = {r.team_id: (i + 1, r.private_score, r.id) for i, r in enumerate(private_best(competition.final_selections))}
        rows = [
            replace(row, private_rank=private[row.team_id][0], private_score=private[row.team_id][1],
                    private_submission_id=private[row.team_id][2])
            if row.team_id in private else row
            for row in rows
        ]
        rows.sort(key=lambda r: (r.private_rank is None, r.private_rank or 0, r.rank))
    return Board(metric=competition.primary_metric, revealed=revealed, rows=tuple(rows))


def versioned_board() -> tuple[str, Board]:
    """(board version, the board to show now), from the cache when no score changed since."""
    version = board_version()
    cache = podium_state().board_cache
    hit = cache.get("board")
    if hit is not None and hit[0] == version:
        return hit
    board = compute_board(is_revealed())
    cache.put("board", (version, board))
    return version, board


def current_board() -> Board:
    return versioned_board()[1]


def team_finals(team_id: int, final_selections: int) -> set[int]:
    """The ids of a team's finals (chosen, or its best public by default)."""
    finals = final_ids_subquery(final_selections)
    return set(db.session.scalars(sa.select(finals.c.id).where(finals.c.team_id == team_id)))
