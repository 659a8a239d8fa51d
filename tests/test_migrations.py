"""Alembic owns the schema: new databases, out-of-date ones, and the 0.1 instance kept in tests/data.

The 0.1 instance (``tests/data/v01_instance``, made by ``tests/data/make_v01_instance.py`` with the
first release) is upgraded in place on SQLite, and on PostgreSQL after its rows are loaded there by
``leaderboard.dbcopy``; every team, token, submission, score, note, history, final selection,
stored file and job must come through, and the old tokens must still log in through the real app.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.conftest import PODIUM, noisy_predictions
from leaderboard import create_app
from leaderboard.dbadmin import head_revision
from leaderboard.dbcopy import copy_database
from leaderboard.extensions import db
from leaderboard.models import ScoringJob, Setting, Submission, Team
from tests.live import make_test_app

DATA = Path(__file__).resolve().parent / "data"
V01 = DATA / "v01_instance"
RECORD = json.loads((DATA / "v01_instance.json").read_text(encoding="utf-8"))


def podium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.usefixtures("each_database")
def test_the_migrations_make_exactly_the_models_schema(tmp_path, digits_competition):
    app = make_test_app(tmp_path, digits_competition.root)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, db.metadata) == []
        assert dict(conn.execute(sa.select(Setting.key, Setting.value)).all()) == {"board_version": "0", "revealed": "0"}
        db.engine.dispose()


def _v01_rows() -> dict[str, list[dict]]:
    """The 0.1 instance's rows, read with the sqlite3 module (not through podium's models)."""
    with sqlite3.connect(V01 / "podium.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return {t: [dict(r) for r in conn.execute(f"select * from {t} order by 1")]
                for t in ("team", "submission", "scoring_job", "setting")}


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


@pytest.fixture
def v01_instance(tmp_path, digits_competition) -> Path:
    """A copy of the 0.1 instance, for the competition it was made for (checked by its data files' hashes:
    competition.toml is written anew by each release, with new settings at their defaults)."""
    for name, digest in RECORD["competition"]["sha256"].items():
        if name == "competition.toml":
            continue
        assert hashlib.sha256((digits_competition.root / name).read_bytes()).hexdigest() == digest, name
    instance = tmp_path / "instance"
    shutil.copytree(V01, instance)
    return instance


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_v01_instance_is_adopted_and_everything_survives(backend, request, v01_instance, digits_competition,
                                                           digits_solution):
    before = _v01_rows()
    assert {t: len(rows) for t, rows in before.items()} == RECORD["counts"]
    options = ["--competition", str(digits_competition.root), "--instance", str(v01_instance)]
    config = {"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(v01_instance),
              "WTF_CSRF_ENABLED": False}
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        counts = copy_database(f"sqlite:///{v01_instance / 'podium.sqlite3'}", url)
        assert counts == RECORD["counts"]
        (v01_instance / "podium.sqlite3").unlink()  # the instance now lives on PostgreSQL only
        options += ["--db", url]
        config["SQLALCHEMY_DATABASE_URI"] = url

    # Out of date: serve refuses, naming the command; db current says so.
    refused = podium("serve", *options, "--port", "9")
    assert refused.returncode == 2 and "podium db upgrade --competition" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    current = podium("db", "current", *options)
    assert current.returncode == 1 and "podium 0.1" in current.stdout
    upgraded = podium("db", "upgrade", *options)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"podium 0.1 (tables without a recorded revision) -> revision {head_revision()}" in upgraded.stdout
    assert podium("db", "current", *options).returncode == 0
    again = podium("db", "upgrade", *options)
    assert again.returncode == 0 and "already at the newest schema" in again.stdout

    app = create_app({**config, "ADMIN_TOKEN": RECORD["admin_token"], "WORKER_TOKEN": RECORD["worker_token"]})
    assert (v01_instance / "secret_key").read_text().strip() == app.config["SECRET_KEY"]
    with app.app_context():
        teams = {t.id: t for t in db.session.scalars(sa.select(Team))}
        assert [(t.id, t.name, t.slug, t.token_hash, t.created_at) for t in teams.values()] == [
            (r["id"], r["name"], r["slug"], r["token_hash"], _when(r["created_at"])) for r in before["team"]]
        subs = list(db.session.scalars(sa.select(Submission).order_by(Submission.id)))
        assert len(subs) == len(before["submission"])
        for sub, row in zip(subs, before["submission"]):
            assert (sub.id, sub.team_id, sub.kind, sub.original_name, sub.sha256, sub.stored_path, sub.note,
                    sub.history_csv, sub.status, sub.created_at, sub.late, sub.selected, sub.counts_toward_limit) == (
                row["id"], row["team_id"], row["kind"], row["original_name"], row["sha256"], row["stored_path"],
                row["note"], row["history_csv"], row["status"], _when(row["created_at"]), bool(row["late"]),
                bool(row["selected"]), bool(row["counts_toward_limit"]))
            assert (sub.public_score, sub.private_score, sub.public_ci_low, sub.public_ci_high) == (
                row["public_score"], row["private_score"], row["public_ci_low"], row["public_ci_high"])
            assert sub.messages == json.loads(row["messages"])
            assert sub.result_json == (json.loads(row["result_json"]) if row["result_json"] else None)
            stored = v01_instance / "submissions" / sub.stored_path
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == sub.sha256
        assert [s.note for s in subs if s.history_csv] == ["small CNN, 12 epochs", "resnet18 from scratch"]
        assert {s.id for s in subs if s.selected} == {1, 3, 4}
        assert sorted(s.status for s in subs) == sorted(
            [k for k, n in RECORD["statuses"].items() for _ in range(n)])
        jobs = [(j.id, j.submission_id, j.status, j.worker_name, j.attempts)
                for j in db.session.scalars(sa.select(ScoringJob).order_by(ScoringJob.id))]
        assert jobs == [(r["id"], r["submission_id"], r["status"], r["worker_name"], r["attempts"])
                        for r in before["scoring_job"]]
        assert dict(db.session.execute(sa.select(Setting.key, Setting.value)).all()) == {
            r["key"]: r["value"] for r in before["setting"]}

    # The old tokens log in through the real app; the replaced one does not.
    for name, token in RECORD["tokens"].items():
        client = app.test_client()
        assert client.post("/login", data={"name": name, "token": "x" + token}).status_code == 401
        assert client.post("/login", data={"name": name, "token": token}).status_code == 302, name
        assert client.get("/upload").status_code == 200
    for name, token in RECORD["replaced_tokens"].items():
        assert app.test_client().post("/login", data={"name": name, "token": token}).status_code == 401
    owls = app.test_client()
    mine = owls.get("/api/teams/owls/submissions", headers={"Authorization": f"Bearer {RECORD['tokens']['Owls']}"})
    assert mine.status_code == 200 and [s["id"] for s in mine.get_json()["submissions"]] == [1, 2, 3]
    # Revealed: the private board shows; the finals chosen in 0.1 rank (Owls: their checkpoint, 0.865).
    board = app.test_client().get("/api/leaderboard").get_json()
    assert board["revealed"] is True
    assert [(r["team"], r["private_score"]) for r in board["rows"]][:2] == [
        ("Badgers", pytest.approx(0.902374670184697, abs=1e-4)), ("Owls", pytest.approx(0.865435356200528, abs=1e-4))]
    admin = app.test_client()
    assert admin.post("/admin/login", data={"token": RECORD["admin_token"]}).status_code == 302
    assert admin.get("/admin/").status_code == 200
    # The queue survives: the 0.1 worker token claims the queued checkpoint and scores it; new uploads get new ids.
    auth = {"Authorization": f"Bearer {RECORD['worker_token']}"}
    job = app.test_client().post("/api/jobs/claim", json={"worker": "after-upgrade"}, headers=auth).get_json()
    assert job["submission_id"] == 6
    done = app.test_client().post(job["result_url"], json={"predictions": noisy_predictions(digits_solution, 0.7).tolist()},
                                  headers={**auth, "X-Podium-Lease": job["lease"]})
    assert done.status_code == 200 and done.get_json()["status"] == "done"
    fresh = app.test_client().post("/api/submissions", headers={"Authorization": f"Bearer {RECORD['tokens']['Quiet Ones']}"},
                                   data={"file": (open(v01_instance / "submissions" / subs[0].stored_path, "rb"), "a.csv")},
                                   content_type="multipart/form-data")
    assert fresh.status_code == 201 and fresh.get_json()["id"] == 8
    with app.app_context():
        db.engine.dispose()


def test_serve_refuses_a_database_at_an_unknown_revision(v01_instance, digits_competition):
    options = ["--competition", str(digits_competition.root), "--instance", str(v01_instance)]
    assert podium("db", "upgrade", *options).returncode == 0
    with sqlite3.connect(v01_instance / "podium.sqlite3") as conn:
        conn.execute("update alembic_version set version_num = 'f00d'")
    refused = podium("team", "list", *options)
    assert refused.returncode == 2 and "revision f00d, which this podium does not know" in refused.stderr
    assert podium("db", "upgrade", *options).returncode == 2


def test_tables_that_are_not_v01s_are_not_adopted(tmp_path, digits_competition):
    instance = tmp_path / "instance"
    instance.mkdir()
    with sqlite3.connect(instance / "podium.sqlite3") as conn:
        conn.execute("create table team (id integer primary key, name text)")
    options = ["--competition", str(digits_competition.root), "--instance", str(instance)]
    refused = podium("db", "upgrade", *options)
    assert refused.returncode == 2 and "cannot be adopted" in refused.stderr, refused.stderr
    assert "table 'submission' is missing" in refused.stderr
    with sqlite3.connect(instance / "podium.sqlite3") as conn:  # left as it was
        assert [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")] == ["team"]


START = """
import os, sys, time
from leaderboard import create_app
open(sys.argv[4] + f".ready-{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[4]):  # start together, after the slow imports
    time.sleep(0.001)
app = create_app({"COMPETITION_DIR": sys.argv[1], "SQLALCHEMY_DATABASE_URI": sys.argv[2], "INSTANCE_PATH": sys.argv[3]})
print("started")
"""


@pytest.mark.slow
def test_processes_starting_together_on_a_new_postgresql_database_migrate_it_once(tmp_path, pg_url, digits_competition):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", START, str(digits_competition.root), pg_url,
                               str(tmp_path / "instance"), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.startswith("started"), err[-2000:]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalars().all() == [head_revision()]
        assert sorted(conn.execute(sa.text("select key, value from setting")).all()) == [
            ("board_version", "0"), ("revealed", "0")]
    engine.dispose()


def test_db_revision_writes_nothing_when_the_models_and_migrations_agree(tmp_path, digits_competition):
    versions = sorted((Path(__file__).resolve().parent.parent / "leaderboard" / "migrations" / "versions").glob("*.py"))
    options = ["--competition", str(digits_competition.root), "--instance", str(tmp_path / "instance")]
    made = podium("db", "upgrade", *options)  # an empty database: made by the migrations
    assert made.returncode == 0 and f"empty (no tables yet) -> revision {head_revision()}" in made.stdout, made.stderr
    refused = podium("db", "revision", "-m", "nothing", *options)
    assert refused.returncode == 2 and "no change to write a revision for" in refused.stderr, refused.stderr
    assert sorted(versions[0].parent.glob("*.py")) == versions
