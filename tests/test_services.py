"""The service layer owns its transactions: each operation commits its whole change or nothing,
never starts over unsaved changes, and the views only map its outcome."""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from leaderboard import create_app, services
from leaderboard.extensions import db
from leaderboard.intake import accept, Upload
from leaderboard.models import Setting, Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import BOARD_VERSION, board_version, is_revealed
from leaderboard.state import podium_state
from leaderboard.transactions import write_transaction
from tests.pg import database_config

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def app(tmp_path, digits_competition):
    return create_app({"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(tmp_path / "instance"),
                       "WTF_CSRF_ENABLED": False, "TESTING": True, **database_config()})


def csv_of(solution, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, predictions))).encode()


def good_csv(solution) -> bytes:
    return csv_of(solution, [max(0, int(v)) for v in solution.labels])


def test_a_failing_operation_leaves_nothing_behind(app):
    with app.app_context():
        with pytest.raises(ZeroDivisionError), write_transaction():
            db.session.add(Team(name="ghost", slug="ghost", token_hash="!"))
            db.session.execute(sa.update(Setting).where(Setting.key == BOARD_VERSION).values(value="41"))
            db.session.flush()
            1 / 0
        assert db.session.scalar(sa.select(sa.func.count(Team.id))) == 0
        assert board_version() == "0"


def test_an_operation_never_commits_unsaved_changes_of_its_caller(app):
    with app.app_context():
        db.session.add(Team(name="pending", slug="pending", token_hash="!"))
        with pytest.raises(RuntimeError, match="unsaved changes"):
            services.reveal(True)
        db.session.rollback()
        assert not is_revealed() and db.session.scalar(sa.select(sa.func.count(Team.id))) == 0


def test_reveal_commits_and_bumps_the_board_version(app):
    with app.app_context():
        services.reveal(True)
        db.session.rollback()  # a rollback after the operation loses nothing: it committed
        assert is_revealed() and board_version() == "1"


def test_finals_are_checked_and_saved_in_one_operation(app, digits_solution):
    with app.app_context():
        team, _ = services.create_team("Finalists")
        rival, _ = services.create_team("Rivals")
        ids = [accept(team, Upload("a.csv", good_csv(digits_solution))).id for _ in range(3)]
        theirs = accept(rival, Upload("b.csv", good_csv(digits_solution))).id
        with pytest.raises(services.FinalsRefused, match="at most 2"):
            services.set_finals(team.id, set(ids))
        with pytest.raises(services.FinalsRefused, match="your own scored"):
            services.set_finals(team.id, {ids[0], theirs})
        assert not db.session.scalar(sa.select(sa.func.count()).where(Submission.selected.is_(True)))
        version = board_version()
        services.set_finals(team.id, {ids[1]})
        db.session.rollback()
        selected = set(db.session.scalars(sa.select(Submission.id).where(Submission.selected.is_(True))))
        assert selected == {ids[1]} and int(board_version()) == int(version) + 1
        assert [s.id for s in services.finals_candidates(team.id)] == sorted(ids)  # equal scores: oldest first


def test_rescore_takes_the_upload_path_and_a_lost_file_is_our_failure(app, digits_solution):
    with app.app_context():
        team, _ = services.create_team("Rescored")
        sub = accept(team, Upload("a.csv", io.BytesIO(good_csv(digits_solution))))
        assert sub.status == SubmissionStatus.SCORED
        assert services.rescore(sub.id).status == SubmissionStatus.SCORED
        (podium_state().storage_root / sub.stored_path).unlink()
        again = services.rescore(sub.id)
        assert again.status == SubmissionStatus.FAILED and not again.counts_toward_limit
        assert again.messages == ["The stored file is missing on the server."]
        assert services.rescore(10**9) is None


def test_a_team_name_is_checked_inside_the_operation(app):
    with app.app_context():
        team, token = services.create_team("  Twice  ")
        assert team.name == "Twice" and token.startswith(f"{team.id}.")
        with pytest.raises(Exception, match="already exists"):
            services.create_team("Twice")
        _, new = services.reset_token(team.id)
        assert new != token and new.startswith(f"{team.id}.")
