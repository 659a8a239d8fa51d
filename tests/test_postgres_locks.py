"""PostgreSQL-only behaviour of the job queue and the daily limit, with a second connection holding
row locks the way a concurrent server process's transaction would."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa
from safetensors.numpy import save as save_safetensors

from leaderboard import jobs
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import LimitReached, Upload, accept
from leaderboard.models import Submission, Team
from tests.live import make_test_app


def checkpoint_bytes(seed: int) -> bytes:
    weights = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return save_safetensors({"fc.weight": weights},
                            metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})


@pytest.fixture
def app(tmp_path, digits_competition, pg_url):
    app = make_test_app(tmp_path, digits_competition.root, SQLALCHEMY_DATABASE_URI=pg_url)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_a_claim_skips_a_job_row_locked_by_another_transaction(app, pg_url):
    with app.app_context():
        team, _ = create_team("alpha")
        first, second = [accept(team, Upload(f"m{i}.safetensors", checkpoint_bytes(i))).id for i in range(2)]
    holder = sa.create_engine(pg_url)
    result: list = []
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("SELECT id FROM scoring_job WHERE submission_id = :s FOR UPDATE"), {"s": first})

            def claim() -> None:
                with app.app_context():
                    won = jobs.claim("w1")
                    result.append(won.submission_id if won else None)

            thread = threading.Thread(target=claim)
            thread.start()
            thread.join(timeout=5)
            claimed_while_locked = not thread.is_alive()
            conn.rollback()  # release the lock; a waiting claim goes on
            thread.join(timeout=30)
    finally:
        holder.dispose()
    assert claimed_while_locked, "the claim waited for the locked job instead of taking the next one"
    assert result == [second]


def test_the_daily_limit_check_waits_for_the_teams_row_lock(app, pg_url, digits_solution):
    """Two processes' uploads for one team serialise on the team row: an upload started while another
    transaction holds that lock waits for it (and then counts what it committed)."""
    csv = ("id,label\n" + "".join(f"{i},0\n" for i in digits_solution.ids)).encode()
    with app.app_context():
        team, _ = create_team("alpha")
        team_id = team.id
        for i in range(4):
            accept(team, Upload(f"s{i}.csv", csv + b"\n" * i))
    holder = sa.create_engine(pg_url)
    outcome: list = []
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("SELECT id FROM team WHERE id = :t FOR UPDATE"), {"t": team_id})
            # What another process's accept() does under that lock: insert the team's 5th submission.
            conn.execute(sa.text(
                "INSERT INTO submission (team_id, kind, original_name, sha256, stored_path, note, status, messages, "
                "created_at, late, selected, counts_toward_limit) SELECT team_id, kind, original_name, sha256, "
                "stored_path, note, status, messages, created_at, late, selected, counts_toward_limit FROM submission "
                "WHERE team_id = :t ORDER BY id LIMIT 1"), {"t": team_id})

            def upload() -> None:
                with app.app_context():
                    team = db.session.get(Team, team_id)
                    try:
                        outcome.append(accept(team, Upload("late.csv", csv + b"\n" * 9)).status)
                    except LimitReached:
                        outcome.append("limit")

            thread = threading.Thread(target=upload)
            thread.start()
            thread.join(timeout=3)
            waited = thread.is_alive()
            conn.commit()
            thread.join(timeout=30)
    finally:
        holder.dispose()
    assert waited, "the upload did not wait for the team's row lock"
    assert outcome == ["limit"]  # it saw the 5th submission committed under the lock
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 5


def test_concurrent_claims_take_distinct_jobs_on_postgresql(app):
    """Eight claims at once over eight queued jobs: each wins a different job, none is left queued."""
    with app.app_context():
        teams = [create_team("alpha")[0], create_team("beta")[0]]  # 4 each: under the daily limit of 5
        ids = {accept(teams[i % 2], Upload(f"m{i}.safetensors", checkpoint_bytes(i))).id for i in range(8)}
    barrier = threading.Barrier(8)
    won: list = []

    def claim(i: int) -> None:
        with app.app_context():
            barrier.wait(timeout=10)
            claimed = jobs.claim(f"w{i}")
            won.append(claimed.submission_id if claimed else None)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won) == sorted(ids)
    with app.app_context():
        assert jobs.queue_counts() == {"running": 8}
