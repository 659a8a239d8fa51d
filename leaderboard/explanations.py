"""Grad-CAM for a team's own checkpoint submission, on VALIDATION images, off the request path.

The leaderboard does not import ``baseline`` (packages depend on ``harness`` only), and a model is
best not run inside the web server: a bounded background job runs ``podium explain`` — the CLI over
``baseline.explain.explain_checkpoint`` — in a child process on the server's competition folder:

- the validation split of ``public/train`` only (``explain_checkpoint`` never reads the test set or
  private/), through the safe checkpoint path (safetensors, registry architectures, no pickle);
- at most ``EXPLAIN_IMAGES`` images, ``EXPLAIN_TIMEOUT_S`` seconds (the child is killed after),
  one thread, and one job at a time per server process (another request is told to come back);
- the result (``gradcam_grid.png``, ``overlays/*.png``, ``explain.json``) is written beside and
  renamed into ``<storage>/.explanations/<submission id>-<sha256 prefix>/``: a cache, computed once
  per stored file; a failure is kept as ``<that>.failed`` with the reason.

Only the team and the organizer reach these files (the views check, as for the submission page).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from flask import current_app

from leaderboard.models import Submission
from leaderboard.protocol import SubmissionStatus
from leaderboard.state import current_competition, podium_state

log = logging.getLogger("podium.explanations")

EXPLAIN_IMAGES = 8
EXPLAIN_TIMEOUT_S = 300
FOLDER = ".explanations"
OVERLAY_NAMES = frozenset(f"overlays/{rank:03d}.png" for rank in range(1, EXPLAIN_IMAGES + 1))
FILES = frozenset({"gradcam_grid.png"}) | OVERLAY_NAMES
RUNNER_KEY = "podium.explanations"


@dataclass
class Runner:
    """The one background explanation a server process runs at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, threading.Thread] = field(default_factory=dict)


def _runner() -> Runner:
    return current_app.extensions.setdefault(RUNNER_KEY, Runner())


def explainable(sub: Submission) -> bool:
    return sub.kind == "checkpoint" and sub.status == SubmissionStatus.SCORED


def explanation_dir(sub: Submission) -> Path:
    return podium_state().storage_root / FOLDER / f"{sub.id}-{sub.sha256[:16]}"


class ExplanationStatus(StrEnum):
    """A submission's Grad-CAM: ``none`` -> ``running`` -> ``done`` | ``failed`` (-> ``running`` again on a
    retry); ``unavailable`` for a submission that has none (a CSV, or a checkpoint not scored)."""

    NONE = "none"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Explanation:
    status: ExplanationStatus
    summary: dict | None = None
    message: str | None = None


def explanation(sub: Submission) -> Explanation:
    """What the submission page shows of the Grad-CAM of ``sub``."""
    if not explainable(sub):
        return Explanation(ExplanationStatus.UNAVAILABLE)
    target = explanation_dir(sub)
    if (target / "explain.json").is_file():
        try:
            return Explanation(ExplanationStatus.DONE, json.loads((target / "explain.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return Explanation(ExplanationStatus.FAILED, message="The stored explanation is damaged.")
    runner = _runner()
    with runner.lock:
        thread = runner.running.get(target.name)
        if thread is not None and thread.is_alive():
            return Explanation(ExplanationStatus.RUNNING)
    failed = target.with_name(target.name + ".failed")
    if failed.is_file():
        return Explanation(ExplanationStatus.FAILED, message=failed.read_text(encoding="utf-8", errors="replace")[:2000])
    return Explanation(ExplanationStatus.NONE)


def _command(checkpoint: Path, competition_root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "podium_cli", "explain", str(checkpoint), "--competition", str(competition_root),
            "--out", str(out), "--images", str(EXPLAIN_IMAGES), "--threads", "1"]


def _run(checkpoint: Path, competition_root: Path, target: Path, timeout: float) -> None:
    """The background job: the child process, then the rename (or the .failed note)."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    failed = target.with_name(target.name + ".failed")
    try:
        run = subprocess.run(_command(checkpoint, competition_root, staging / "out"), capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=os.environ.copy())
        if run.returncode == 0 and (staging / "out" / "explain.json").is_file():
            os.replace(staging / "out", target)
            failed.unlink(missing_ok=True)
            return
        if run.returncode == 2:  # a user error (PodiumError): its message is about the checkpoint
            lines = [line for line in run.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else "podium explain refused the checkpoint."
        else:
            log.error("podium explain exited %s: %s", run.returncode, run.stderr[-3000:])
            reason = f"Grad-CAM failed on the server (exit status {run.returncode}); the organizer can see the log."
    except subprocess.TimeoutExpired:
        reason = f"Grad-CAM took longer than {timeout:g} seconds and was stopped."
    except Exception as exc:  # noqa: BLE001 - a background thread: record, never raise into nowhere
        log.exception("Grad-CAM job failed")
        reason = f"Grad-CAM failed on the server ({type(exc).__name__})."
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    failed.write_text(reason, encoding="utf-8")


def start_explanation(sub: Submission, timeout: float = EXPLAIN_TIMEOUT_S) -> str:
    """Start the Grad-CAM of ``sub`` in the background; returns what happened, as a sentence for the page."""
    if not explainable(sub):
        return "Grad-CAM is only for scored checkpoint submissions."
    target = explanation_dir(sub)
    if (target / "explain.json").is_file():
        return "The Grad-CAM of this checkpoint is ready."
    runner = _runner()
    with runner.lock:
        for name, thread in list(runner.running.items()):
            if not thread.is_alive():
                del runner.running[name]
        if target.name in runner.running:
            return "The Grad-CAM of this checkpoint is being computed; reload this page in a minute."
        if runner.running:
            return "The server is computing another Grad-CAM; try again in a minute."
        target.parent.mkdir(parents=True, exist_ok=True)
        target.with_name(target.name + ".failed").unlink(missing_ok=True)
        checkpoint = podium_state().storage_root / sub.stored_path
        thread = threading.Thread(target=_run, args=(checkpoint, current_competition().root, target, timeout),
                                  name=f"gradcam-{sub.id}", daemon=True)
        runner.running[target.name] = thread
        thread.start()
    return f"Computing the Grad-CAM of {EXPLAIN_IMAGES} validation images; reload this page in a minute."


def wait_for_explanations(timeout: float) -> None:
    """Join the running job (tests, and a server shutting down)."""
    runner = _runner()
    with runner.lock:
        threads = list(runner.running.values())
    for thread in threads:
        thread.join(timeout)


def explanation_file(sub: Submission, name: str) -> Path | None:
    """One of the result's image files, by its fixed name; None for any other name."""
    if name not in FILES:
        return None
    path = explanation_dir(sub) / name
    return path if path.is_file() and not path.is_symlink() else None
