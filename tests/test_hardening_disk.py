"""Issue 9, item 8: a full or read-only storage disk is a 507 with a message, no row and nothing
counted; a real ``podium serve`` whose storage folder is a real tmpfs (mounted in a private mount
namespace with ``unshare``), filled up or mounted read-only."""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time

import pytest
import requests

from tests.conftest import PODIUM, noisy_predictions, write_submission

UNSHARE = shutil.which("unshare")


def _can_mount() -> bool:
    if not UNSHARE:
        return False
    args = [UNSHARE, "-m"] if os.geteuid() == 0 else [UNSHARE, "-rm"]
    probe = subprocess.run([*args, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="needs unshare and a mount namespace (tmpfs) to fill a disk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_an_upload_to_a_full_or_read_only_disk_is_a_507_and_counts_nothing(tmp_path, digits_competition,
                                                                         digits_solution, disk):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    instance = tmp_path / "instance"
    added = subprocess.run([*PODIUM, "team", "add", "Alpha", "--competition", str(competition), "--instance",
                            str(instance)], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    token = added.stdout.split("token: ")[1].split()[0]
    storage = instance / "submissions"
    storage.mkdir(exist_ok=True)
    mount = ("mount -t tmpfs -o size=64k tmpfs \"$0\" && (head -c 1000000 /dev/zero > \"$0/fill\" 2>/dev/null; true)"
             if disk == "full" else "mount -t tmpfs -o ro,size=64k tmpfs \"$0\"")
    port = free_port()
    unshare = [UNSHARE, "-m"] if os.geteuid() == 0 else [UNSHARE, "-rm"]
    server = subprocess.Popen([*unshare, "sh", "-c", mount + ' && shift && exec "$@"', str(storage), "x", *PODIUM,
                               "serve", "--competition", str(competition), "--instance", str(instance), "--port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    csv = write_submission(tmp_path / "s.csv", digits_solution.ids,
                           [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.7, seed=2)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "podium serve did not start"
                time.sleep(0.3)
        r = requests.post(f"http://127.0.0.1:{port}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("s.csv", csv.read_bytes())}, timeout=60)
        assert r.status_code == 507, r.text
        assert "out of storage space" in r.json()["errors"][0]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "out of space or read-only on" in output and str(storage) in output  # the log says where
    with sqlite3.connect(instance / "podium.sqlite3") as conn:
        assert conn.execute("select count(*) from submission").fetchone()[0] == 0
