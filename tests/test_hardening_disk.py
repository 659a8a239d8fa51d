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
from tests.live import wait_until_serving

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


def page_upload(url: str, name: str, token: str, body: bytes) -> requests.Response:
    """The browser's way: log in with the form, then POST the file to /upload."""
    import re

    browser = requests.Session()

    def csrf(path: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', browser.get(url + path, timeout=10).text).group(1)

    r = browser.post(f"{url}/login", data={"name": name, "token": token, "csrf_token": csrf("/login")},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text[:300]
    return browser.post(f"{url}/upload", data={"csrf_token": csrf("/upload")}, files={"file": ("s.csv", body)},
                        timeout=60)


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
        wait_until_serving(port, server)
        r = requests.post(f"http://127.0.0.1:{port}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("s.csv", csv.read_bytes())}, timeout=60)
        assert r.status_code == 507, r.text
        assert "out of storage space" in r.json()["errors"][0]
        page = page_upload(f"http://127.0.0.1:{port}", "Alpha", token, csv.read_bytes())
        assert page.status_code == 507 and "out of storage space" in page.text, page.text[:500]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "out of space or read-only on" in output and str(storage) in output  # the log says where
    with sqlite3.connect(instance / "podium.sqlite3") as conn:
        assert conn.execute("select count(*) from submission").fetchone()[0] == 0


def test_a_full_database_disk_is_a_507_through_the_api_and_the_upload_page(tmp_path, digits_competition,
                                                                          digits_solution):
    """The SQLite database on its own tmpfs, filled up while the server runs: the insert fails with
    "database or disk is full"; the answer is a 507, the stored file is removed, no row is written."""
    import shlex

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    instance, dbdir = tmp_path / "instance", tmp_path / "dbdisk"
    dbdir.mkdir()
    go, filled, team_file = tmp_path / "go", tmp_path / "filled", tmp_path / "team.txt"
    port = free_port()
    db = f"sqlite:///{dbdir / 'podium.sqlite3'}"
    common = ["--competition", str(competition), "--instance", str(instance), "--db", db]
    add = shlex.join([*PODIUM, "team", "add", "Alpha", *common])
    serve = shlex.join([*PODIUM, "serve", *common, "--port", str(port)])
    script = f"""set -e
mount -t tmpfs -o size=4m tmpfs {shlex.quote(str(dbdir))}
{add} > {shlex.quote(str(team_file))}
{serve} &
SERVER=$!
trap 'kill -TERM $SERVER; wait $SERVER; exit 0' TERM
while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.1; done
head -c 100000000 /dev/zero > {shlex.quote(str(dbdir / 'fill'))} 2>/dev/null || true
touch {shlex.quote(str(filled))}
wait $SERVER
"""
    unshare = [UNSHARE, "-m"] if os.geteuid() == 0 else [UNSHARE, "-rm"]
    server = subprocess.Popen([*unshare, "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    csv = write_submission(tmp_path / "s.csv", digits_solution.ids,
                           [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.7, seed=4)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(port, server)
        token = team_file.read_text().split("token: ")[1].split()[0]
        go.touch()
        deadline = time.monotonic() + 30
        while not filled.exists():
            assert time.monotonic() < deadline, "the database disk was not filled"
            time.sleep(0.1)
        r = requests.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("s.csv", csv.read_bytes())}, timeout=60)
        assert r.status_code == 507, r.text
        assert "out of storage space" in r.json()["errors"][0]
        page = page_upload(url, "Alpha", token, csv.read_bytes())
        assert page.status_code == 507 and "out of storage space" in page.text, page.text[:500]
        listed = requests.get(f"{url}/api/teams/alpha/submissions", headers={"Authorization": f"Bearer {token}"},
                              timeout=10)
        assert listed.status_code == 200 and listed.json()["submissions"] == []  # no row
        left = requests.get(f"{url}/upload", timeout=10)  # still serving pages
        assert left.status_code in (200, 302)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert "out of space or read-only on" in output and str(dbdir) in output, output[-3000:]
    stored = instance / "submissions" / "alpha"
    assert not stored.exists() or not [p for p in stored.iterdir() if p.is_file()]  # the file went too
