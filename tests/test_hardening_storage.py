"""Issue 9, item 2: refused files are deleted, orphans are swept (``podium gc``), each team has a
storage quota; against a real waitress server (as ``podium serve`` builds it) and the real command."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM, noisy_predictions, write_submission
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.limits import gate_waitress
from leaderboard.models import Submission
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL


@pytest.fixture
def served(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    servers = []

    def start(**overrides):
        app = make_test_app(tmp_path, competition, **overrides)
        server = LiveServer(app)
        gate_waitress(server.server, app)
        servers.append(server.start())
        return app, server

    yield start
    for server in servers:
        server.stop()


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def csv_bytes(tmp_path, competition, solution, seed: int) -> bytes:
    path = write_submission(tmp_path / f"s{seed}.csv", solution.ids,
                            [competition.classes[p] for p in noisy_predictions(solution, 0.7, seed=seed)])
    return path.read_bytes()


def post(url, token, data: bytes, name="s.csv"):
    return requests.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                         files={"file": (name, data)}, timeout=60)


def test_a_refused_upload_is_deleted_and_its_hash_and_reason_are_kept(served, tmp_path):
    app, server = served()
    with app.app_context():
        _, token = create_team("Alpha")
    bad = b"id,label\nnot-an-id,cat\n"
    r = post(server.url, token, bad, "bad.csv")
    assert r.status_code == 422, r.text
    root = Path(app.config["STORAGE_ROOT"])
    assert files_under(root) - {p for p in files_under(root) if p.startswith(".incoming/")} == set()
    with app.app_context():
        sub = db.session.scalars(sa.select(Submission)).one()
        assert sub.status == "refused" and sub.messages
        import hashlib

        assert sub.sha256 == hashlib.sha256(bad).hexdigest()
        assert sub.counts_toward_limit  # still counts, as on Kaggle


def test_uploads_that_lose_the_daily_limit_race_leave_no_file(served, tmp_path, digits_competition, digits_solution):
    app, server = served()
    with app.app_context():
        _, token = create_team("Alpha")
    bodies = [csv_bytes(tmp_path, digits_competition, digits_solution, seed) for seed in range(16)]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda body: post(server.url, token, body).status_code, bodies))
    assert codes.count(201) == 5 and codes.count(429) == 11, codes
    root = Path(app.config["STORAGE_ROOT"])
    with app.app_context():
        kept = set(db.session.scalars(sa.select(Submission.stored_path)))
    assert {p for p in files_under(root) if not p.startswith(".incoming/")} == kept
    assert not any(p.startswith(".incoming/") for p in files_under(root))


def test_a_team_over_its_storage_quota_gets_a_clear_413_and_nothing_is_kept(served, tmp_path, digits_competition,
                                                                               digits_solution):
    bodies = [csv_bytes(tmp_path, digits_competition, digits_solution, seed) for seed in range(3)]
    app, server = served(TEAM_STORAGE_QUOTA=len(bodies[0]) * 2 + 10)
    with app.app_context():
        _, token = create_team("Alpha")
        _, other = create_team("Beta")
    assert [post(server.url, token, b).status_code for b in bodies[:2]] == [201, 201]
    root = Path(app.config["STORAGE_ROOT"])
    before = files_under(root)
    r = post(server.url, token, bodies[2])
    assert r.status_code == 413, r.text
    assert "storage quota" in r.json()["errors"][0]
    assert files_under(root) == before
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 2  # nothing counted
    assert post(server.url, other, bodies[2]).status_code == 201  # another team is not affected


def test_podium_gc_removes_orphans_and_refused_files_and_reports_them(tmp_path, digits_competition, digits_solution):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    instance = tmp_path / "instance"
    app = make_test_app(tmp_path, competition, SQLALCHEMY_DATABASE_URI=None, INSTANCE_PATH=str(instance))
    from leaderboard.intake import Upload, accept

    with app.app_context():
        team, _ = create_team("Alpha")
        kept = accept(team, Upload("s.csv", csv_bytes(tmp_path, digits_competition, digits_solution, 1)))
        assert kept.status == "scored"
        # a refused file from before this release: the row exists (written with SQL), the file too
        db.session.execute(sa.insert(Submission).values(
            team_id=team.id, kind="csv", sha256="0" * 64, stored_path="alpha/old-refused.csv", status="refused",
            messages=["bad"], note="", original_name="x.csv", late=False, selected=False, counts_toward_limit=True))
        db.session.commit()
        kept_path = kept.stored_path
    root = instance / "submissions"
    old = time.time() - 7200
    for relative, size in (("alpha/old-refused.csv", 1000), ("alpha/" + "a" * 64 + ".safetensors", 5000),
                           (".incoming/upload-dead", 300), ("alpha/" + "b" * 64 + ".safetensors.predictions.npy", 200),
                           (kept_path + ".predictions.npy", 100)):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x" * size)
        os.utime(root / relative, (old, old))
    (root / "alpha" / "young.csv").write_bytes(b"y" * 10)  # an upload in flight: spared
    for relative in (".explanations/1-abc/explain.json", ".kaggle-data/digits-1.zip", ".kaggle-uploads/f.json"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)  # the server's caches and open uploads
        (root / relative).write_bytes(b"c" * 10)
        os.utime(root / relative, (old, old))
    with app.app_context():
        db.engine.dispose()
    done = subprocess.run([*PODIUM, "gc", "--competition", str(competition), "--instance", str(instance)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "removed 4 file(s)" in done.stdout, done.stdout
    assert "alpha/old-refused.csv (1000 bytes)" in done.stdout
    # the predictions kept beside a kept submission's file stay; those of no submission go
    assert files_under(root) == {kept_path, kept_path + ".predictions.npy", "alpha/young.csv",
                                 ".explanations/1-abc/explain.json", ".kaggle-data/digits-1.zip",
                                 ".kaggle-uploads/f.json"}


def test_the_servers_own_folders_are_the_ones_gc_spares(tmp_path, digits_competition):
    from leaderboard import explanations, kaggle_service
    from leaderboard.gc import SERVER_FOLDERS

    app = make_test_app(tmp_path, digits_competition.root)
    with app.app_context():
        root = app.extensions["podium"].storage_root
        used = {explanations.FOLDER, kaggle_service._upload_dir().relative_to(root).parts[0]}
    assert used <= SERVER_FOLDERS and ".kaggle-data" in SERVER_FOLDERS  # kaggle_service.data_zip's folder


def test_a_checkpoint_a_worker_refuses_is_deleted_after_the_refusal(served):
    app, server = served(WORKER_TOKEN="hardening-worker")
    with app.app_context():
        _, token = create_team("Alpha")
    r = post(server.url, token, b"PK\x03\x04" + b"\x00" * 2000, "model.safetensors")  # a zip: a checkpoint to queue
    assert r.status_code == 202, r.text
    root = Path(app.config["STORAGE_ROOT"])
    stored = {p for p in files_under(root) if not p.startswith(".incoming/")}
    assert len(stored) == 1
    worker = {"Authorization": "Bearer hardening-worker"}
    job = requests.post(f"{server.url}/api/jobs/claim", json={"worker": "w1"}, headers=worker, timeout=10).json()
    done = requests.post(f"{server.url}{job['result_url']}", json={"errors": ["not a safetensors file"]},
                         headers={**worker, "X-Podium-Lease": job["lease"]}, timeout=10)
    assert done.status_code == 200, done.text
    assert {p for p in files_under(root) if not p.startswith(".incoming/")} == set()
    with app.app_context():
        sub = db.session.scalars(sa.select(Submission)).one()
        assert sub.status == "refused" and sub.messages == ["not a safetensors file"] and len(sub.sha256) == 64
