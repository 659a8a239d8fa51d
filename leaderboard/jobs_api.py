"""The worker protocol: JSON over HTTP, authenticated by the workers' token (not by CSRF).

    POST /api/jobs/claim              {"worker": NAME} -> 200 a job with its lease, or 204
    GET  /api/jobs/test-data          the worker archive of harness/workerdata.py: competition.toml and the
                                      test images (public/test.npz, or public/test.csv + public/test/),
                                      hidden test sets included; never the answers
    GET  /api/jobs/<id>/file          the checkpoint, only to the lease holder (X-Podium-Lease)
    POST /api/jobs/<id>/heartbeat     extends the lease; 409 when it was lost
    POST /api/jobs/<id>/result        {"predictions": [...]} | {"errors": [...]} | {"failure": "..."}
                                      accepted once from the lease holder; 409 otherwise
    POST /api/jobs/<id>/release       the lease holder gives the job back unfinished (a worker that
                                      is stopping): queued again at once, the attempt not counted;
                                      409 when the lease is not held

Workers send predictions (class indices in test.npz row order); the server scores them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from harness.workerdata import write_worker_data_zip
from leaderboard import jobs
from leaderboard.auth import require_worker
from leaderboard.errors import json_errors
from leaderboard.extensions import csrf, db
from leaderboard.models import ScoringJob, Submission
from leaderboard.protocol import JOBS_PREFIX, LEASE_HEADER, TEST_DATA_VERSION_HEADER, WORKER_NAME, WORKER_NAME_RULE
from leaderboard.state import current_competition, current_solution, podium_state

MAX_MESSAGES = 50
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

jobs_api = Blueprint("jobs_api", __name__, url_prefix=JOBS_PREFIX)
csrf.exempt(jobs_api)


def _error(status: int, *messages: str) -> Response:
    return json_errors(status, messages)


@jobs_api.post("/claim")
@require_worker
def claim() -> Response:
    body = request.get_json(silent=True) or {}
    name = body.get("worker", "worker") if isinstance(body, dict) else "worker"
    if not isinstance(name, str) or not WORKER_NAME.match(name):
        return _error(400, WORKER_NAME_RULE)
    won = jobs.claim(name)
    if won is None:
        return Response(status=204)
    return jsonify(_claim_body(won))


def _claim_body(won: jobs.Claim) -> dict:
    """The claimed job as the worker reads it: its lease and where to fetch, beat, post and release."""
    urls = {f"{what}_url": url_for(f"jobs_api.{view}", job_id=won.job_id)
            for what, view in (("file", "job_file"), ("heartbeat", "heartbeat"), ("result", "result"),
                               ("release", "release"))}
    return {
        "id": won.job_id,
        "submission_id": won.submission_id,
        "sha256": won.sha256,
        "attempt": won.attempt,
        "lease": won.lease_key,
        "lease_seconds": won.lease_seconds,
        "lease_expires_at": won.lease_expires_at.isoformat(),
        **urls,
        "test_data_url": url_for("jobs_api.test_data"),
        "test_data_version": _test_data_version(),
    }


def _held_job(job_id: int) -> ScoringJob | None:
    job = db.session.get(ScoringJob, job_id)
    if job is None or not jobs.holds_lease(job, request.headers.get(LEASE_HEADER, "")):
        return None
    return job


@jobs_api.get("/<int:job_id>/file")
@require_worker
def job_file(job_id: int) -> Response:
    job = _held_job(job_id)
    if job is None:
        return _error(409, "This worker does not hold the lease on that job.")
    submission = db.session.get(Submission, job.submission_id)
    root = podium_state().storage_root.resolve()
    path = (root / submission.stored_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return _error(410, "The checkpoint file is missing from the storage.")
    return send_file(
        path,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"{job.sha256}.bin",
        conditional=False,
    )


def _test_data_version() -> str:
    """Changes whenever competition.toml or the test data changes (a cheap fingerprint: the test
    npz, or the image folders' test manifest, whose rows name every test image)."""
    comp = current_competition()
    toml = comp.root / "competition.toml"
    digest = hashlib.sha256()
    for path in (toml, comp.test_manifest_path if comp.folders else comp.test_path):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    digest.update(toml.read_bytes())
    return digest.hexdigest()[:20]


def _test_data_zip(version: str) -> Path:
    """The archive a worker needs for inference (``harness.workerdata``: the same for npz and image
    folders, hidden test sets included), built once per version into the instance folder."""
    comp = current_competition()
    cache = Path(current_app.instance_path) / "worker-data"
    target = cache / f"test-data-{version}.zip"
    if target.is_file():
        return target
    write_worker_data_zip(comp, target)  # competition.toml and the test images: never solution.csv
    for old in cache.glob("test-data-*.zip"):  # archives of an earlier competition.toml / test set
        if old != target:
            old.unlink(missing_ok=True)
    return target


@jobs_api.get("/test-data")
@require_worker
def test_data() -> Response:
    version = _test_data_version()
    response = send_file(
        _test_data_zip(version),
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"{current_competition().name}-test-data-{version}.zip",
        conditional=False,
    )
    response.headers[TEST_DATA_VERSION_HEADER] = version
    return response


@jobs_api.post("/<int:job_id>/heartbeat")
@require_worker
def heartbeat(job_id: int) -> Response:
    expires = jobs.heartbeat(job_id, request.headers.get(LEASE_HEADER, ""))
    if expires is None:
        return _error(409, "The lease on this job was lost (expired, or the job was finished or re-claimed).")
    return jsonify({"lease_expires_at": expires.isoformat(), "lease_seconds": jobs.lease_seconds()})


def _predictions(body) -> tuple[list[int] | None, str | None]:
    """The class indices of a result body, or why they are malformed (a worker bug: ours)."""
    values = body.get("predictions") if isinstance(body, dict) else body
    expected = len(current_solution())
    if not isinstance(values, list):
        return None, "predictions must be a JSON list of class indices"
    if len(values) != expected:
        return None, f"expected {expected} predictions (one per row of test.npz), got {len(values)}"
    if not all(type(v) is int and INT64_MIN <= v <= INT64_MAX for v in values):  # 2**70 overflowed int64: a 500
        return None, "every prediction must be an integer class index"
    return values, None


@jobs_api.post("/<int:job_id>/result")
@require_worker
def result(job_id: int) -> Response:
    key = request.headers.get(LEASE_HEADER, "")
    try:
        kind, value = _read_result(request.get_json(silent=True))
    except BadResult as exc:
        return _error(400, str(exc))
    if kind == "errors":
        outcome = jobs.refuse(job_id, key, value)
    elif kind == "failure":
        outcome = jobs.fail(job_id, key, value)
    elif kind == "malformed":  # a worker bug (ours): the job fails, not counted against the team
        outcome = jobs.fail(job_id, key, f"malformed result from the worker: {value}")
        if not outcome.accepted:
            return _error(409, "This worker does not hold the lease on that job.")
        return _error(422, value)
    else:
        outcome = jobs.complete(job_id, key, value)
    if not outcome.accepted:
        return _error(409, "The result was not accepted: " + outcome.status + ".")
    return jsonify({"status": outcome.status, "messages": list(outcome.messages)})


class BadResult(ValueError):
    """A result body that is not one of the protocol's three shapes (400, nothing recorded)."""


def _read_result(body) -> tuple[str, object]:
    """``("errors", [message, ...])`` (the checkpoint is refused: the team's problem), ``("failure",
    reason)`` (ours), ``("predictions", [index, ...])``, or ``("malformed", why)`` for predictions a
    worker got wrong. Raises ``BadResult`` for a body that is not JSON or has bad ``errors``."""
    if body is None:
        raise BadResult("The result must be JSON.")
    if isinstance(body, dict) and "errors" in body:
        messages = body["errors"]
        if not (isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)):
            raise BadResult("errors must be a non-empty list of strings")
        return "errors", [m[:1000] for m in messages[:MAX_MESSAGES]]
    if isinstance(body, dict) and "failure" in body:
        return "failure", str(body["failure"])
    values, problem = _predictions(body)
    return ("malformed", problem) if problem is not None else ("predictions", values)


@jobs_api.post("/<int:job_id>/release")
@require_worker
def release(job_id: int) -> Response:
    body = request.get_json(silent=True)
    reason = body.get("reason") if isinstance(body, dict) and isinstance(body.get("reason"), str) else None
    outcome = jobs.release(job_id, request.headers.get(LEASE_HEADER, ""), reason)
    if not outcome.accepted:
        return _error(409, "This worker does not hold the lease on that job (expired, finished or re-claimed).")
    return jsonify({"status": outcome.status})
