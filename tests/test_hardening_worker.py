"""Issue 9, item 7: a scoring worker killed with SIGKILL takes its inference child with it, and the
next worker removes the temporary folders it left. Real ``podium worker`` processes, a real server,
a real SIGKILL; the child really hangs (the child's ``hang`` test fault) so it is running when its
parent dies."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PODIUM
from leaderboard.services import create_team
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.slow
WORKER_TOKEN = "worker-token-for-hardening"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == pid and b"harness.checkpoint.child" in cmdline:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return state not in ("Z", "X")  # a zombie no init has reaped yet is dead


def test_a_killed_worker_takes_its_inference_child_along_and_the_next_worker_removes_its_folders(
        tmp_path, digits_competition):
    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(torchvision.models.resnet18(weights=None, num_classes=10), tmp_path / "m.safetensors",
                                 library="torchvision", arch="resnet18", num_classes=10)
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition, WORKER_TOKEN=WORKER_TOKEN, JOB_LEASE_SECONDS=5)
    with app.app_context():
        _, token = create_team("Alpha")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PODIUM_CHECKPOINT_TEST_FAULT": "hang"}
    worker = child = None
    with LiveServer(app) as server:
        with open(checkpoint, "rb") as fh:
            r = requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                              files={"file": ("m.safetensors", fh)}, timeout=60)
        assert r.status_code == 202, r.text
        worker = subprocess.Popen([*PODIUM, "worker", "--server", server.url, "--token", WORKER_TOKEN, "--once",
                                   "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while not children_of(worker.pid):
                assert worker.poll() is None and time.monotonic() < deadline, "the worker started no inference child"
                time.sleep(0.2)
            child = children_of(worker.pid)[0]
            assert [p.name for p in scratch.iterdir() if p.name.startswith("podium-worker-")]
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            deadline = time.monotonic() + 5
            while running(child) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not running(child), "the inference child outlived its killed worker"
        finally:
            if worker.poll() is None:
                worker.kill()
            if child and running(child):
                os.kill(child, signal.SIGKILL)
        left = [p.name for p in scratch.iterdir()]
        assert any(name.startswith(f"podium-worker-{worker.pid}-") for name in left), left
        # the next worker (here one that is refused at once: a wrong token) removes what the killed one left
        again = subprocess.run([*PODIUM, "worker", "--server", server.url, "--token", "wrong", "--once"],
                               env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True, timeout=120)
        assert again.returncode == 2, again.stderr
    assert list(scratch.iterdir()) == [], [p.name for p in scratch.iterdir()]
