"""One hook from ``create_app`` into the hardening modules (issue 9): security headers and rate
limits (``security``), revocable sessions (``sessions``), limits on request bodies (``limits``),
file modes (``filemodes``)."""
from __future__ import annotations

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


def startup_sweep(app: Flask, echo) -> None:
    """``podium serve``'s start: remove orphaned and refused files older than the grace period."""
    from leaderboard.gc import sweep_orphans

    with app.app_context():
        swept = sweep_orphans()
    if swept.removed:
        echo(f"storage: removed {len(swept.removed)} orphaned file(s), {swept.bytes / 2**20:.1f} MiB (podium gc)")
