"""Run the inference child and turn whatever happens to it into a result or a clear error.

The child is a fresh ``python -m harness.checkpoint.child`` in its own session (process group),
so a timeout kills it and anything it started. Its stderr is inherited (progress bars, and a
traceback if podium itself has a bug); its stdout is discarded so it cannot corrupt ``--json``.
The time limit counts from the process start, so it includes importing torch (a few seconds) and
building and loading the model. What the child can reach: it runs podium's own code only (the
weights are data, the architecture comes from our registries), in a temporary working folder
holding the test images; it is not a filesystem sandbox, which is why no pickle is ever loaded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import harness
from harness.checkpoint.lifeline import die_with_parent
from harness.errors import CheckpointError, PodiumError


class InferenceEnvironmentError(PodiumError):
    """Inference could not run for a reason that is the organizer's, not the team's (e.g. no GPU)."""


@dataclass(frozen=True)
class ChildResult:
    predictions: np.ndarray
    info: dict = field(default_factory=dict)


SIGNAL_MEANING = {
    signal.SIGKILL: "was killed (SIGKILL), most likely by the system for using too much memory",
    signal.SIGSEGV: "crashed (segmentation fault)",
    signal.SIGBUS: "crashed (bus error)",
    signal.SIGABRT: "aborted",
}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_child(job: dict, workdir: Path, timeout_s: float, num_images: int, num_classes: int) -> ChildResult:
    """Start the child on ``job`` (written to ``workdir``), wait at most ``timeout_s``, read its answer."""
    workdir = Path(workdir)
    job = {**job, "out_dir": str(workdir)}
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ)
    env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 128 MB of address space per arena otherwise
    # Idle OpenMP threads sleep instead of spinning: on a CPU shared with other work, spinning threads
    # made inference 3-8x slower on the 2-core development machine (benchmarks/checkpoint_speed.py).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    package_root = str(Path(harness.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.checkpoint.child", str(job_path)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # killed with its parent, even by SIGKILL (lifeline.py)
    )
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CheckpointError(
            f"running the model took longer than this competition's limit of {timeout_s:g} seconds and was "
            "stopped; submit a smaller or faster model."
        ) from None
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): never leave the child behind
            _kill_group(proc)
    return _read_answer(workdir, returncode, num_images, num_classes)


def _read_answer(workdir: Path, returncode: int, num_images: int, num_classes: int) -> ChildResult:
    error_path = workdir / "error.json"
    if returncode != 0 and error_path.is_file():
        error = json.loads(error_path.read_text(encoding="utf-8"))
        if error.get("out_of_memory"):
            raise CheckpointError(
                "running the model ran out of memory (over this competition's inference memory limit); "
                "submit a smaller model or a smaller input_size."
            )
        if "environment" in error:
            raise InferenceEnvironmentError(f"checkpoint scoring could not run: {error['environment']}")
        raise CheckpointError([str(m) for m in error.get("messages", ["the checkpoint was refused."])])
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
            meaning = SIGNAL_MEANING.get(sig, f"was stopped by signal {sig.name}")
        except ValueError:  # real-time signals between SIGRTMIN and SIGRTMAX have no name
            meaning = f"was stopped by signal {-returncode}"
        raise CheckpointError(f"the process running the model {meaning}; no predictions were produced.")
    predictions_path = workdir / "predictions.npy"
    if returncode != 0 or not predictions_path.is_file():
        raise CheckpointError(
            f"the process running the model exited with status {returncode} without producing predictions "
            "(the scoring machine's log has the details)."
        )
    predictions = np.load(predictions_path, allow_pickle=False)
    if predictions.dtype != np.int64 or predictions.shape != (num_images,):
        raise CheckpointError(f"the model produced {predictions.shape} predictions of {predictions.dtype}; expected {num_images}.")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise CheckpointError(f"the model predicted class indices outside 0..{num_classes - 1}.")
    info_path = workdir / "info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return ChildResult(predictions=predictions, info=info)
