"""The scoring-job queue and its HTTP protocol, on a real SQLite file through the real app.

Time is moved with the app's ``NOW`` clock, so lease expiry needs no sleeping. The worker process
itself is exercised in ``test_worker_process.py``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa
from safetensors.numpy import save as save_safetensors

from harness.scoring import score_predictions
from leaderboard import jobs
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept, used_today
from leaderboard.models import ScoringJob, Submission

from tests.conftest import noisy_predictions
from tests.live import make_test_app

WORKER_TOKEN = "worker-secret-token"
AUTH = {"Authorization": f"Bearer {WORKER_TOKEN}"}

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL


@dataclass
class Clock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc))


@pytest.fixture
def app(tmp_path, digits_competition, clock):
    app = make_test_app(tmp_path, digits_competition.root, WORKER_TOKEN=WORKER_TOKEN, NOW=clock,
                        JOB_LEASE_SECONDS=60, JOB_MAX_ATTEMPTS=2)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def checkpoint_bytes(seed: int) -> bytes:
    """A small safetensors file with a model card: the queue only moves bytes around."""
    weights = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return save_safetensors(
        {"fc.weight": weights}, metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"}
    )


def submit_checkpoints(app, count: int, team_name: str = "alpha") -> list[int]:
    with app.app_context():
        team, _ = create_team(team_name)
        return [accept(team, Upload(f"model{i}.safetensors", checkpoint_bytes(i))).id for i in range(count)]


def claim(client, worker: str = "w1"):
    return client.post("/api/jobs/claim", json={"worker": worker}, headers=AUTH)


def lease_headers(job: dict) -> dict:
    return {**AUTH, "X-Podium-Lease": job["lease"]}


def load(app, model, ident):
    with app.app_context():
        row = db.session.get(model, ident)
        db.session.expunge(row)
        return row


def job_of(app, submission_id: int) -> ScoringJob:
    with app.app_context():
        row = db.session.scalars(sa.select(ScoringJob).where(ScoringJob.submission_id == submission_id)).one()
        db.session.expunge(row)
        return row


def test_every_endpoint_refuses_a_wrong_worker_token(app, client):
    (sub_id,) = submit_checkpoints(app, 1)
    job = claim(client).get_json()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + WORKER_TOKEN + "x"}):
        assert client.post("/api/jobs/claim", json={}, headers=headers).status_code == 401
        assert client.get("/api/jobs/test-data", headers=headers).status_code == 401
        lease = {**headers, "X-Podium-Lease": job["lease"]}
        assert client.get(f"/api/jobs/{job['id']}/file", headers=lease).status_code == 401
        assert client.post(f"/api/jobs/{job['id']}/heartbeat", headers=lease).status_code == 401
        assert client.post(f"/api/jobs/{job['id']}/result", json={"predictions": []}, headers=lease).status_code == 401
    assert job_of(app, sub_id).status == "running"  # nothing the refused requests did changed it


def test_enqueue_is_idempotent_and_the_unique_key_holds(app):
    (sub_id,) = submit_checkpoints(app, 1)
    with app.app_context():
        submission = db.session.get(Submission, sub_id)
        first = jobs.enqueue(submission)
        again = jobs.enqueue(submission)
        assert first.id == again.id
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count(ScoringJob.id))) == 1
        db.session.add(ScoringJob(submission_id=sub_id, sha256=submission.sha256, scorer_version=jobs.SCORER_VERSION))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        other = jobs.enqueue(submission, scorer_version="rescore-2")  # a new scorer may score it again
        db.session.commit()
        assert other.id != first.id


def test_claims_hand_each_job_to_exactly_one_worker(app, client):
    submit_checkpoints(app, 3)
    won: list[int] = []
    empty: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        response = app.test_client().post("/api/jobs/claim", json={"worker": name}, headers=AUTH)
        with lock:
            (won.append(response.get_json()["id"]) if response.status_code == 200 else empty.append(response.status_code))

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(set(won)) and len(won) == 3
    assert empty == [204] * 5
    assert claim(client).status_code == 204


def test_test_data_carries_the_public_files_and_never_the_answers(client, digits_competition):
    with client.get("/api/jobs/test-data", headers=AUTH) as response:
        data = response.data
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == ["competition.toml", "public/test.npz"]
    assert archive.read("public/test.npz") == digits_competition.test_path.read_bytes()
    with np.load(io.BytesIO(archive.read("public/test.npz")), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["ids", "images"]
    solution_text = digits_competition.solution_path.read_bytes()
    assert solution_text[:200] not in data and b"Usage" not in data


def test_the_checkpoint_goes_only_to_the_lease_holder(app, client):
    submit_checkpoints(app, 1)
    job = claim(client).get_json()
    assert client.get(job["file_url"], headers=AUTH).status_code == 409
    assert client.get(job["file_url"], headers={**AUTH, "X-Podium-Lease": "0" * 64}).status_code == 409
    other = jobs_lease_for(app, job["id"], job["attempt"], "someone-else")
    assert client.get(job["file_url"], headers={**AUTH, "X-Podium-Lease": other}).status_code == 409
    with client.get(job["file_url"], headers=lease_headers(job)) as response:
        assert response.status_code == 200
        assert hashlib.sha256(response.data).hexdigest() == job["sha256"]
        assert response.data[8:9] == b"{"  # the safetensors file, as uploaded


def jobs_lease_for(app, job_id: int, attempt: int, worker: str) -> str:
    with app.app_context():
        return jobs.lease_key(job_id, attempt, worker, db.session.get(ScoringJob, job_id).created_at)


def test_a_result_is_accepted_once_and_scored_like_a_csv(app, client, digits_solution, digits_competition):
    (sub_id,) = submit_checkpoints(app, 1)
    job = claim(client).get_json()
    assert load(app, Submission, sub_id).status == "running"
    predictions = noisy_predictions(digits_solution, 0.8, seed=3)
    first = client.post(job["result_url"], json={"predictions": predictions.tolist()}, headers=lease_headers(job))
    assert first.status_code == 200 and first.get_json()["status"] == "done"
    expected = score_predictions(predictions, digits_solution, digits_competition)
    scored = load(app, Submission, sub_id)
    assert scored.status == "scored"
    assert scored.public_score == pytest.approx(expected.primary("public"))
    assert scored.result_json == expected.to_dict()
    other = noisy_predictions(digits_solution, 0.3, seed=4)
    again = client.post(job["result_url"], json={"predictions": other.tolist()}, headers=lease_headers(job))
    assert again.status_code == 409
    assert load(app, Submission, sub_id).public_score == pytest.approx(expected.primary("public"))
    assert job_of(app, sub_id).status == "done"
    assert client.post(job["heartbeat_url"], headers=lease_headers(job)).status_code == 409


def test_concurrent_duplicate_results_are_accepted_exactly_once(app, client, digits_solution):
    submit_checkpoints(app, 1)
    job = claim(client).get_json()
    body = {"predictions": noisy_predictions(digits_solution, 0.9, seed=5).tolist()}
    codes: list[int] = []

    def post() -> None:
        codes.append(app.test_client().post(job["result_url"], json=body, headers=lease_headers(job)).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 5


def test_an_expired_lease_is_requeued_and_the_old_holder_is_refused(app, client, clock, digits_solution):
    (sub_id,) = submit_checkpoints(app, 1)
    first = claim(client, "w1").get_json()
    clock.advance(30)
    assert client.post(first["heartbeat_url"], headers=lease_headers(first)).status_code == 200
    clock.advance(59)  # 89 s after the claim, 59 s after the heartbeat: still held
    assert claim(client, "w2").status_code == 204
    clock.advance(2)  # now past the extended lease
    assert client.post(first["heartbeat_url"], headers=lease_headers(first)).status_code == 409
    second = claim(client, "w2").get_json()
    assert second["id"] == first["id"] and second["attempt"] == 2 and second["lease"] != first["lease"]
    body = {"predictions": noisy_predictions(digits_solution, 0.7).tolist()}
    assert client.post(first["result_url"], json=body, headers=lease_headers(first)).status_code == 409
    assert client.get(first["file_url"], headers=lease_headers(first)).status_code == 409
    assert client.post(second["result_url"], json=body, headers=lease_headers(second)).status_code == 200
    job = job_of(app, sub_id)
    assert (job.status, job.attempts, job.worker_name) == ("done", 2, "w2")


def test_sweep_returns_orphans_to_the_queue(app, client, clock):
    (sub_id,) = submit_checkpoints(app, 1)
    claim(client)
    with app.app_context():
        assert jobs.sweep_expired() == 0
        clock.advance(61)
        assert jobs.sweep_expired() == 1
    job = job_of(app, sub_id)
    assert (job.status, job.worker_name, job.lease_expires_at) == ("queued", None, None)
    assert "lease expired" in job.last_error
    assert load(app, Submission, sub_id).status == "queued"


def test_our_failures_never_count_against_the_daily_limit(app, client, clock):
    (sub_id,) = submit_checkpoints(app, 1)
    with app.app_context():
        team_id = db.session.get(Submission, sub_id).team_id
        assert used_today(team_id, clock()) == 1
    job = claim(client).get_json()  # attempt 1: the worker reports its own crash
    reply = client.post(job["result_url"], json={"failure": "RuntimeError: CUDA out of memory"}, headers=lease_headers(job))
    assert reply.status_code == 200 and reply.get_json()["status"] == "queued"
    assert "CUDA out of memory" in job_of(app, sub_id).last_error
    claim(client)  # attempt 2 (the last, JOB_MAX_ATTEMPTS=2): the worker vanishes
    clock.advance(61)
    assert claim(client).status_code == 204  # the sweep fails the job instead of re-queueing it
    assert job_of(app, sub_id).status == "failed"
    submission = load(app, Submission, sub_id)
    assert submission.status == "failed" and submission.counts_toward_limit is False
    assert any("does not count against your daily limit" in m for m in submission.messages)
    with app.app_context():
        assert used_today(team_id, clock()) == 0


def test_a_refused_checkpoint_is_the_teams_and_keeps_its_messages(app, client):
    (sub_id,) = submit_checkpoints(app, 1)
    job = claim(client).get_json()
    messages = ["model card: arch 'resnet18' does not match the weights: fc.weight has shape [16]."]
    reply = client.post(job["result_url"], json={"errors": messages}, headers=lease_headers(job))
    assert reply.status_code == 200
    submission = load(app, Submission, sub_id)
    assert submission.status == "refused" and submission.messages == messages
    assert submission.counts_toward_limit is True and submission.public_score is None
    assert job_of(app, sub_id).status == "done"


def test_malformed_predictions_are_our_failure_and_requeue(app, client, digits_solution):
    (sub_id,) = submit_checkpoints(app, 1)
    job = claim(client).get_json()
    short = list(range(10))
    reply = client.post(job["result_url"], json={"predictions": short}, headers=lease_headers(job))
    assert reply.status_code == 422 and "expected" in reply.get_json()["errors"][0]
    assert job_of(app, sub_id).status == "queued"
    again = claim(client).get_json()
    assert again["attempt"] == 2
    out_of_range = [12] * len(digits_solution)  # a model with more outputs than classes: the team's
    reply = client.post(again["result_url"], json=out_of_range, headers=lease_headers(again))
    assert reply.status_code == 200
    submission = load(app, Submission, sub_id)
    assert submission.status == "refused" and "class index" in " ".join(submission.messages)


def test_a_non_ascii_lease_header_is_a_lost_lease_not_a_500(app, client):
    submit_checkpoints(app, 1)
    job = claim(client).get_json()
    wrong = {**AUTH, "X-Podium-Lease": "\u00e9" * 64}
    assert client.post(job["heartbeat_url"], headers=wrong).status_code == 409
    assert client.get(job["file_url"], headers=wrong).status_code == 409
    assert client.post(job["heartbeat_url"], headers=lease_headers(job)).status_code == 200


def test_a_prediction_beyond_int64_is_a_malformed_result_not_a_500(app, client, digits_solution):
    (sub_id,) = submit_checkpoints(app, 1)
    job = claim(client).get_json()
    reply = client.post(job["result_url"], json={"predictions": [2**70] * len(digits_solution)},
                        headers=lease_headers(job))
    assert reply.status_code == 422 and reply.get_json()["errors"] == ["every prediction must be an integer class index"]
    assert job_of(app, sub_id).status == "queued" and load(app, Submission, sub_id).status == "queued"


def test_an_organizer_rescore_requeues_a_finished_job_under_new_lease_keys(app, client, digits_solution):
    (sub_id,) = submit_checkpoints(app, 1)
    first = claim(client, "w1").get_json()
    body = {"predictions": noisy_predictions(digits_solution, 0.6, seed=1).tolist()}
    assert client.post(first["result_url"], json=body, headers=lease_headers(first)).status_code == 200
    with app.app_context():
        again = jobs.requeue(db.session.get(Submission, sub_id))
        db.session.commit()
        assert (again.id, again.status, again.attempts) == (first["id"], "queued", 0)
    assert load(app, Submission, sub_id).status == "queued"
    second = claim(client, "w1").get_json()  # same worker name, same attempt number as round one
    assert (second["id"], second["attempt"]) == (first["id"], 1)
    assert second["lease"] != first["lease"]
    better = {"predictions": noisy_predictions(digits_solution, 0.9, seed=2).tolist()}
    assert client.post(first["result_url"], json=better, headers=lease_headers(first)).status_code == 409
    assert client.post(second["result_url"], json=better, headers=lease_headers(second)).status_code == 200
    assert load(app, Submission, sub_id).public_score > 0.8


def test_the_worker_client_joins_urls_under_a_mount_prefix():
    from leaderboard.client.worker import JobClient

    client = JobClient("http://example.test/podium", "t")
    assert client.url("api/jobs/claim") == "http://example.test/podium/api/jobs/claim"
    assert client.url("/podium/api/jobs/3/file") == "http://example.test/podium/api/jobs/3/file"
    client.session.close()


def test_a_failed_download_leaves_no_open_file_or_partial_file(tmp_path):
    """The temporary file's descriptor was opened before the request and leaked when the request
    failed (a lost lease, an unreachable server): one descriptor per failed job in a long-lived worker."""
    import os
    import socket

    from leaderboard.client.worker import JobClient

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = JobClient(f"http://127.0.0.1:{port}", "t", timeout=2, retries=0)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(ConnectionError):
            client.download("api/jobs/1/file", tmp_path / "job.bin", lease="k")
    client.session.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert list(tmp_path.iterdir()) == []


def test_worker_backoff_doubles_up_to_its_cap():
    from leaderboard.client.worker import Backoff

    slept: list[float] = []
    backoff = Backoff(base=1.0, cap=8.0, sleep=slept.append)
    for _ in range(6):
        backoff.wait()
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= s <= c for s, c in zip(slept, ceilings)), slept
    backoff.reset()
    backoff.wait()
    assert slept[-1] <= 1.0


def test_team_and_organizer_tokens_are_not_worker_tokens(app, client):
    """Only the workers' token opens the job protocol: a team can never claim its own (or another
    team's) checkpoint job, download a checkpoint or post a score."""
    (sub_id,) = submit_checkpoints(app, 1)
    with app.app_context():
        _, team_token = create_team("beta")
    job = claim(client).get_json()
    for token in (team_token, "admin-token"):
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/api/jobs/claim", json={}, headers=headers).status_code == 401
        with client.get("/api/jobs/test-data", headers=headers) as response:
            assert response.status_code == 401
        leased = {**headers, "X-Podium-Lease": job["lease"]}
        with client.get(job["file_url"], headers=leased) as response:
            assert response.status_code == 401 and response.data[8:9] != b"{"
        assert client.post(job["result_url"], json={"errors": ["x"]}, headers=leased).status_code == 401
    assert load(app, Submission, sub_id).status == "running"
