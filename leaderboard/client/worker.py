"""``podium worker``: claim checkpoint jobs from a leaderboard server, run them, post predictions.

The loop: claim a job (a lease) -> fetch the public test data once (cached per version) -> fetch the
checkpoint -> run it with ``harness.checkpoint`` while a thread heartbeats the lease -> post the
predictions (class indices in test.npz order). The worker never receives labels: the server
scores what it sends. A checkpoint that ``harness.checkpoint`` refuses (``CheckpointError``, the
team's fault) is posted as ``{"errors": [...]}``; anything else that breaks is posted as
``{"failure": ...}`` (ours: the server re-queues the job or, after a few attempts, gives up
without costing the team). Network trouble and server errors are retried with capped exponential
backoff. One log line per job.

Stopped by SIGINT (Ctrl-C) or SIGTERM (``kill``), the worker gives the job it holds back to the
server (``POST /api/jobs/<id>/release``): the job is queued again at once instead of waiting for
its lease to run out, and the attempt is not counted. A signal that arrives while a claim is in
flight waits for its answer, so a job won at that moment goes back too. A second signal while it
does so stops it at once (the lease then runs out as after a crash).

``PODIUM_WORKER_PAUSE_AFTER_CLAIM`` (seconds) makes the worker wait, heartbeating, after each
claim: a real, slow job for tests and for rehearsing a worker crash.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin

import click
import requests

from harness.errors import CompetitionError, PodiumError, SubmissionError
from leaderboard.protocol import CLAIM_PATH, LEASE_HEADER, RELEASE_PATH, WORKER_NAME

log = logging.getLogger("podium.worker")

PAUSE_ENV = "PODIUM_WORKER_PAUSE_AFTER_CLAIM"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ServerRefused(Exception):
    """The server answered with a 4xx that retrying will not fix (e.g. 401 bad token)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


class WorkerUnusable(Exception):
    """This machine cannot run models as configured (e.g. ``--device cuda`` without a GPU)."""


class LeaseLost(Exception):
    """The server says this worker no longer holds the job (409)."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: stop, giving back the job in hand. A KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_held_signals: list[int] | None = None  # a list while a claim is in flight (see held_stop)


def _raise_stopped(signum: int, frame) -> None:
    if _held_signals is not None and not _held_signals:
        _held_signals.append(signum)  # the first signal waits for the claim's answer; a second one stops at once
        return
    raise Stopped(signum)


@contextlib.contextmanager
def held_stop():
    """Hold a stop signal while a claim is in flight: the server may have given this worker a job
    whose answer has not arrived yet, and stopping then would leave that job running until its
    lease expires. Yields a list that holds the signal, if one came; the caller gives back the job
    it got and then stops."""
    global _held_signals
    _held_signals = []
    try:
        yield _held_signals
    finally:
        _held_signals = None


RELEASE_TIMEOUT_S = 10.0


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 1, 2, 4, ... up to ``cap`` seconds."""

    base: float = 1.0
    cap: float = 60.0
    failures: int = 0
    sleep: Callable[[float], None] = time.sleep

    def wait(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures) * random.uniform(0.5, 1.0)
        self.failures += 1
        self.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass
class JobClient:
    """The HTTP side of the worker protocol (``leaderboard.jobs_api``)."""

    server: str
    token: str
    timeout: float = 60.0
    retries: int = 6
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.server = self.server.rstrip("/") + "/"
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.session.headers["User-Agent"] = "podium-worker"

    def url(self, path: str) -> str:
        """``api/...`` is relative to the server's address; ``/...`` (the server's own links,
        which already carry any mount prefix) is relative to its origin."""
        return urljoin(self.server, path)

    def request(self, method: str, path: str, lease: str | None = None, retries: int | None = None,
                timeout: float | None = None, **kw) -> requests.Response:
        """One request, retried with backoff on connection errors and 5xx/429; 409 -> LeaseLost;
        another 4xx -> ServerRefused."""
        headers = kw.pop("headers", {})
        timeout = self.timeout if timeout is None else timeout
        if lease:
            headers[LEASE_HEADER] = lease
        backoff = Backoff()
        attempts = self.retries if retries is None else retries
        for attempt in range(attempts + 1):
            try:
                response = self.session.request(method, self.url(path), headers=headers, timeout=timeout, **kw)
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 409:
                    raise LeaseLost(_errors(response))
                if response.status_code not in RETRY_STATUSES:
                    if 400 <= response.status_code < 500:
                        raise ServerRefused(response.status_code, _errors(response))
                    return response
                problem = f"HTTP {response.status_code}"
            if attempt == attempts:
                raise ConnectionError(f"{method} {path} failed {attempts + 1} times; last: {problem}")
            delay = backoff.wait()
            log.warning("%s %s: %s; retrying in %.1fs", method, path, problem, delay)
        raise AssertionError("unreachable")

    def claim(self, name: str) -> dict | None:
        response = self.request("POST", CLAIM_PATH, json={"worker": name})
        return None if response.status_code == 204 else response.json()

    def download(self, path: str, dest: Path, lease: str | None = None) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
        try:
            # The file object first: it closes the descriptor even when the request fails.
            with os.fdopen(fd, "wb") as fh, self.request("GET", path, lease=lease, stream=True) as response:
                for chunk in response.iter_content(1 << 20):
                    fh.write(chunk)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def heartbeat(self, job: dict) -> dict:
        return self.request("POST", job["heartbeat_url"], lease=job["lease"], retries=2).json()

    def post_result(self, job: dict, body: Any) -> dict:
        return self.request("POST", job["result_url"], lease=job["lease"], json=body).json()

    def release(self, job: dict, reason: str | None = None) -> dict:
        """Give the job back unfinished: one quick try and one retry, since the worker is stopping."""
        path = job.get("release_url") or RELEASE_PATH.format(job_id=job["id"])
        return self.request("POST", path, lease=job["lease"], retries=1, timeout=RELEASE_TIMEOUT_S / 2,
                            json={"reason": reason} if reason else None).json()


def _errors(response: requests.Response) -> str:
    try:
        return "; ".join(response.json().get("errors", [])) or response.reason
    except ValueError:
        return response.text[:200] or response.reason


class Heartbeat(threading.Thread):
    """Extends the job's lease every third of its length until stopped; notes a lost lease."""

    def __init__(self, client: JobClient, job: dict):
        super().__init__(name=f"heartbeat-{job['id']}", daemon=True)
        # Its own session: requests.Session is not meant to be shared between threads.
        self.client, self.job = JobClient(client.server, client.token, timeout=client.timeout), job
        self.interval = max(0.2, float(job["lease_seconds"]) / 3)
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.client.heartbeat(self.job)
            except LeaseLost:
                self.lost.set()
                log.warning("job %s: lease lost", self.job["id"])
                return
            except Exception as exc:  # keep trying: the lease may still be alive
                log.warning("job %s: heartbeat failed (%s)", self.job["id"], exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.client.session.close()


@dataclass
class Worker:
    client: JobClient
    name: str
    cache_dir: Path
    device: str | None = None
    poll: float = 2.0
    pause_after_claim: float = 0.0
    _test_images: tuple | None = field(default=None, repr=False)

    def test_data(self, job: dict) -> Path:
        """The competition directory for this job's version: the server's worker archive
        (``harness.workerdata``: competition.toml and the test images, npz or image folders),
        checked member by member and unpacked once into the cache."""
        from harness.workerdata import extract_worker_data

        directory = self.cache_dir / f"test-data-{job['test_data_version']}"
        if (directory / "competition.toml").is_file():
            return directory
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".download-"))
        try:
            archive = self.client.download(job["test_data_url"], staging / "test-data.zip")
            try:
                extract_worker_data(archive, directory)  # refuses any member outside the archive's layout
            except OSError:  # another worker sharing this cache got there first
                if not (directory / "competition.toml").is_file():
                    raise
            except CompetitionError as exc:
                raise RuntimeError(" ".join(exc.messages)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    def predict(self, checkpoint: Path, competition_dir: Path) -> list[int]:
        """Run the checkpoint on the cached test images (in ``harness.checkpoint``'s isolated child):
        test.npz kept in memory between jobs; image folders streamed a batch at a time."""
        from harness.checkpoint import predict_checkpoint, predict_images  # torch: imported only to run a job
        from harness.competition import load_competition, load_test

        if self._test_images is None or self._test_images[0] != competition_dir:
            competition = load_competition(competition_dir)
            images = None if competition.folders else load_test(competition)[0]
            self._test_images = (competition_dir, competition, images)
        _, competition, images = self._test_images
        if images is None:
            return [int(v) for v in predict_checkpoint(checkpoint, competition, device=self.device)]
        return [int(v) for v in predict_images(checkpoint, images, competition, device=self.device)]

    def run_job(self, job: dict) -> str:
        """Run one claimed job to its posted result; returns a word for the log line."""
        beat = Heartbeat(self.client, job)
        beat.start()
        checkpoint = self.cache_dir / f"job-{job['id']}-{job['attempt']}.bin"
        try:
            if self.pause_after_claim > 0:
                time.sleep(self.pause_after_claim)
            unusable: str | None = None
            try:
                competition_dir = self.test_data(job)
                self.client.download(job["file_url"], checkpoint, lease=job["lease"])
                body: Any = {"predictions": self.predict(checkpoint, competition_dir)}
                verdict = "predictions"
            except (LeaseLost, ConnectionError, requests.RequestException):
                raise  # nothing to post (or no way to post it): the lease will run out
            except ServerRefused as exc:
                if exc.status in (401, 403):
                    raise
                body, verdict = {"failure": f"download refused: {exc}"[:2000]}, "failure"
            except SubmissionError as exc:  # CheckpointError: the team's checkpoint was refused
                body, verdict = {"errors": exc.messages}, "refusal"
            except PodiumError as exc:  # InferenceEnvironmentError: this machine cannot run models
                unusable = " ".join(exc.messages)
                body, verdict = {"failure": f"worker {self.name}: {unusable}"[:2000]}, "failure"
            except Exception as exc:  # ours: the server decides whether to try again
                log.exception("job %s: inference failed", job["id"])
                body, verdict = {"failure": f"{type(exc).__name__}: {exc}"[:2000]}, "failure"
        finally:
            beat.stop()
            checkpoint.unlink(missing_ok=True)
        if beat.lost.is_set():
            return "lease lost, result dropped"
        if unusable is not None:  # give the job back (not counted) and stop, rather than fail every job
            self.client.release(job, reason=body["failure"])
            raise WorkerUnusable(unusable)
        reply = self.client.post_result(job, body)
        return f"{verdict} -> {reply.get('status', '?')}"

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue was empty."""
        with held_stop() as held:
            job = self.client.claim(self.name)
        if job is None:
            if held:
                raise Stopped(held[0])
            return False
        started = time.monotonic()
        verdict = "interrupted (the lease will expire and the job return to the queue)"
        try:
            if held:  # stopped while the claim was in flight: this job goes straight back
                raise Stopped(held[0])
            verdict = self.run_job(job)
        except LeaseLost:
            verdict = "lease lost, result refused by the server"
        except WorkerUnusable:
            verdict = "given back, attempt not counted (this worker cannot run models)"
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Stopped): hand the job back before going
            verdict = self.give_back(job)
            raise
        finally:
            log.info(
                "job %s submission %s attempt %s sha256 %s: %s in %.1fs",
                job["id"], job["submission_id"], job["attempt"], job["sha256"][:12], verdict,
                time.monotonic() - started,
            )
        return True

    def give_back(self, job: dict) -> str:
        """Release the job to the server's queue; a word on how that went, for the log line."""
        try:
            reply = self.client.release(job)
        except LeaseLost:
            return "stopped; the job was no longer ours (finished, expired or re-claimed)"
        except (ServerRefused, ConnectionError, requests.RequestException) as exc:
            return f"stopped; could not give the job back ({exc}): its lease will expire"
        return f"stopped -> given back to the queue ({reply.get('status', '?')}, attempt not counted)"

    def run_forever(self, once: bool = False, drain: bool = False, stop: threading.Event | None = None) -> int:
        """Claim and run jobs until stopped; ``once``: at most one job; ``drain``: until the queue is
        empty. Returns the exit code."""
        stop = stop or threading.Event()
        backoff = Backoff(cap=max(self.poll, 60.0))
        while not stop.is_set():
            try:
                worked = self.run_once()
                backoff.reset()
            except WorkerUnusable as exc:
                log.error("this worker cannot run models here, stopping: %s", exc)
                return 3
            except ServerRefused as exc:
                if exc.status in (401, 403):
                    log.error("the server refused this worker: %s", exc)
                    return 2
                log.warning("the server refused a request: %s", exc)
                if once or drain:
                    return 1
                stop.wait(self.poll)
                continue
            except (ConnectionError, requests.RequestException) as exc:
                log.warning("server unreachable (%s)", exc)
                if once or drain:
                    return 1
                backoff.wait()
                continue
            if once or (drain and not worked):
                return 0
            if not worked:
                stop.wait(self.poll)
        return 0


def default_name() -> str:
    host = re.sub(r"[^\w.-]", "-", socket.gethostname()) or "worker"
    return f"{host[:80]}-{os.getpid()}"


@click.command("worker")
@click.option("--server", required=True, help="The leaderboard's address, e.g. http://127.0.0.1:5000")
@click.option("--token", envvar="PODIUM_WORKER_TOKEN", required=True, help="The workers' token (or $PODIUM_WORKER_TOKEN).")
@click.option("--device", default=None, help="Where models run: cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--once", is_flag=True, help="Run at most one job, then exit (0 also when the queue was empty).")
@click.option("--drain", is_flag=True, help="Run jobs until the queue is empty, then exit.")
@click.option("--poll", default=2.0, show_default=True, type=float, help="Seconds between claims while the queue is empty.")
@click.option("--name", default=None, help="This worker's name in the admin page (default: host-pid).")
@click.option("--cache", "cache", default=None, type=click.Path(file_okay=False, path_type=Path), help="Where test data is cached (default: a temporary folder).")
def worker_command(server: str, token: str, device: str | None, once: bool, drain: bool, poll: float, name: str | None, cache: Path | None) -> int:
    """Claim checkpoint jobs from a leaderboard server, run them, and post the predictions.

    Exit codes: 0 done (--once, --drain); 1 the server stayed unreachable (--once, --drain); 2 the
    server refused the token; 3 this machine cannot run models as asked (e.g. --device cuda without
    a GPU: the job is given back first); 130 stopped by Ctrl-C (SIGINT), 143 by SIGTERM: a job in
    hand is given back to the queue first.
    """
    if name is not None and not WORKER_NAME.match(name):
        raise click.BadParameter("use 1-100 letters, digits or . _ @ : + -", param_hint="--name")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from harness.filemodes import use_private_umask

    use_private_umask()  # downloaded checkpoints and test data: owner only
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    from leaderboard.client.scratch import worker_scratch

    with worker_scratch() as tmp:  # removes the folders of workers that were killed (issue 9)
        cache_dir = cache or Path(tmp)
        cache_dir.mkdir(parents=True, exist_ok=True)
        worker = Worker(
            client=JobClient(server, token),
            name=name or default_name(),
            cache_dir=cache_dir,
            device=device,
            poll=poll,
            pause_after_claim=pause,
        )
        log.info("worker %s serving %s (device %s)", worker.name, server, device or "auto")
        previous = _install_stop_handlers()
        try:
            return worker.run_forever(once=once, drain=drain)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
            log.info("worker %s stopped by %s", worker.name, signal.Signals(signum).name)
            return 128 + signum
        finally:
            _restore_handlers(previous)


def _install_stop_handlers() -> dict:
    """SIGTERM and SIGINT raise ``Stopped`` in the main thread (where the job runs)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGTERM, signal.SIGINT)}


def _restore_handlers(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
