"""Issue 9, items 6 and 9, and item 1 through the real command: ``podium init``, ``podium team add``
and ``podium serve`` as real processes (umask 022, as on a lab machine) keep private files private,
warn about exposed ones, answer a 1 GB unauthenticated upload at once, and keep serving the board
while 150 idle connections are open."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time

import requests

from tests.conftest import PODIUM


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: os.umask(0o022), **kw)


def test_podium_init_makes_private_0700_and_its_files_0600(tmp_path):
    done = run("init", "digits", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    private = tmp_path / "digits" / "private"
    assert mode(private) == 0o700
    assert [mode(p) for p in private.iterdir()] == [0o600]
    assert mode(tmp_path / "digits" / "public" / "test.npz") & 0o044  # public files stay readable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_team_add_and_serve_create_private_files_warn_about_exposed_ones_and_refuse_big_bodies(
        tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    (competition / "private").chmod(0o755)
    (competition / "private" / "solution.csv").chmod(0o644)  # as the first release left them
    instance = tmp_path / "instance"
    added = run("team", "add", "Alpha", "--competition", str(competition), "--instance", str(instance))
    assert added.returncode == 0, added.stderr
    assert mode(instance) == 0o700 and mode(instance / "podium.sqlite3") == 0o600
    assert mode(instance / "secret_key") == 0o600

    port = free_port()
    server = subprocess.Popen([*PODIUM, "serve", "--competition", str(competition), "--instance", str(instance),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: os.umask(0o022))
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "podium serve did not start"
                time.sleep(0.3)
        for name in ("admin_token", "worker_token", "podium.sqlite3", "podium.sqlite3-wal"):
            assert mode(instance / name) == 0o600, name

        # item 1 through the real command: a 1 GB POST without a token is answered at once
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /api/submissions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
            sock.sendall(b"x" * 65536)
            started = time.monotonic()
            answer = sock.recv(4096)
            assert answer.split(b" ")[1] in (b"401", b"413") and time.monotonic() - started < 1.0, answer[:200]

        # item 9: 150 idle connections (more than waitress's default limit of 100) do not stall the board
        for _ in range(150):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request that never ends
            idle.append(conn)
        time.sleep(0.5)
        started = time.monotonic()
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for conn in idle:
            conn.close()
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"warning: {competition.resolve() / 'private'} is readable by other users (mode 0755)" in output
    assert f"{competition.resolve() / 'private' / 'solution.csv'} is readable by other users (mode 0644)" in output
    assert "instance" not in "".join(line for line in output.splitlines() if line.startswith("warning"))


def start_serve(competition, instance, **popen) -> tuple[subprocess.Popen, int]:
    """A real ``podium serve`` (umask 022 around it, as on a lab machine) that answers GET /."""
    port = free_port()
    server = subprocess.Popen([*PODIUM, "serve", "--competition", str(competition), "--instance", str(instance),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: os.umask(0o022), **popen)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            return server, port
        except requests.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError("podium serve did not start: " + (server.communicate()[0] or "")[-2000:])
            time.sleep(0.3)


def stop_serve(server: subprocess.Popen) -> str:
    server.terminate()
    return server.communicate(timeout=30)[0]


def test_stored_uploads_are_private_and_serve_sweeps_orphans_at_start_naming_them(tmp_path, digits_competition,
                                                                                   digits_solution):
    from tests.conftest import noisy_predictions, write_submission

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    instance = tmp_path / "instance"
    added = run("team", "add", "Alpha", "--competition", str(competition), "--instance", str(instance))
    assert added.returncode == 0, added.stderr
    token = added.stdout.split("token: ")[1].split()[0]
    csv = write_submission(tmp_path / "s.csv", digits_solution.ids,
                           [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.7, seed=3)])
    server, port = start_serve(competition, instance)
    try:
        r = requests.post(f"http://127.0.0.1:{port}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("s.csv", csv.read_bytes())}, timeout=60)
        assert r.status_code == 201, r.text
    finally:
        stop_serve(server)
    storage = instance / "submissions"
    stored = [p for p in storage.rglob("*") if p.is_file()]
    assert [p.name for p in stored if p.suffix == ".csv"], stored
    assert mode(storage) == 0o700 and mode(storage / "alpha") == 0o700 and mode(storage / ".incoming") == 0o700
    for path in stored:
        assert mode(path) == 0o600, (path, oct(mode(path)))

    # files no submission refers to: an old one goes at the next start (and is named), a young one stays
    old, young = storage / "alpha" / ("e" * 64 + ".safetensors"), storage / "alpha" / ("f" * 64 + ".csv")
    old.write_bytes(b"x" * 1234)
    young.write_bytes(b"y" * 10)
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    server, port = start_serve(competition, instance)
    output = stop_serve(server)
    assert f"storage: removed alpha/{'e' * 64}.safetensors (1234 bytes)" in output, output
    assert "storage: removed 1 orphaned file(s)" in output, output
    assert not old.exists() and young.exists()
    assert [p for p in stored if not p.exists()] == []  # the kept submission's file stays


def test_a_worker_keeps_its_cache_private(tmp_path, digits_competition):
    """``podium worker`` runs under umask 077: the test data it downloads into ``--cache`` and the
    checkpoints it fetches are readable by their owner only (a worker under umask 022 here)."""
    from leaderboard.services import create_team
    from tests.live import LiveServer, make_test_app

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition, WORKER_TOKEN="worker-token-for-the-cache-test")
    with app.app_context():
        _, token = create_team("Alpha")
    cache = tmp_path / "cache"
    with LiveServer(app) as server:
        r = requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("m.safetensors", b"PK\x03\x04" + b"\x00" * 2000)}, timeout=60)
        assert r.status_code == 202, r.text  # a checkpoint (not a usable one) queued for a worker
        done = run("worker", "--server", server.url, "--token", "worker-token-for-the-cache-test", "--once",
                   "--device", "cpu", "--cache", str(cache))
        assert done.returncode == 0, done.stderr[-2000:]
        status = requests.get(f"{server.url}/api/submissions/{r.json()['id']}",
                              headers={"Authorization": f"Bearer {token}"}, timeout=10).json()["status"]
    assert status == "refused"  # the worker ran the job (and refused the file)
    entries = list(cache.rglob("*"))
    assert any(p.name == "competition.toml" for p in entries), entries  # the test data arrived
    assert mode(cache) == 0o700
    for path in entries:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode(path)))
