"""``podium serve --processes 4`` (gunicorn, 4 worker processes) on SQLite and on PostgreSQL: the daily
limit holds under 40 concurrent uploads, the reveal reaches every process's board cache, and a real
``podium worker`` scores checkpoints through it. Every loop is bounded; the server is stopped by pid."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from leaderboard import create_app
from leaderboard.extensions import db
from leaderboard.models import ScoringJob, Submission
from leaderboard.services import create_team
from tests.conftest import PODIUM, noisy_predictions
from tests.pg import database_config

pytestmark = pytest.mark.slow

PROCESSES = 4
ADMIN_TOKEN = "admin-token-for-the-process-test"
WORKER_TOKEN = "worker-token-for-the-process-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def stop(server: subprocess.Popen, workers: set[int]) -> None:
    """SIGTERM to the gunicorn master (graceful), then SIGKILL to it and its workers if they linger."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)  # only if it outlived its master
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    path = tmp_path_factory.mktemp("checkpoints") / "resnet18.safetensors"
    return save_checkpoint(model, path, library="torchvision", arch="resnet18", num_classes=10)


def csv_bytes(solution, seed: int) -> bytes:
    predictions = noisy_predictions(solution, 0.8, seed)
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, predictions))).encode()


def board_reads(url: str, log: Path, workers: set[int], times_each: int = 3, limit: int = 400) -> list[dict]:
    """GET /api/leaderboard on fresh connections, 8 at a time, until the access log shows every
    worker process answered ``times_each`` of these reads (at most ``limit`` reads, 120 s)."""
    start = len(log.read_text().splitlines()) if log.exists() else 0
    bodies: list[dict] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 120

    def answered() -> Counter:
        lines = log.read_text().splitlines()[start:]
        return Counter(int(m.group(1)) for line in lines if "GET /api/leaderboard" in line
                       for m in [re.search(r"<(\d+)>", line)] if m)

    def read() -> None:
        response = requests.get(f"{url}/api/leaderboard", timeout=30, headers={"Connection": "close"})
        assert response.status_code == 200
        with lock:
            bodies.append(response.json())

    while len(bodies) < limit and time.monotonic() < deadline:
        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        time.sleep(0.2)  # gunicorn writes the access log line after the answer
        counts = answered()
        if all(counts[pid] >= times_each for pid in workers):
            break
    counts = answered()
    assert set(counts) <= workers, (counts, workers)
    assert all(counts[pid] >= times_each for pid in workers), f"reads per worker process: {dict(counts)}"
    return bodies


def test_four_processes_share_the_limit_the_reveal_and_the_job_queue(
        each_database, tmp_path, digits_competition, digits_solution, random_checkpoint):
    instance = tmp_path / "instance"
    config = {"COMPETITION_DIR": str(digits_competition.root), "INSTANCE_PATH": str(instance), **database_config()}
    assert digits_competition.daily_limit == 5
    app = create_app(config)  # migrates the database; the teams exist before the server starts
    with app.app_context():
        alpha = create_team("alpha")[1]
        beta = create_team("beta")[1]
        db.engine.dispose()

    port, log = free_port(), tmp_path / "access.log"
    url = f"http://127.0.0.1:{port}"
    db_args = ["--db", each_database] if each_database else []
    out = open(tmp_path / "server.out", "w")
    server = subprocess.Popen(
        [*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance", str(instance), *db_args,
         "--port", str(port), "--processes", str(PROCESSES), "--threads", "4", "--access-log", str(log),
         "--admin-token", ADMIN_TOKEN, "--worker-token", WORKER_TOKEN],
        stdout=out, stderr=subprocess.STDOUT)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.out").read_text()
            assert time.monotonic() < deadline, "the server did not start: " + (tmp_path / "server.out").read_text()
            workers = children(server.pid)
            try:
                if len(workers) == PROCESSES and requests.get(f"{url}/api/leaderboard", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)

        # 1. 40 concurrent uploads from one team, daily limit 5: exactly 5 accepted, the rest 429.
        barrier = threading.Barrier(40)
        statuses: list[int] = []

        def upload(i: int) -> None:
            body = csv_bytes(digits_solution, i)
            barrier.wait(timeout=30)
            response = requests.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {alpha}"},
                                     files={"file": (f"s{i}.csv", body)}, timeout=120)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert Counter(statuses) == {201: 5, 429: 35}
        with app.app_context():
            stored = db.session.execute(sa.select(Submission.team_id, Submission.status)).all()
            db.engine.dispose()
        assert len(stored) == 5 and {status for _, status in stored} == {"scored"}

        # 2. Every process caches the hidden board; a reveal through one reaches them all.
        hidden = board_reads(url, log, workers)
        assert {b["revealed"] for b in hidden} == {False} and all(len(b["rows"]) == 1 for b in hidden)
        admin = requests.Session()
        page = admin.get(f"{url}/admin/login", timeout=30).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert admin.post(f"{url}/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf}, timeout=30).ok
        page = admin.get(f"{url}/admin/", timeout=30).text  # another process may answer: the secret key is shared
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        revealed = admin.post(f"{url}/admin/reveal", data={"reveal": "1", "csrf_token": csrf}, timeout=30)
        assert revealed.ok and "now public" in revealed.text
        shown = board_reads(url, log, workers)
        assert {b["revealed"] for b in shown} == {True}
        assert all(b == shown[0] for b in shown)  # one board, whichever process answered
        assert all(b == hidden[0] for b in hidden)

        # 3. A podium worker process scores checkpoints queued through the processes.
        queued = []
        for i in range(2):
            with open(random_checkpoint, "rb") as fh:
                response = requests.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {beta}"},
                                         files={"file": (f"m{i}.safetensors", fh.read())}, timeout=120)
            assert response.status_code == 202, response.text
            queued.append(response.json()["id"])
        run = subprocess.run([*PODIUM, "worker", "--server", url, "--token", WORKER_TOKEN, "--drain", "--poll", "0.2",
                              "--name", "w-proc"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "2"})
        assert run.returncode == 0, run.stderr[-3000:]
        with app.app_context():
            jobs = db.session.execute(sa.select(ScoringJob.submission_id, ScoringJob.status, ScoringJob.worker_name)
                                      .where(ScoringJob.submission_id.in_(queued))).all()
            scored = db.session.execute(sa.select(Submission.id, Submission.status, Submission.public_score)
                                        .where(Submission.id.in_(queued))).all()
            db.engine.dispose()
        assert sorted(jobs) == [(sid, "done", "w-proc") for sid in sorted(queued)]
        assert all(status == "scored" and score is not None for _, status, score in scored)
        assert children(server.pid) == workers  # no worker process died and was replaced on the way
    finally:
        stop(server, workers)
        out.close()
    assert server.returncode == 0, (tmp_path / "server.out").read_text()[-3000:]


def test_access_log_without_processes_is_a_usage_error(tmp_path, digits_competition):
    run = subprocess.run([*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance",
                          str(tmp_path / "instance"), "--access-log", "-"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--access-log goes with --processes" in run.stderr
    assert "Traceback" not in run.stderr


def test_processes_must_be_at_least_one(tmp_path, digits_competition):
    run = subprocess.run([*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance",
                          str(tmp_path / "instance"), "--processes", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--processes" in run.stderr
