"""One hook from ``create_app`` into the hardening modules (issue 9): security headers and rate
limits (``security``), revocable sessions (``sessions``), limits on request bodies (``limits``),
file modes (``filemodes``)."""
from __future__ import annotations

import errno

from flask import Flask


def init_hardening(app: Flask) -> None:
    from leaderboard.security import init_security
    from leaderboard.sessions import configure_sessions

    from leaderboard.gc import install as install_gc
    from leaderboard.limits import init_limits

    configure_sessions(app)
    init_security(app)
    init_limits(app)
    install_gc(app)
    _out_of_space_is_507(app)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies > 0:  # the client's address and scheme from the proxy's headers (rate limits, Secure)
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0)


def private_paths(app: Flask) -> list:
    """What must not be readable by others: the answers, the instance folder, the database, storage."""
    from pathlib import Path

    state = app.extensions["podium"]
    instance = Path(app.instance_path)
    paths = [state.competition.root / "private", instance, state.storage_root]
    uri = str(app.config.get("SQLALCHEMY_DATABASE_URI", ""))
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        paths += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    return paths


def warn_exposed_files(app: Flask, echo) -> list:
    """Print a warning for each private file or folder that others can read; returns them."""
    from harness.filemodes import exposed

    found = exposed(private_paths(app))
    for path, mode in found:
        echo(f"warning: {path} is readable by other users (mode {mode}); chmod go-rwx it (see README, Security)",
             err=True)
    return found


def warn_shared_counts(app: Flask, echo) -> bool:
    """With several server processes, say so when each keeps its own rate-limit counts (``memory://``)."""
    if str(app.config.get("RATELIMIT_STORAGE_URI", "")).startswith("memory://"):
        echo("warning: the rate limits count in each process's memory (RATELIMIT_STORAGE_URI=memory://), so with "
             "--processes N a guesser gets N times the limits; set PODIUM_RATELIMIT_STORAGE_URI to a shared store, "
             "e.g. redis://localhost:6379 (pip install redis; README, Deployment)", err=True)
        return True
    return False


def startup_sweep(app: Flask, echo) -> None:
    """``podium serve``'s start: remove orphaned and refused files older than the grace period."""
    from leaderboard.gc import sweep_orphans

    with app.app_context():
        swept = sweep_orphans()
    for relative, size in swept.removed[:SWEEP_LINES]:
        echo(f"storage: removed {relative} ({size} bytes)")
    if len(swept.removed) > SWEEP_LINES:
        echo(f"storage: ... and {len(swept.removed) - SWEEP_LINES} more")
    if swept.removed:
        echo(f"storage: removed {len(swept.removed)} orphaned file(s), {swept.bytes / 2**20:.1f} MiB (podium gc)")


SWEEP_LINES = 50  # files named one by one at start; podium gc lists them all


OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
OUT_OF_SPACE_MESSAGE = ("The server is out of storage space and cannot take submissions right now; nothing was "
                        "recorded and nothing counted against your daily limit. Tell the organizer (the server's "
                        "log says which disk).")


def _out_of_space_is_507(app: Flask) -> None:
    """A full or read-only disk (storage or database) is a 507 with a message, not a 500; the
    organizer's log names the path. The upload's partial file is already gone (intake.store_file)
    and no row was written (the transaction rolled back)."""
    import sqlalchemy.exc
    from flask import request

    from leaderboard.errors import FRIENDLY, error_response
    from leaderboard.extensions import db

    def out_of_space(path, detail) -> object:
        db.session.rollback()
        app.logger.error("out of space or read-only on %s (request %s %s): %s", path, request.method,
                         request.path, detail)
        return error_response(507, [OUT_OF_SPACE_MESSAGE])

    @app.errorhandler(OSError)
    def _os_error(exc: OSError):
        if exc.errno in OUT_OF_SPACE:
            return out_of_space(exc.filename or app.config.get("STORAGE_ROOT"), exc.strerror)
        db.session.rollback()
        app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, [FRIENDLY[500]])

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    def _db_error(exc: sqlalchemy.exc.OperationalError):
        text = str(exc.orig).lower()
        if "disk is full" in text or "readonly database" in text or "read-only" in text:
            return out_of_space(app.config.get("SQLALCHEMY_DATABASE_URI"), str(exc.orig))
        db.session.rollback()
        app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, [FRIENDLY[500]])
