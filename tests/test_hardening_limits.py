"""Issue 9, item 1: bodies are refused from their headers, before they are read or spooled, on a real
waitress server (the one ``podium serve`` builds) with raw sockets that stream a large body."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

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


def temp_bytes_held(pids: Iterable[int] | None = None, folder: str | None = None) -> int:
    """Bytes in regular files these processes (default: this one, the server's) hold open in the temp
    folder, deleted or not: waitress spools a body to an unlinked temporary file, werkzeug a file part.
    Callers compare it with a reading taken before the request (the test's own open files may live
    there too: a checkout under /tmp)."""
    total, tmp = 0, os.path.realpath(folder or tempfile.gettempdir())
    for pid in pids or ["self"]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(tmp + "/"):
                    total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
            except OSError:
                continue
    return total


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


MULTIPART_START = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
                   b"Content-Type: text/csv\r\n\r\n")  # a file part that never ends: werkzeug would spool it


def stream_post(url: str, path: str, headers: dict, declared: int | None, send_bytes: int, chunked: bool = False,
                wait_s: float = 3.0, held_now: Callable[[], int] = temp_bytes_held, multipart: bool = False,
                method: str = "POST"):
    """POST with a body of ``send_bytes`` (declared as ``declared`` or chunked), streamed from another
    thread while this one waits for the answer. Returns (status, seconds to the answer, the most temp
    bytes held by the server while the body streamed, the raw answer). ``multipart``: the body is one
    file part of a form (``multipart/form-data``), as a browser would send it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=wait_s)
    kind = "multipart/form-data; boundary=xyz" if multipart else "application/octet-stream"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {kind}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    started = time.monotonic()
    baseline = held_now()  # what was open before the body: not the request's
    held = [0]
    stop = threading.Event()

    def send():
        block = b"x" * 65536
        sent = 0
        first = MULTIPART_START if multipart else b""
        try:
            while sent < send_bytes and not stop.is_set():
                data, first = first + block, b""
                piece = data if not chunked else b"%x\r\n" % len(data) + data + b"\r\n"
                sock.sendall(piece)
                sent += len(data)
                held.append(held_now() - baseline)
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
    held.append(held_now() - baseline)
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


# ---- paths that take no upload: a small limit, never spooled (waitress and gunicorn) -------------

@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "form"])
def test_a_1_gb_post_to_a_form_path_is_answered_at_once_and_nothing_is_spooled(served, tmp_path, chunked, multipart):
    app, server = served()
    before = folder_bytes(tmp_path)
    for path in ("/login", "/admin/login", "/"):
        status, elapsed, held, answer = stream_post(server.url, path, {}, None if chunked else GB, GB,
                                                    chunked=chunked, multipart=multipart)
        assert elapsed < 1.0 and held < MB, (path, elapsed, held)
        assert status == 413, (path, answer[:300])
        assert b"larger than this address accepts (256 KiB)" in answer, answer[:600]
    assert folder_bytes(tmp_path) - before < MB


@pytest.mark.parametrize("method,path", [("GET", "/upload"), ("PATCH", "/api/submissions"), ("DELETE", "/upload"),
                                         ("GET", "/api/submissions")])
def test_only_a_post_or_put_to_an_upload_path_may_send_an_upload(served, tmp_path, method, path):
    """Another method on an upload path takes no upload: it gets the small limit, answered at once."""
    app, server = served()
    before = folder_bytes(tmp_path)
    status, elapsed, held, answer = stream_post(server.url, path, {}, 200 * MB, 64 * MB, method=method)  # < the upload limit
    assert status == 413 and elapsed < 1.0 and held < MB, (status, elapsed, held, answer[:300])
    assert folder_bytes(tmp_path) - before < MB


def test_a_declared_15_mb_login_is_refused_before_its_body(served):
    app, server = served()
    status, elapsed, held, answer = stream_post(server.url, "/login", {}, 15 * MB, 15 * MB, multipart=True)
    assert status == 413 and elapsed < 1.0 and held < MB, (status, elapsed, held)


def test_every_body_refusal_is_the_apps_answer_json_under_api_with_the_security_headers(served):
    app, server = served()
    cases = [("/api/jobs/claim", None, True, "application/json"),  # chunked, cut off as it arrives
             ("/api/submissions", 10 * GB, False, "application/json"),  # over waitress's own limit too
             ("/api/leaderboard", 10 * MB, False, "application/json"),
             ("/login", None, True, "text/html")]
    for path, declared, chunked, kind in cases:
        status, _, _, answer = stream_post(server.url, path, {}, declared, 4 * MB, chunked=chunked)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert status == 413, (path, answer[:300])
        assert f"Content-Type: {kind}".encode() in head, (path, head)
        if kind == "application/json":
            assert json.loads(body)["errors"], body
        for header in (b"Content-Security-Policy: default-src 'none'", b"X-Content-Type-Options: nosniff",
                       b"X-Frame-Options: DENY", b"Connection: close"):
            assert header in head, (path, header, head)


def test_workers_and_the_organizer_may_send_more_than_a_form_and_only_with_their_token(served):
    admin, worker = "organizer-" + "a" * 40, "worker-" + "w" * 40
    app, server = served(ADMIN_TOKEN=admin, WORKER_TOKEN=worker)
    rows = [{"rank": i + 1, "team": f"a team with a long name number {i}", "score": "0.91234", "date": "2026-01-01"}
            for i in range(10000)]  # the most `podium kaggle board --into-server` sends: about 1 MB of JSON
    body = json.dumps({"slug": "some-competition", "rows": rows}).encode()
    assert len(body) > app.config["BODY_LIMIT_OTHER"]
    for token, expected in ((admin, 201), ("wrong", 413), (None, 413)):
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        r = requests.post(f"{server.url}/api/kaggle/board", data=body, headers=headers, timeout=60)
        assert r.status_code == expected, (token, r.text[:300])
    assert r.json()["errors"]  # the 413 is JSON
    result = json.dumps({"predictions": [3] * 400_000}).encode()  # a large test set's result: 1.2 MB
    for token, expected in ((worker, 409), ("wrong", 413)):
        r = requests.post(f"{server.url}/api/jobs/424242/result", data=result, timeout=60,
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                                   "X-Podium-Lease": "none"})
        assert r.status_code == expected, (token, r.text[:300])  # 409: read, and no such lease


def test_a_token_check_waiting_on_the_database_does_not_stall_other_connections(tmp_path, digits_competition, pg_url):
    """The gate's sender check (a token hash, a database read) runs in a worker thread, never in the
    I/O thread that reads every connection: here the team table is locked, so the check waits, and a
    static file is still served at once."""
    import psycopg

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition, SQLALCHEMY_DATABASE_URI=pg_url)
    server = LiveServer(app)
    gate_waitress(server.server, app)
    server.start()
    with app.app_context():
        team, _ = create_team("Alpha")
    locker = psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    outcome: dict = {}
    guess = threading.Thread(target=lambda: outcome.update(answer=stream_post(
        server.url, "/api/submissions", {"Authorization": f"Bearer {team.id}.guess"}, 10 * MB, MB, wait_s=60)))
    try:
        locker.execute("LOCK TABLE team IN ACCESS EXCLUSIVE MODE")
        guess.start()
        deadline = time.monotonic() + 30
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as watcher:
            while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                assert time.monotonic() < deadline, "the token check never waited on the locked table"
                time.sleep(0.05)  # until the check is really waiting for the lock
        assert "answer" not in outcome
        started = time.monotonic()
        r = requests.get(f"{server.url}/static/podium.css", timeout=10)
        assert r.status_code == 200 and time.monotonic() - started < 2.0, time.monotonic() - started
    finally:
        locker.rollback()
        locker.close()
        guess.join(timeout=60)
        server.stop()
    assert outcome["answer"][0] == 401, outcome["answer"][3][:300]


def _pids(master: int) -> list[int]:
    try:
        return [master, *(int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split())]
    except OSError:
        return [master]


@pytest.mark.slow
def test_under_gunicorn_a_1_gb_post_to_login_is_answered_at_once_and_nothing_is_spooled(tmp_path, digits_competition):
    from tests.conftest import PODIUM

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*PODIUM, "serve", "--competition", str(competition), "--instance",
                               str(tmp_path / "instance"), "--port", str(port), "--processes", "2", "--threads", "2",
                               "--channel-timeout", "30"],
                              env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                requests.get(url, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "podium serve did not start"
                time.sleep(0.3)
        before = folder_bytes(tmp_path)
        held_now = lambda: temp_bytes_held(_pids(server.pid), folder=str(scratch))  # noqa: E731
        for chunked in (False, True):
            for multipart in (False, True):
                status, elapsed, held, answer = stream_post(url, "/login", {}, None if chunked else GB, GB,
                                                            chunked=chunked, multipart=multipart, held_now=held_now)
                assert elapsed < 1.0 and held < MB, (chunked, multipart, elapsed, held)
                assert status == 413, (chunked, multipart, answer[:300])
            status, elapsed, held, answer = stream_post(url, "/api/submissions", {}, None if chunked else GB, GB,
                                                        chunked=chunked, multipart=True, held_now=held_now)
            assert elapsed < 1.0 and held < MB, ("upload", chunked, elapsed, held)
            assert status in (401, 413) and b'"errors"' in answer, answer[:300]
        status, _, _, answer = stream_post(url, "/api/jobs/claim", {}, None, 8 * MB, chunked=True, held_now=held_now)
        assert status == 413 and b'"errors"' in answer and b"Content-Security-Policy" in answer, answer[:500]
        assert folder_bytes(tmp_path) - before < MB
        assert requests.get(f"{url}/api/leaderboard", timeout=10).status_code == 200  # still serving
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert "Traceback" not in output, output[-3000:]
    assert "note: --channel-timeout is waitress's" in output  # said, not silently dropped
    assert "warning: the rate limits count in each process's memory" in output
