"""Real ``podium worker`` processes against a real server (waitress on 127.0.0.1, SQLite file).

The checkpoint is a real torchvision resnet18 at 32 px: random convolutional features with a
ridge-regression final layer fitted in closed form on the digits training set (about 98 %
accurate, no training loop), so its predictions are varied enough that any misalignment
between the worker's predictions and the solution rows would change the score.
"""
from __future__ import annotations

import os
import socket
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM
from harness.competition import load_test, load_train
from harness.submission import write_predictions_csv
from leaderboard import jobs
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import ScoringJob, Submission
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.slow

WORKER_TOKEN = "worker-token-for-tests"
WORKER_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def ridge_checkpoint(tmp_path_factory, digits_competition) -> Path:
    """resnet18 (torchvision, 10 classes): random features + a closed-form ridge classifier."""
    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    fc, model.fc = model.fc, torch.nn.Identity()
    images, labels = load_train(digits_competition)
    spec = digits_competition.eval_transform
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        features = model(x).double()
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], 1)
    targets = torch.nn.functional.one_hot(torch.from_numpy(labels), 10).double()
    ridge = 1e-3 * design.pow(2).mean() * len(design) * torch.eye(design.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(design.T @ design + ridge, design.T @ targets)
    fc.weight.data = weights[:-1].T.float().contiguous()
    fc.bias.data = weights[-1].float().contiguous()
    model.fc = fc
    path = tmp_path_factory.mktemp("checkpoints") / "ridge_resnet18.safetensors"
    return save_checkpoint(model, path, library="torchvision", arch="resnet18", num_classes=10)


@pytest.fixture(scope="module")
def ridge_csv(tmp_path_factory, ridge_checkpoint, digits_competition, digits_solution) -> Path:
    """The same model's predictions as a CSV, computed here by the harness (no server, no worker)."""
    from harness.checkpoint import predict_checkpoint

    predictions = predict_checkpoint(ridge_checkpoint, digits_competition)
    assert len(np.unique(predictions)) == 10  # varied: a misaligned row order would change the score
    path = tmp_path_factory.mktemp("csv") / "ridge_predictions.csv"
    write_predictions_csv(path, digits_solution.ids, predictions, digits_competition.classes)
    return path


def make_app(tmp_path, digits_competition):
    # JOB_LEASE_SECONDS 5: heartbeats every 5/3 s, slack for a loaded CI machine
    return make_test_app(tmp_path, digits_competition.root, WORKER_TOKEN=WORKER_TOKEN, JOB_LEASE_SECONDS=5)


@pytest.fixture
def live(tmp_path, digits_competition):
    server = LiveServer(make_app(tmp_path, digits_competition)).start()
    yield server
    server.stop()


def make_team(live: LiveServer, name: str) -> str:
    with live.app.app_context():
        return create_team(name)[1]


def upload(live: LiveServer, token: str, path: Path) -> dict:
    with open(path, "rb") as fh:
        response = requests.post(
            f"{live.url}/api/submissions",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": (path.name, fh)},
            timeout=60,
        )
    assert response.status_code in (201, 202), response.text
    return response.json()


def worker_argv(live: LiveServer, *extra: str, token: str = WORKER_TOKEN) -> list[str]:
    return [*PODIUM, "worker", "--server", live.url, "--token", token, "--poll", "0.2", *extra]


def worker_env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "2", **extra}


def job_row(live: LiveServer, submission_id: int) -> ScoringJob:
    with live.app.app_context():
        row = db.session.scalars(sa.select(ScoringJob).where(ScoringJob.submission_id == submission_id)).one()
        db.session.expunge(row)
        return row


def submission_row(live: LiveServer, submission_id: int) -> Submission:
    with live.app.app_context():
        row = db.session.get(Submission, submission_id)
        db.session.expunge(row)
        return row


def test_a_worker_process_scores_a_checkpoint_exactly_like_its_csv(live, ridge_checkpoint, ridge_csv, tmp_path):
    token = make_team(live, "Ridge Riders")
    csv_sub = upload(live, token, ridge_csv)
    ckpt_sub = upload(live, token, ridge_checkpoint)
    assert csv_sub["status"] == "scored" and ckpt_sub["status"] == "queued"
    broken = tmp_path / "broken.safetensors"  # a valid card whose weights do not fit resnet18
    from harness.checkpoint import save_checkpoint
    import torch

    save_checkpoint({"fc.weight": torch.zeros(10, 7)}, broken, library="torchvision", arch="resnet18", num_classes=10)
    broken_sub = upload(live, token, broken)

    run = subprocess.run(
        worker_argv(live, "--drain", "--name", "drainer"),
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=worker_env(),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    job_lines = [line for line in run.stderr.splitlines() if " job " in line and "submission" in line]
    assert len(job_lines) == 2, run.stderr[-3000:]  # one log line per job

    scored = submission_row(live, ckpt_sub["id"])
    reference = submission_row(live, csv_sub["id"])
    assert scored.status == "scored", scored.messages
    assert scored.public_score == reference.public_score > 0.9
    assert scored.private_score == reference.private_score
    assert scored.result_json == reference.result_json  # every metric, per class, confusion matrix
    job = job_row(live, ckpt_sub["id"])
    assert (job.status, job.attempts, job.worker_name) == ("done", 1, "drainer")

    refused = submission_row(live, broken_sub["id"])
    assert refused.status == "refused" and refused.counts_toward_limit is True
    assert refused.messages and all("Traceback" not in m for m in refused.messages)
    assert job_row(live, broken_sub["id"]).status == "done"

    # The team sees the checkpoint's score through the API, like any other submission.
    body = requests.get(f"{live.url}/api/submissions/{ckpt_sub['id']}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert body["status"] == "scored" and body["public_score"] == pytest.approx(reference.public_score, abs=1e-3)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.usefixtures("each_database")
def test_a_worker_killed_mid_job_leaves_the_job_requeued_and_scored_once(live, ridge_checkpoint, ridge_csv):
    token = make_team(live, "Crash Test")
    sub_id = upload(live, token, ridge_checkpoint)["id"]
    doomed = subprocess.Popen(
        worker_argv(live, "--name", "doomed"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=worker_env(PODIUM_WORKER_PAUSE_AFTER_CLAIM="120"),  # holds the job, heartbeating
    )
    try:
        claimed = wait_for(lambda: (j := job_row(live, sub_id)).status == "running" and j, 60, "the claim")
        assert claimed.worker_name == "doomed" and claimed.attempts == 1
        # Alive, it keeps its 5 s lease well past 5 s: its heartbeat thread extends it.
        time.sleep(6.5)
        held = job_row(live, sub_id)
        assert (held.status, held.worker_name) == ("running", "doomed")
        assert held.lease_expires_at > claimed.lease_expires_at
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)
        doomed.stderr.close()
    assert doomed.returncode == -signal.SIGKILL

    orphan = job_row(live, sub_id)
    assert orphan.status == "running"  # nobody told the server: only the lease can free it
    time.sleep(max(0.0, (orphan.lease_expires_at.timestamp() - time.time())) + 0.5)

    rescuer = subprocess.run(
        worker_argv(live, "--once", "--name", "rescuer"),
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=worker_env(),
    )
    assert rescuer.returncode == 0, rescuer.stderr[-3000:]
    job = job_row(live, sub_id)
    assert (job.status, job.attempts, job.worker_name) == ("done", 2, "rescuer")
    submission = submission_row(live, sub_id)
    assert submission.status == "scored" and submission.counts_toward_limit

    # Had the dead worker come back and posted, its old lease is refused: the score stands.
    with live.app.app_context():
        stale = jobs.lease_key(job.id, 1, "doomed", job.created_at)
        count = db.session.scalar(sa.select(sa.func.count(ScoringJob.id)).where(ScoringJob.submission_id == sub_id))
    assert count == 1
    late = requests.post(
        f"{live.url}/api/jobs/{job.id}/result",
        json={"predictions": [0] * len(load_test_ids(live))},
        headers={"Authorization": f"Bearer {WORKER_TOKEN}", "X-Podium-Lease": stale},
        timeout=30,
    )
    assert late.status_code == 409
    assert submission_row(live, sub_id).public_score == submission.public_score


def load_test_ids(live: LiveServer):
    with live.app.app_context():
        from leaderboard.state import current_competition

        return load_test(current_competition())[1]


def test_a_worker_with_a_wrong_token_is_refused_and_exits(live):
    run = subprocess.run(
        worker_argv(live, "--once", token="not-the-token"), capture_output=True, text=True, timeout=60, env=worker_env()
    )
    assert run.returncode == 2
    assert "401" in run.stderr and "worker token" in run.stderr


def test_a_worker_started_before_its_server_backs_off_and_connects(tmp_path, digits_competition):
    with socket.socket() as probe:  # a free port, nobody listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = subprocess.Popen(
        [*PODIUM, "worker", "--server", f"http://127.0.0.1:{port}", "--token", WORKER_TOKEN, "--drain"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=worker_env(),
    )
    server = None
    try:
        seen = []
        while not any("retrying in" in line for line in seen):
            line = worker.stderr.readline()
            assert line, "the worker exited instead of retrying: " + "".join(seen)
            seen.append(line)
        server = LiveServer(make_app(tmp_path, digits_competition), port=port).start()
        assert worker.wait(timeout=90) == 0  # it reached the server and found the queue empty
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stderr.close()
        if server is not None:
            server.stop()


def test_a_worker_that_cannot_run_models_gives_the_job_back_and_stops(live, ridge_checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda would work here")
    token = make_team(live, "No GPU Here")
    sub_id = upload(live, token, ridge_checkpoint)["id"]
    run = subprocess.run(
        worker_argv(live, "--drain", "--device", "cuda", "--name", "gpu-less"),
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=worker_env(),
    )
    assert run.returncode == 3, run.stderr[-3000:]
    assert "cannot run models" in run.stderr
    job = job_row(live, sub_id)
    assert (job.status, job.attempts, job.worker_name) == ("queued", 0, None)  # given back, attempt not counted
    assert "gpu-less" in job.last_error and "cuda" in job.last_error.lower()
    submission = submission_row(live, sub_id)
    assert submission.status == "queued" and submission.counts_toward_limit


@pytest.mark.usefixtures("each_database")  # PostgreSQL: the claim under real concurrency
def test_many_protocol_clients_on_one_queue_score_every_job_exactly_once(live, digits_solution):
    """Six threads speak the worker protocol over real HTTP at once: every job is claimed by one of
    them, every result accepted once, duplicates refused, and SQLite never reports a lock error."""
    from safetensors.numpy import save as save_safetensors

    from leaderboard.intake import Upload, accept
    from leaderboard.models import Team

    make_team(live, "Many Hands")
    with live.app.app_context():
        team = db.session.scalar(sa.select(Team).where(Team.name == "Many Hands"))
        submission_ids = []
        for i in range(live.app.extensions["podium"].competition.daily_limit):
            weights = np.random.default_rng(i).standard_normal(8).astype(np.float32)
            data = save_safetensors({"w": weights}, metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})
            submission_ids.append(accept(team, Upload(f"m{i}.safetensors", data)).id)
    headers = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    predictions = [int(v) for v in np.where(digits_solution.labels < 0, 0, digits_solution.labels)]
    accepted, refused_twice, statuses = [], [], []
    lock = threading.Lock()

    def work(name: str) -> None:
        with requests.Session() as http:
            while True:
                reply = http.post(f"{live.url}/api/jobs/claim", json={"worker": name}, headers=headers, timeout=60)
                with lock:
                    statuses.append(reply.status_code)
                if reply.status_code == 204:
                    return
                job = reply.json()
                lease = {**headers, "X-Podium-Lease": job["lease"]}
                assert http.post(live.url + job["heartbeat_url"], headers=lease, timeout=60).status_code == 200
                first = http.post(live.url + job["result_url"], json=predictions, headers=lease, timeout=60)
                second = http.post(live.url + job["result_url"], json=predictions, headers=lease, timeout=60)
                with lock:
                    statuses.extend([first.status_code, second.status_code])
                    if first.status_code == 200:
                        accepted.append(job["id"])
                    if second.status_code == 409:
                        refused_twice.append(job["id"])

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert all(code in (200, 204, 409) for code in statuses), sorted(set(statuses))
    assert sorted(accepted) == sorted(set(accepted)) and len(accepted) == len(submission_ids)
    assert sorted(refused_twice) == sorted(accepted)
    for sub_id in submission_ids:
        assert submission_row(live, sub_id).public_score == 1.0  # the true labels, scored once
        job = job_row(live, sub_id)
        assert (job.status, job.attempts) == ("done", 1)
