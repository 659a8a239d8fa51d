"""Helpers for tests that need the leaderboard app or a real server: one test config, one live server.

Imported by the test modules (``from tests.live import LiveServer, make_test_app``); not a test module itself.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from flask import Flask
from waitress import create_server

from leaderboard import create_app
from leaderboard.extensions import db
from tests.pg import database_config


def make_test_app(root: Path, competition_root: Path | str, **overrides) -> Flask:
    """``create_app`` with the tests' usual config: the instance folder and a SQLite file under ``root``.

    ``overrides`` add or replace keys (``WORKER_TOKEN=...``, ``NOW=clock``, ``JOB_LEASE_SECONDS=5``);
    a key given as ``None`` is left out, so ``create_app``'s own default applies (``SECRET_KEY=None``:
    a secret generated in the instance folder).
    """
    config = {
        "COMPETITION_DIR": str(competition_root),
        "INSTANCE_PATH": str(root / "instance"),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'podium.sqlite3'}",
        "SECRET_KEY": "test-secret",
        "WORKER_TOKEN": "worker-token",
        "ADMIN_TOKEN": "admin-token",
        **database_config(),  # the test's PostgreSQL database under the each_database fixture
    }
    config.update(overrides)
    return create_app({key: value for key, value in config.items() if value is not None})


class LiveServer:
    """waitress serving ``app`` on 127.0.0.1 (``port=0``: an ephemeral port), in a thread of this process.

    ``LiveServer(app).start()`` ... ``.stop()``, or ``with LiveServer(app) as server:``. The address
    is known (``url``) before ``start``. ``stop`` closes the server and the app's database connections.
    """

    def __init__(self, app, port: int = 0, threads: int = 6):
        self.app = app
        self.server = create_server(app, host="127.0.0.1", port=port, threads=threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):  # the loop's select() on the socket closed by stop()
            if not self.stopping.is_set():
                raise

    def start(self) -> "LiveServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(timeout=10)
        with self.app.app_context():
            db.engine.dispose()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until_serving(port: int, server, timeout: float = 90) -> None:
    """Until a real ``podium serve`` process (``server``, a Popen) answers GET / on 127.0.0.1:``port``;
    fails with its output when it exits first or does not answer within ``timeout`` seconds."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            return
        except requests.ConnectionError:
            if server.poll() is not None:
                output = server.communicate()[0] if server.stdout else ""
                raise AssertionError(f"podium serve exited ({server.returncode}): {output}")
            assert time.monotonic() < deadline, "podium serve did not start"
            time.sleep(0.3)
