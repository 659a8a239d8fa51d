"""A throwaway PostgreSQL cluster for the tests, and the fixture that runs a test on both databases.

The cluster is started once per test session (per xdist worker) from the Debian ``postgresql``
package's binaries (``/usr/lib/postgresql/*/bin``): ``initdb`` into a temporary folder and
``pg_ctl start`` on a free port of 127.0.0.1, as the unprivileged user ``nobody`` when the tests
run as root (``initdb`` refuses root), with fsync off (the data is thrown away). It is stopped at
the end through the postmaster's pid. Each test gets a database of its own.

Where the binaries are missing the PostgreSQL tests are skipped with a reason naming the package;
``.ci/run`` installs it and sets ``PODIUM_REQUIRE_POSTGRES=1``; that, or ``CI=true`` (set by CI services),
turns the skip into a failure, so CI cannot silently skip the PostgreSQL tests.

Imported by ``conftest.py`` (the fixtures) and by test modules (``pg.database_config()``).
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MISSING = ("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: "
           "install the Debian `postgresql` package (apt-get install postgresql)")

_active_url: str | None = None  # the database of the running test, when it runs on PostgreSQL


def database_config() -> dict:
    """Config keys that put an app on the current test's database: ``{}`` on SQLite (the app's
    default file in its instance folder), the test's PostgreSQL database otherwise."""
    return {"SQLALCHEMY_DATABASE_URI": _active_url} if _active_url else {}


def required() -> bool:
    """True in CI (``CI=true``, as GitHub Actions, GitLab and most CI services set it) and where
    ``PODIUM_REQUIRE_POSTGRES=1`` (``.ci/run``): missing binaries then fail the tests, not skip them."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in ("PODIUM_REQUIRE_POSTGRES", "CI"))


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    user: str | None  # run as this user (root cannot run initdb); None: as ourselves
    _names = itertools.count(1)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120, **kwargs)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"podium_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


def start_cluster() -> Cluster:
    bindir = postgres_bin()
    if bindir is None:
        if required():  # CI: these tests must run there, never be skipped silently
            pytest.fail(MISSING + " (required here: PODIUM_REQUIRE_POSTGRES or CI is set)", pytrace=False)
        pytest.skip(MISSING)
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="podium-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir=bindir, root=root, port=_free_port(), user=user)
    done = cluster.run(str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stdout}\n{done.stderr}")
    options = (f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    done = cluster.run(str(bindir / "pg_ctl"), "start", "-D", str(cluster.data), "-w", "-t", "60",
                       "-l", str(root / "server.log"), "-o", options)
    if done.returncode != 0:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
        stop_cluster(cluster)
        raise RuntimeError(f"pg_ctl start failed: {done.stdout}\n{done.stderr}\n{log[-3000:]}")
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    """Stop the postmaster by its pid (SIGINT: fast shutdown), wait for it, remove the folder."""
    pid = cluster.postmaster_pid()
    if pid is not None:
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pid = None
    deadline = time.monotonic() + 30
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL cluster (skipped, naming the package, where it is not installed)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, empty PostgreSQL database for this test: its ``postgresql+psycopg://`` URL.

    The test's apps live as long as the test: at its end every connection their pools opened is
    closed (psycopg warns about one garbage-collected while open, which filterwarnings=error turns
    into an error in whichever later test the collector happens to run)."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    opened: list = []

    def seen(dbapi_connection, _record) -> None:
        opened.append(dbapi_connection)

    event.listen(Pool, "connect", seen)
    try:
        yield pg_cluster.create_database()
    finally:
        event.remove(Pool, "connect", seen)
        for connection in opened:
            if hasattr(connection, "closed") and not connection.closed:
                connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def each_database(request):
    """Run the test once on SQLite and once on PostgreSQL: apps built with ``database_config()``
    (``make_test_app`` and the app tests' ``make_app`` do) use the test's database."""
    global _active_url
    if request.param == "sqlite":
        yield None
        return
    _active_url = request.getfixturevalue("pg_url")
    try:
        yield _active_url
    finally:
        _active_url = None
