"""The organizer's and the teams' operations besides uploads (``intake.accept``) and the job queue
(``jobs``): each one validates, changes rows and commits in one ``write_transaction``; the views
only parse the request and turn the outcome into a page or JSON."""
from __future__ import annotations

import sqlalchemy as sa

from harness.errors import PodiumError
from leaderboard.auth import hash_token, new_secret, unique_slug
from leaderboard.extensions import db
from leaderboard.intake import parse_stored_csv
from leaderboard.jobs import requeue
from leaderboard.models import Submission, Team
from leaderboard.names import check_team_name
from leaderboard.ranking import best_first, bump_board_version, ranked_filter, set_revealed
from leaderboard.recording import record_csv
from leaderboard.sessions import revoke_admin_sessions, revoke_team_sessions
from leaderboard.state import current_competition
from leaderboard.transactions import write_transaction


class FinalsRefused(PodiumError):
    """The chosen finals break a rule (too many, or not the team's own scored, on-time submissions)."""


def create_team(name: str) -> tuple[Team, str]:
    """Add a team and return it with its token (shown once; only its hash is stored). Commits."""
    name = name.strip()
    if not name:
        raise PodiumError("A team needs a name.")
    if len(name) > 100:
        raise PodiumError("A team name can be at most 100 characters.")
    with write_transaction():
        if db.session.scalar(sa.select(Team.id).where(Team.name == name)) is not None:
            raise PodiumError(f"A team named {name!r} already exists.")
        check_team_name(name)  # no invisible characters, no look-alike of an existing name
        team = Team(name=name, slug=unique_slug(name), token_hash="!")
        db.session.add(team)
        db.session.flush()
        token = f"{team.id}.{new_secret()}"
        team.token_hash = hash_token(token)
    db.session.refresh(team)  # usable after the session ends (the CLI prints it)
    return team, token


def reset_token(team_id: int) -> tuple[Team, str]:
    """A new token for the team (the old one, and every session opened with it, stop working). Commits."""
    with write_transaction():
        team = db.session.get(Team, team_id)
        if team is None:
            raise PodiumError("There is no such team.")
        token = f"{team.id}.{new_secret()}"
        team.token_hash = hash_token(token)
        revoke_team_sessions(team.id)
    db.session.refresh(team)
    return team, token


def end_team_sessions(team_id: int) -> None:
    """Every browser session of the team ends (logout). Commits."""
    with write_transaction():
        revoke_team_sessions(team_id)


def end_organizer_sessions() -> None:
    """Every organizer session ends (admin logout). Commits."""
    with write_transaction():
        revoke_admin_sessions()


def finals_candidates(team_id: int) -> list[Submission]:
    """The team's submissions that may be finals, best public score first."""
    return list(db.session.scalars(
        sa.select(Submission).where(Submission.team_id == team_id, ranked_filter())
        .order_by(best_first(Submission.public_score), Submission.created_at)
    ))


def set_finals(team_id: int, chosen: set[int]) -> None:
    """Make ``chosen`` the team's final submissions (none: its best public ones count). Commits.

    Raises ``FinalsRefused`` for more than the competition allows, or for an id that is not one of
    the team's own scored, on-time submissions.
    """
    k = current_competition().final_selections
    if len(chosen) > k:
        raise FinalsRefused(f"Choose at most {k} final submission{'s' if k != 1 else ''}.")
    with write_transaction(lock_team_id=team_id):
        eligible = set(db.session.scalars(
            sa.select(Submission.id).where(Submission.team_id == team_id, ranked_filter())))
        if not chosen <= eligible:
            raise FinalsRefused("Only your own scored, on-time submissions can be finals.")
        db.session.execute(sa.update(Submission).where(Submission.team_id == team_id).values(
            selected=Submission.id.in_(chosen) if chosen else False))
        bump_board_version()


def reveal(value: bool) -> None:
    """Show (True) or hide the private board. Commits."""
    with write_transaction():
        set_revealed(value)


def rescore(submission_id: int) -> Submission | None:
    """Score a submission again: a CSV at once from its stored file (intake's CSV path), a
    checkpoint back in the workers' queue. None when there is no such submission. Commits."""
    with write_transaction():
        submission = db.session.get(Submission, submission_id)
        if submission is None:
            return None
        if submission.kind == "csv":
            record_csv(submission, parse_stored_csv(submission.stored_path))
        else:
            requeue(submission)
            bump_board_version()
    return submission
