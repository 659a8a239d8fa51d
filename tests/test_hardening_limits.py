"""Issue 9, item 1: bodies are refused from their headers, before they are read or spooled, on a real
waitress server (the one ``podium serve`` builds) with raw sockets that stream a large body."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from leaderboard.services import create_team
from leaderboard.limits import gate_waitress
from tests.live import LiveServer, make_test_app

GB = 1_000_000_000
MB = 1_000_000


@pytest.fixture
def served(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    servers = []

    def start(**overrides):
        app = make_test_app(tmp_path, competition, **overrides)
        server = LiveServer(app)
        gate_waitress(server.server, app)
        servers.append(server.start())
        return app, server

    yield start
    for server in servers:
        server.stop()


def temp_bytes_held() -> int:
    """Bytes in regular files this process (the server's) holds open in the temp folder, deleted or not:
    waitress spools a body to an unlinked temporary file. Callers compare it with a reading taken
    before the request (the test's own open files may live there too: a checkout under /tmp)."""
    total, tmp = 0, os.path.realpath(tempfile.gettempdir())
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(tmp + "/"):
                total += os.fstat(int(fd)).st_size
        except OSError:
            continue
    return total


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def stream_post(url: str, path: str, headers: dict, declared: int | None, send_bytes: int, chunked: bool = False,
                wait_s: float = 3.0):
    """POST with a body of ``send_bytes`` (declared as ``declared`` or chunked), streamed from another
    thread while this one waits for the answer. Returns (status, seconds to the answer, the most temp
    bytes held by the server while the body streamed, the raw answer)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=wait_s)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/octet-stream"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    started = time.monotonic()
    baseline = temp_bytes_held()  # what was open before the body: not the request's
    held = [0]
    stop = threading.Event()

    def send():
        block = b"x" * 65536
        sent = 0
        try:
            while sent < send_bytes and not stop.is_set():
                piece = block if not chunked else b"%x\r\n" % len(block) + block + b"\r\n"
                sock.sendall(piece)
                sent += len(block)
                held.append(temp_bytes_held() - baseline)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    elapsed = None
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep and elapsed is None:
                elapsed = time.monotonic() - started
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if sep and length and len(body) >= length[0]:
                break
    except (socket.timeout, ConnectionResetError):
        pass
    elapsed = elapsed if elapsed is not None else time.monotonic() - started
    stop.set()
    sender.join(timeout=10)
    held.append(temp_bytes_held() - baseline)
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, elapsed, max(held), answer


def test_a_1_gb_unauthenticated_upload_is_answered_at_once_with_nothing_written(served, tmp_path):
    app, server = served()
    storage = Path(app.config["STORAGE_ROOT"])
    before = folder_bytes(tmp_path)
    status, elapsed, held, answer = stream_post(server.url, "/api/submissions", {}, GB, 8 * MB)
    assert status in (401, 413), answer[:300]
    assert elapsed < 1.0, elapsed
    assert held < MB, held
    assert folder_bytes(tmp_path) - before < MB
    assert not storage.exists() or folder_bytes(storage) == 0


def test_an_unauthenticated_upload_under_the_size_limit_is_refused_before_its_body(served):
    app, server = served()
    limit = app.config["MAX_CONTENT_LENGTH"]
    for headers in ({}, {"Authorization": "Bearer 1.not-a-token"}):
        status, elapsed, held, answer = stream_post(server.url, "/api/submissions", headers, limit - 1, 8 * MB)
        assert status == 401, answer[:300]
        assert b'"errors"' in answer and b"team token" in answer
        assert elapsed < 1.0 and held < MB, (elapsed, held)
    # the upload page without a session: sent to the login page, body unread
    status, elapsed, held, answer = stream_post(server.url, "/upload", {}, limit - 1, 8 * MB)
    assert status == 302 and b"/login" in answer, answer[:300]
    assert elapsed < 1.0 and held < MB, (elapsed, held)


def test_other_paths_refuse_a_large_declared_body_with_413(served):
    app, server = served()
    for path in ("/login", "/admin/login", "/jobs/claim", "/"):
        status, elapsed, held, answer = stream_post(server.url, path, {}, 100 * MB, 8 * MB)
        assert status == 413, (path, answer[:300])
        assert elapsed < 1.0 and held < MB, (path, elapsed, held)
    # a team with a valid token still cannot declare more than the largest upload
    with app.app_context():
        _, token = create_team("Alpha")
    status, elapsed, held, _ = stream_post(server.url, "/api/submissions", {"Authorization": f"Bearer {token}"},
                                           app.config["MAX_CONTENT_LENGTH"] + 1, 8 * MB)
    assert status == 413 and elapsed < 1.0 and held < MB


def test_chunked_bodies_are_refused_unauthenticated_and_cut_off_at_the_limit(served, tmp_path):
    app, server = served(MAX_CONTENT_LENGTH=2 * 2**20)
    status, elapsed, held, answer = stream_post(server.url, "/api/submissions", {}, None, 8 * MB, chunked=True)
    assert status == 401 and elapsed < 1.0 and held < MB, (status, elapsed, held)
    with app.app_context():
        _, token = create_team("Alpha")
    status, elapsed, held, answer = stream_post(server.url, "/api/submissions", {"Authorization": f"Bearer {token}"},
                                                None, 20 * MB, chunked=True)
    assert status == 413, answer[:300]
    assert held < 3 * 2**20, held  # no more than the limit was taken in
    storage = Path(app.config["STORAGE_ROOT"])
    assert not storage.exists() or folder_bytes(storage) == 0


def test_a_team_upload_still_works_through_the_gate(served, digits_competition, digits_solution, tmp_path):
    from tests.conftest import noisy_predictions, write_submission

    app, server = served()
    with app.app_context():
        _, token = create_team("Alpha")
    csv = write_submission(tmp_path / "s.csv", digits_solution.ids,
                           [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.8, seed=1)])
    r = requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                      files={"file": ("s.csv", csv.read_bytes())}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["public_score"] > 0.5


def test_the_middleware_refuses_from_the_headers_on_a_server_that_reads_bodies_lazily(tmp_path, digits_competition):
    """gunicorn-style servers hand the body to the app unread; werkzeug's own server does the same."""
    from werkzeug.serving import make_server

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        for path, declared, expected in (("/api/submissions", GB, 413), ("/api/submissions", 100 * MB, 401),
                                         ("/login", 100 * MB, 413)):
            status, elapsed, held, answer = stream_post(url, path, {}, declared, 8 * MB)
            assert status == expected, (path, answer[:300])
            assert elapsed < 1.0 and held < MB, (path, elapsed, held)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            from leaderboard.extensions import db

            db.engine.dispose()
