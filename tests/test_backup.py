"""``podium backup`` while a real ``podium serve`` takes an upload burst, then ``podium restore``."""
from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from safetensors.numpy import save as save_safetensors

from tests.conftest import PODIUM, noisy_predictions
from leaderboard import create_app
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import Submission

TEAMS = 40
PER_TEAM = 6  # one more than the daily limit of 5
PAUSE = 1.0  # seconds between one uploader's requests


def podium(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint(seed: int, floats: int = 250_000) -> bytes:
    """A ~1 MB safetensors file with a valid card (the burst only stores it and queues a job)."""
    weights = np.random.default_rng(seed).standard_normal(floats).astype(np.float32)
    return save_safetensors({"fc.weight": weights}, metadata={"library": "torchvision", "arch": "resnet18",
                                                              "num_classes": "10"})


def rows(url: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "submission": conn.execute(sa.text(
                    "SELECT id, team_id, kind, stored_path, sha256 FROM submission ORDER BY id")).all(),
                "scoring_job": conn.execute(sa.text("SELECT submission_id FROM scoring_job ORDER BY id")).all(),
                "team": conn.execute(sa.text("SELECT id, name FROM team ORDER BY id")).all(),
            }
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_backup_taken_during_an_upload_burst_restores_with_nothing_half_written(
        backend, request, tmp_path, digits_competition, digits_solution):
    instance = tmp_path / "instance"
    db_args: list[str] = []
    config = {"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(instance)}
    if backend == "postgresql":
        source_url = request.getfixturevalue("pg_url")
        target_url = request.getfixturevalue("pg_cluster").create_database()
        db_args = ["--db", source_url]
        config["SQLALCHEMY_DATABASE_URI"] = source_url
    app = create_app(config)
    with app.app_context():
        tokens = [create_team(f"Team {i}")[1] for i in range(TEAMS)]
    with app.app_context():
        db.engine.dispose()
    pred = noisy_predictions(digits_solution, 0.8)
    csv = ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, pred))).encode()

    port = free_port()
    server = subprocess.Popen([*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance",
                               str(instance), "--port", str(port), "--threads", "8", *db_args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.communicate(timeout=5)
            time.sleep(0.2)

        pending: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(PER_TEAM):
            for t in range(TEAMS):
                pending.put((t, n))
        finished: list[tuple[int, float]] = []  # (status, when it came back)
        lock = threading.Lock()
        stop = threading.Event()

        def uploader() -> None:
            while not stop.is_set():
                try:
                    team, n = pending.get_nowait()
                except queue.Empty:
                    return
                data, name = (checkpoint(team * 100 + n), "m.safetensors") if n % 2 else (csv + b"\n" * n, "s.csv")
                r = requests.post(f"{base}/api/submissions", headers={"Authorization": f"Bearer {tokens[team]}"},
                                  files={"file": (name, data)}, timeout=120)
                with lock:
                    finished.append((r.status_code, time.monotonic()))
                stop.wait(PAUSE)  # a steady stream (about 8 / PAUSE a second) that outlasts the backup

        def accepted(after: float = 0.0) -> int:
            with lock:
                return sum(code in (201, 202) and when > after for code, when in finished)  # scored / queued

        archive = tmp_path / "backup.tar.gz"
        threads = [threading.Thread(target=uploader) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            while accepted() < 8 and time.monotonic() < deadline + 120:
                time.sleep(0.01)
            accepted_before = accepted()
            backed_up = podium("backup", "--out", str(archive), "--instance", str(instance), *db_args)
            backup_done = time.monotonic()
            while accepted(after=backup_done) < 5 and not pending.empty():  # the burst goes on after it
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
        assert backed_up.returncode == 0, backed_up.stderr
        assert accepted(after=backup_done) >= 5, "the burst ended before the backup did"
        accepted_total = accepted()
        with lock:
            assert {code for code, _ in finished} <= {201, 202, 429}, finished
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    manifest = json.loads(tarfile.open(archive).extractfile("manifest.json").read())
    in_backup = manifest["database"]["counts"]["submission"]
    # Taken mid-burst: at least what had been accepted when it started, at most everything.
    assert accepted_before <= in_backup < accepted_total, (accepted_before, in_backup, accepted_total)

    restored = tmp_path / "restored"
    restore_args = ["--db", target_url] if backend == "postgresql" else []
    done = podium("restore", str(archive), "--instance", str(restored), *restore_args)
    assert done.returncode == 0, done.stderr
    url = target_url if backend == "postgresql" else f"sqlite:///{restored / 'podium.sqlite3'}"
    got = rows(url)
    assert len(got["submission"]) == in_backup
    for _id, team_id, kind, stored_path, sha in got["submission"]:
        path = restored / "submissions" / stored_path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, stored_path
    files = {p.relative_to(restored / "submissions").as_posix() for p in (restored / "submissions").rglob("*")
             if p.is_file()}
    assert files == {r[3] for r in got["submission"]}  # nothing extra (no .incoming, no later uploads)
    checkpoints = sorted(r[0] for r in got["submission"] if r[2] == "checkpoint")
    assert sorted(j[0] for j in got["scoring_job"]) == checkpoints  # each checkpoint row has its job
    per_team = [sum(1 for r in got["submission"] if r[1] == t) for t in range(1, TEAMS + 1)]
    assert max(per_team) <= 5 and len(got["team"]) == TEAMS
    for name in ("secret_key", "admin_token", "worker_token"):
        assert (restored / name).read_text() == (instance / name).read_text()
        assert (restored / name).stat().st_mode & 0o777 == 0o600

    # The restored instance serves: the old tokens work, the rows are there.
    app = create_app({"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(restored),
                      **({"SQLALCHEMY_DATABASE_URI": target_url} if backend == "postgresql" else {})})
    client = app.test_client()
    mine = client.get("/api/teams/team-0/submissions", headers={"Authorization": f"Bearer {tokens[0]}"})
    assert mine.status_code == 200 and len(mine.get_json()["submissions"]) == per_team[0]
    with app.app_context():
        db.engine.dispose()


def instance_with_one_csv(tmp_path, digits_competition, digits_solution) -> tuple[Path, str]:
    """An instance with one team and one scored CSV submission: (the folder, its stored path)."""
    instance = tmp_path / "instance"
    app = create_app({"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(instance),
                      "WTF_CSRF_ENABLED": False})
    pred = noisy_predictions(digits_solution, 0.8)
    csv = ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, pred))).encode()
    with app.app_context():
        _, token = create_team("Solo")
    r = app.test_client().post("/api/submissions", headers={"Authorization": f"Bearer {token}"},
                               data={"file": (io.BytesIO(csv), "a.csv")}, content_type="multipart/form-data")
    assert r.status_code == 201
    with app.app_context():
        stored = db.session.scalars(sa.select(Submission.stored_path)).one()
        db.engine.dispose()
    return instance, stored


@pytest.fixture
def small_backup(tmp_path, digits_competition, digits_solution) -> tuple[Path, Path]:
    instance, _ = instance_with_one_csv(tmp_path, digits_competition, digits_solution)
    archive = tmp_path / "b.tar.gz"
    assert podium("backup", "--out", str(archive), "--instance", str(instance)).returncode == 0
    return archive, instance


def test_restore_refuses_a_non_empty_instance_without_force(small_backup, tmp_path):
    archive, _ = small_backup
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused = podium("restore", str(archive), "--instance", str(target))
    assert refused.returncode == 2 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    forced = podium("restore", str(archive), "--instance", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(target / "podium.sqlite3") as conn:
        assert conn.execute("select count(*) from submission").fetchone() == (1,)


def test_restore_refuses_a_damaged_archive_and_writes_nothing(small_backup, tmp_path):
    archive, _ = small_backup
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.startswith("submissions/"):
                data = data.replace(b"id,label", b"id,lab3l")  # same size, other bytes
            dst.addfile(member, io.BytesIO(data))
    target = tmp_path / "target"
    refused = podium("restore", str(damaged), "--instance", str(target))
    assert refused.returncode == 2 and "does not match its checksum" in refused.stderr, refused.stderr
    assert not target.exists() or not any(target.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".podium-restore-")]


def test_a_postgresql_backup_is_not_restored_into_sqlite(tmp_path, pg_url, digits_competition):
    app = create_app({"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(tmp_path / "instance"),
                      "SQLALCHEMY_DATABASE_URI": pg_url})
    with app.app_context():
        create_team("Solo")
    with app.app_context():
        db.engine.dispose()
    archive = tmp_path / "pg.tar.gz"
    made = podium("backup", "--out", str(archive), "--instance", str(tmp_path / "instance"), "--db", pg_url)
    assert made.returncode == 0, made.stderr
    refused = podium("restore", str(archive), "--instance", str(tmp_path / "restored"))
    assert refused.returncode == 2 and "--db postgresql+psycopg://" in refused.stderr
    assert os.listdir(tmp_path / "restored") == []


def test_a_sqlite_backup_restores_into_postgresql_with_the_same_schema(small_backup, tmp_path, pg_url,
                                                                       digits_competition):
    """The way from SQLite to PostgreSQL: back up, restore with --db; the schema is the migrations' own."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from leaderboard.dbadmin import head_revision

    archive, instance = small_backup
    done = podium("restore", str(archive), "--instance", str(tmp_path / "moved"), "--db", pg_url)
    assert done.returncode == 0, done.stderr
    app = create_app({"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(tmp_path / "moved"),
                      "SQLALCHEMY_DATABASE_URI": pg_url})
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, db.metadata) == []
    with app.app_context():
        team = create_team("Second")[0]  # the id sequences moved past the copied rows
        assert team.id == 2
    with app.app_context():
        db.engine.dispose()
    assert (tmp_path / "moved" / "secret_key").read_text() == (instance / "secret_key").read_text()


def test_a_checkpoints_kept_predictions_travel_with_the_backup(tmp_path, digits_competition, digits_solution):
    # The honest board reads a checkpoint's predictions from <stored file>.predictions.npy: a backup
    # that left them out would restore a board without that team's tiers and ranges.
    instance, stored = instance_with_one_csv(tmp_path, digits_competition, digits_solution)
    kept = instance / "submissions" / (stored + ".predictions.npy")
    kept.write_bytes(b"\x93NUMPY predictions")
    archive = tmp_path / "b.tar.gz"
    assert podium("backup", "--out", str(archive), "--instance", str(instance)).returncode == 0
    target = tmp_path / "target"
    done = podium("restore", str(archive), "--instance", str(target))
    assert done.returncode == 0, done.stderr
    assert (target / "submissions" / (stored + ".predictions.npy")).read_bytes() == b"\x93NUMPY predictions"
