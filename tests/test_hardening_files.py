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
