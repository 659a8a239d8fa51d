"""Storage that cannot grow without bound: refused files are deleted, orphans are swept, each team
has a quota.

- A submission that ends ``refused`` loses its stored file once the refusal is committed (its
  row keeps the sha256 and the messages), unless another submission that was not refused uses the
  same file (storage is content-addressed per team).
- Orphans: files under the storage root that no submission refers to (a request that lost the
  daily-limit race, a server killed mid-request) and leftovers in ``.incoming``. ``podium serve``
  sweeps them at start and ``podium gc`` on demand, both only for files older than a grace period
  (``ORPHAN_GRACE_SECONDS``, ``podium gc --min-age``; default one hour) so an upload in flight in
  another server process is spared.
- An upload whose row is never written (it lost the daily-limit race under the lock, or failed)
  has its file removed at once unless a submission refers to it. Known limit: the same team
  uploading the same bytes at the same moment, one of them failing, can lose the other's file
  before that one's row is written (its CSV is scored already; a checkpoint's job fails as ours).
- Quota: ``TEAM_STORAGE_QUOTA`` bytes per team (``podium serve --team-quota-mb``; the default is in
  ``leaderboard.config``);
  an upload that would take a team past it is refused with 413 and deleted.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy import event

from harness.errors import PodiumError
from leaderboard.extensions import db
from leaderboard.models import Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.recording import PREDICTIONS_SUFFIX

REFUSED = SubmissionStatus.REFUSED


class QuotaExceeded(PodiumError):
    """The team's stored submissions would take more than its storage quota (HTTP 413)."""


def _root() -> Path:
    return current_app.extensions["podium"].storage_root


# ---- refused files ------------------------------------------------------------------------------

def _note_refusals(session, _flush_context) -> None:
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Submission) and obj.status == REFUSED and obj.stored_path:
            session.info.setdefault("podium_refused_files", set()).add(obj.stored_path)


def _delete_refused_files(session) -> None:
    paths = session.info.pop("podium_refused_files", set())
    if not paths:
        return
    with db.engine.connect() as conn:  # the committed session runs no more SQL itself
        for relative in paths:
            still_used = conn.scalar(sa.select(sa.func.count(Submission.id)).where(
                Submission.stored_path == relative, Submission.status != REFUSED))
            if not still_used:
                _unlink(_root() / relative)


def _forget_refusals(session, *_args) -> None:
    session.info.pop("podium_refused_files", None)


def _unlink(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def install(app: Flask) -> None:
    """Delete refused files after their refusal commits (listeners on the session class, once)."""
    session_class = db.session.session_factory.class_
    if not event.contains(session_class, "after_flush", _note_refusals):
        event.listen(session_class, "after_flush", _note_refusals)
        event.listen(session_class, "after_commit", _delete_refused_files)
        event.listen(session_class, "after_soft_rollback", _forget_refusals)

    from leaderboard.errors import error_response

    @app.errorhandler(QuotaExceeded)
    def _quota(exc: QuotaExceeded):
        db.session.rollback()
        return error_response(413, exc.messages)


def discard_unreferenced(relative: str) -> None:
    """Delete a stored file no submission refers to (an upload whose row was never written)."""
    with db.engine.connect() as conn:
        used = conn.scalar(sa.select(sa.func.count(Submission.id)).where(Submission.stored_path == relative))
    if not used:
        _unlink(_root() / relative)


# ---- quota --------------------------------------------------------------------------------------

def team_usage(team: Team) -> int:
    folder = _root() / team.slug
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def check_quota(team: Team, stored=None) -> None:
    """Before an upload (``stored`` None): refuse when the team is already at its quota. After it is
    stored: refuse (and delete the new file) when it took the team past the quota."""
    quota = int(current_app.config.get("TEAM_STORAGE_QUOTA") or 0)
    if quota <= 0:
        return
    used = team_usage(team)
    if used > quota or (stored is None and used >= quota):
        if stored is not None:
            discard_unreferenced(stored.relative)
            used -= stored.size
        raise QuotaExceeded(
            f"Your team's stored submissions use {used / 2**20:.0f} MiB of its {quota / 2**20:.0f} MiB storage "
            "quota; this upload does not fit. Ask the organizer to raise the quota or remove old files.")


# ---- orphans ------------------------------------------------------------------------------------

@dataclass
class Sweep:
    removed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.removed)


# Folders of the storage root that belong to the server, not to a submission (explanations.FOLDER,
# kaggle_service's uploads and data zip; tests/test_hardening_storage.py checks the names).
SERVER_FOLDERS = frozenset({".explanations", ".kaggle-uploads", ".kaggle-data"})


def sweep_orphans(min_age_s: float | None = None, dry_run: bool = False) -> Sweep:
    """Remove files in the teams' folders of the storage root that no kept submission refers to
    (refused ones included), older than ``min_age_s`` (default ``ORPHAN_GRACE_SECONDS``), and what a
    request that died left in ``.incoming``. The server's own folders (``SERVER_FOLDERS``: Grad-CAM
    results, open Kaggle uploads, the Kaggle data zip) are caches and uploads in flight, never orphans;
    their owners clean them up."""
    if min_age_s is None:
        min_age_s = float(current_app.config["ORPHAN_GRACE_SECONDS"])
    root = _root()
    result = Sweep()
    if not root.is_dir():
        return result
    keep = set(db.session.scalars(sa.select(Submission.stored_path).where(Submission.status != REFUSED)))
    cutoff = time.time() - min_age_s
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in SERVER_FOLDERS]
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if relative in keep or (relative.endswith(PREDICTIONS_SUFFIX)
                                    and relative[: -len(PREDICTIONS_SUFFIX)] in keep):
                continue  # a kept submission's file, or a checkpoint's predictions beside it
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime > cutoff:
                    continue
                size = path.stat().st_size if dry_run else _unlink(path)
                result.removed.append((relative, size))
    return result
