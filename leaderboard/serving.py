"""``podium serve --processes N``: the app under gunicorn with N worker processes (Linux/Unix).

One process (the default) stays on waitress (``leaderboard.cli``). With N > 1 the gunicorn master
forks N workers and each worker builds its own app with ``create_app`` after the fork
(``preload_app`` off), so no database connection, engine pool or lock crosses a fork. Before
forking, the master builds the app once and throws it away: that migrates a new database (or
refuses an out-of-date one) with the message a single process would give, and creates the instance
secrets (``secret_key``, tokens) so that every worker then reads the same ones from the instance
folder. What the processes share lives in the database: the board version and the reveal switch
(each process's board cache is keyed by the board version), the daily limit (a row lock on the team
on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite in WAL mode) and the job queue. The rate-limit
counters are per process unless ``RATELIMIT_STORAGE_URI`` names a shared store (``podium serve``
warns at start).

Connections: ``CONNECTION_LIMIT`` (``--connection-limit``) becomes gunicorn's
``worker_connections``, per worker process; ``CHANNEL_TIMEOUT`` is waitress's and has no gunicorn
counterpart (gunicorn's gthread worker drops an idle keep-alive connection after ``keepalive``,
2 s, and gives a thread back when a new connection sends nothing for 5 s). Request bodies pass
through ``limits.GateMiddleware`` before the app reads them.
"""
from __future__ import annotations

import os

from harness.errors import PodiumError

# gunicorn's default access log line plus the worker's pid (``<1234>``): which process answered.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(p)s %(M)sms'


def serve_processes(config: dict, host: str, port: int, processes: int, threads: int,
                    access_log: str | None = None, timeout: int = 120, on_master=None) -> None:
    """Run gunicorn (gthread workers: ``processes`` x ``threads``) until it is stopped (SIGTERM:
    graceful, SIGINT/SIGQUIT: at once). Blocks."""
    if os.name != "posix":
        raise PodiumError("podium serve --processes needs gunicorn, which runs on Linux and other Unix systems "
                          "only; leave --processes out to serve with waitress (one process).")
    from gunicorn.app.base import BaseApplication

    from leaderboard import create_app
    from leaderboard.extensions import db

    master_app = create_app(dict(config))  # migrate or refuse, create the secrets: before any fork
    if on_master is not None:
        on_master(master_app)  # podium serve: warnings about exposed files, the orphan sweep
    with master_app.app_context():
        db.engine.dispose()  # the master never serves: no connection of it survives into a worker

    options = {
        "bind": f"{host}:{port}",
        "workers": processes,
        "worker_connections": int(master_app.config["CONNECTION_LIMIT"]),
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 30,
        "preload_app": False,
        "proc_name": "podium",
        "accesslog": access_log,
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": "warning",
    }

    class PodiumApplication(BaseApplication):
        """gunicorn's custom-application API: options set in code, the app built in each worker."""

        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return create_app(dict(config))  # in the worker, after the fork: its own engine and pool

    PodiumApplication().run()
