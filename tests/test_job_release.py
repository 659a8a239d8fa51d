"""A stopping worker gives its job back: the release endpoint for the lease holder only, a worker
process stopped by SIGTERM or SIGINT releases at once, an idle one stops cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept
from leaderboard.models import ScoringJob, Submission, Team

from tests.site import WORKER, fake_checkpoint, make_app, served


# --- a stopping worker gives its job back ------------------------------------------------------

def queue_one_checkpoint(app, team_name: str, seed: int = 0) -> int:
    with app.app_context():
        team, _ = create_team(team_name)
        team = db.session.get(Team, team.id)
        return accept(team, Upload(f"m{seed}.safetensors", fake_checkpoint(seed))).id


def job_of(app, submission_id: int) -> ScoringJob:
    with app.app_context():
        job = db.session.scalars(sa.select(ScoringJob).where(ScoringJob.submission_id == submission_id)).one()
        db.session.expunge(job)
        return job


def submission_of(app, submission_id: int) -> Submission:
    with app.app_context():
        row = db.session.get(Submission, submission_id)
        db.session.expunge(row)
        return row


def test_release_endpoint_puts_the_job_back_for_its_lease_holder_only(tmp_path, digits_competition, digits_solution):
    app = make_app(tmp_path, digits_competition.root, JOB_LEASE_SECONDS=300, JOB_MAX_ATTEMPTS=3)
    sub_id = queue_one_checkpoint(app, "Givers")
    with app.app_context():
        _, team_token = create_team("Not A Worker")
    http = app.test_client()
    auth = {"Authorization": f"Bearer {WORKER}"}

    def claim(name="w1"):
        reply = http.post("/api/jobs/claim", json={"worker": name}, headers=auth)
        assert reply.status_code == 200
        return reply.get_json()

    job = claim()
    assert job["release_url"] == f"/api/jobs/{job['id']}/release" and job["attempt"] == 1
    lease = {**auth, "X-Podium-Lease": job["lease"]}
    # Only the lease holder, with the workers' token, may give it back.
    assert http.post(job["release_url"], headers={**auth, "X-Podium-Lease": "0" * 64}).status_code == 409
    assert http.post(job["release_url"], headers=auth).status_code == 409
    assert http.post(job["release_url"], headers={"Authorization": f"Bearer {team_token}",
                                                  "X-Podium-Lease": job["lease"]}).status_code == 401
    assert http.post(job["release_url"], headers={"X-Podium-Lease": job["lease"]}).status_code == 401
    assert job_of(app, sub_id).status == "running"

    reply = http.post(job["release_url"], headers=lease)
    assert reply.status_code == 200 and reply.get_json() == {"status": "queued"}
    row = job_of(app, sub_id)
    assert (row.status, row.attempts, row.worker_name, row.lease_expires_at) == ("queued", 0, None, None)
    assert "given back by worker w1" in row.last_error
    assert submission_of(app, sub_id).status == "queued"
    # The lease given back is dead: no second release, heartbeat, download or result under it.
    assert http.post(job["release_url"], headers=lease).status_code == 409
    assert http.post(job["heartbeat_url"], headers=lease).status_code == 409
    assert http.get(job["file_url"], headers=lease).status_code == 409
    predictions = [int(v) for v in np.where(digits_solution.labels < 0, 0, digits_solution.labels)]
    assert http.post(job["result_url"], json=predictions, headers=lease).status_code == 409

    # Given back more times than max_attempts: never failed, never counted against the team.
    for _ in range(5):
        again = claim("w1")  # the same worker name and attempt number as before ...
        assert again["attempt"] == 1 and again["lease"] != job["lease"]  # ... but a fresh key
        assert http.post(again["release_url"], headers={**auth, "X-Podium-Lease": again["lease"]}).status_code == 200
    row = job_of(app, sub_id)
    assert (row.status, row.attempts) == ("queued", 0)
    final = claim("finisher")
    done = http.post(final["result_url"], json=predictions, headers={**auth, "X-Podium-Lease": final["lease"]})
    assert done.status_code == 200 and done.get_json()["status"] == "done"
    scored = submission_of(app, sub_id)
    assert scored.status == "scored" and scored.public_score == 1.0 and scored.counts_toward_limit
    assert (job_of(app, sub_id).attempts, job_of(app, sub_id).status) == (1, "done")
    assert http.post(final["release_url"], headers={**auth, "X-Podium-Lease": final["lease"]}).status_code == 409


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_worker_process_gives_its_job_back_at_once(tmp_path, digits_competition, signum):
    # A 10-minute lease: if the job comes back, the worker gave it back; expiry cannot explain it.
    app = make_app(tmp_path, digits_competition.root, JOB_LEASE_SECONDS=600)
    sub_id = queue_one_checkpoint(app, "Stoppers")
    server = served(app)
    worker = subprocess.Popen(
        [*PODIUM, "worker", "--server", server.url, "--token", WORKER, "--poll", "0.2", "--name", "stopping"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PODIUM_WORKER_PAUSE_AFTER_CLAIM": "300"},  # holds the job, heartbeating
    )
    try:
        deadline = time.monotonic() + 60
        while job_of(app, sub_id).status != "running":
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.1)
        held = job_of(app, sub_id)
        assert (held.worker_name, held.attempts) == ("stopping", 1)
        stopped_at = time.monotonic()
        worker.send_signal(signum)
        code = worker.wait(timeout=30)
        took = time.monotonic() - stopped_at
        log = worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        worker.stderr.close()
    try:
        assert code == 128 + signum, log[-3000:]
        assert took < 15, f"the worker took {took:.1f}s to stop"
        assert "given back to the queue" in log and f"stopped by {signal.Signals(signum).name}" in log, log[-3000:]
        row = job_of(app, sub_id)
        assert (row.status, row.attempts, row.worker_name, row.lease_expires_at) == ("queued", 0, None, None)
        assert submission_of(app, sub_id).status == "queued"
        # The next worker gets it straight away, as its first attempt.
        reply = requests.post(f"{server.url}/api/jobs/claim", json={"worker": "next"}, timeout=30,
                              headers={"Authorization": f"Bearer {WORKER}", "Connection": "close"})
        assert reply.status_code == 200 and reply.json()["submission_id"] == sub_id and reply.json()["attempt"] == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_an_idle_worker_stops_cleanly_on_sigterm(tmp_path, digits_competition):
    app = make_app(tmp_path, digits_competition.root)
    server = served(app)
    worker = subprocess.Popen(
        [*PODIUM, "worker", "--server", server.url, "--token", WORKER, "--poll", "0.2", "--name", "idle"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = ""
        while "serving" not in seen:
            line = worker.stderr.readline()
            assert line, "the worker exited: " + seen
            seen += line
        time.sleep(0.5)  # polling an empty queue
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 128 + signal.SIGTERM
        assert "Traceback" not in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        worker.stderr.close()
        server.stop()
