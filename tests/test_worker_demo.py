"""``podium demo`` end to end, as a process: build, train (two epochs), submit, score with a real
worker process, serve; a second run reuses everything and submits nothing twice."""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM
from leaderboard import create_app
from leaderboard.extensions import db
from leaderboard.models import ScoringJob, Submission, Team

pytestmark = pytest.mark.slow

FAST = ["--port", "0", "--epochs", "2", "--weak-epochs", "1"]


def demo_rows(root):
    app = create_app({
        "COMPETITION_DIR": str(root / "competitions" / "digits"),
        "INSTANCE_PATH": str(root / "instance"),
    })
    with app.app_context():
        rows = db.session.execute(
            sa.select(Team.name, Submission.kind, Submission.status, Submission.public_score, Submission.history_csv)
            .join(Team).order_by(Submission.id)
        ).all()
        jobs = db.session.execute(sa.select(ScoringJob.status, ScoringJob.attempts)).all()
        db.engine.dispose()
    return rows, jobs


def test_podium_demo_builds_trains_submits_scores_and_is_idempotent(tmp_path):
    root = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*PODIUM, "demo", "--root", str(root), "--no-serve", *FAST],
                           capture_output=True, text=True, timeout=480, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    secrets = json.loads((root / "demo.json").read_text())
    assert stat.S_IMODE((root / "demo.json").stat().st_mode) == 0o600
    assert re.search(r"podium demo board: http://127\.0\.0\.1:\d+/", first.stdout)
    assert secrets["admin_token"] in first.stdout
    assert all(token in first.stdout for token in secrets["teams"].values()) and len(secrets["teams"]) == 3

    rows, jobs = demo_rows(root)
    by = {(name, kind): (status, score, history) for name, kind, status, score, history in rows}
    assert len(rows) == 4 and all(status == "scored" for status, _, _ in by.values())
    csv_score = by[("Reference baseline", "csv")][1]
    assert by[("Reference baseline", "checkpoint")][1] == csv_score  # the worker ran the same model
    assert by[("Reference baseline", "csv")][2] and "val_loss" in by[("Reference baseline", "csv")][2]
    assert by[("Sample Submitters", "csv")][1] < csv_score
    assert jobs == [("done", 1)]

    second = subprocess.run([*PODIUM, "demo", "--root", str(root), "--no-serve", *FAST],
                            capture_output=True, text=True, timeout=240, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reusing" in second.stdout and "submitted" not in second.stdout and "training" not in second.stdout
    assert secrets["admin_token"] in second.stdout
    assert demo_rows(root)[0] == rows  # nothing submitted twice

    # Serving: the board answers on the printed address, and `kill` (or Ctrl-C) stops the demo and its worker.
    serving = subprocess.Popen([*PODIUM, "demo", "--root", str(root), *FAST],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        url = worker_pid = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = serving.stdout.readline()
            if not line:
                break
            found = re.search(r"podium demo board: (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
            pid = re.search(r"worker process \(pid (\d+)", line)
            worker_pid = int(pid.group(1)) if pid else worker_pid
        assert url and worker_pid, "the demo never printed its address and its worker"
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and "Reference baseline" in page.text and "Early Stoppers" in page.text
        assert os.path.exists(f"/proc/{worker_pid}")  # the worker keeps running beside the server
        serving.send_signal(signal.SIGTERM)  # `kill`, like Ctrl-C, stops the demo and its worker
        assert serving.wait(timeout=30) == 0
        assert not os.path.exists(f"/proc/{worker_pid}")
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
        serving.stdout.close()
