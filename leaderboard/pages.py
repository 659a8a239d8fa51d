"""The competition's own pages, like Kaggle's tabs: Overview, Data, Evaluation, Rules (public).

- Overview: the organizer's ``description.md`` rendered by ``leaderboard.rendering`` (markdown-it-py,
  then nh3), cached per file (mtime, size) so a page view does not re-render it.
- Data: every file under ``public/`` with its size and SHA-256; beyond 500 files, the files
  directly in it and a row per folder in it (an image-folders competition's ``train/``, ``test/``:
  how many files, their size). From ``harness.pages.public_listing``: kept per process and read
  again only when a folder's or a top file's modification time changes (a stat per folder, not per
  image), its digests seeded from the listing ``podium init images`` wrote. Every file is in
  ``/data/SHA256SUMS`` and downloadable from ``/data/<path>``: streamed by ``send_file``
  (conditional: ETag, Last-Modified, Range), never read into memory; a path outside public/,
  through a symbolic link, hidden (a dot name) or not a regular file is a 404. On a hidden test
  set the test images are not in public/ at all, so no route here can serve them.
- Evaluation and Rules: ``harness.pages`` writes them from competition.toml.
"""
from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath

from flask import Blueprint, Response, abort, current_app, render_template, send_file, stream_with_context
from markupsafe import Markup

from harness.pages import PublicListing, evaluation_markdown, public_listing, rules_markdown
from leaderboard.rendering import render_markdown
from leaderboard.state import current_competition, podium_state

bp = Blueprint("pages", __name__)

MAX_LISTED = 500  # up to this many files, a row each; beyond, the top files and a row per folder
LISTING_KEY = "pages.listing"


def listing() -> PublicListing:
    """The competition's public files (``harness.pages.public_listing``), one computation at a time."""
    lock, state = current_app.extensions.setdefault(LISTING_KEY, (threading.Lock(), {}))
    with lock:  # a first view of a large competition reads it once, not once per concurrent request
        return public_listing(current_competition(), state)


def description_html() -> Markup | None:
    """The Overview's HTML, or None when the competition has no description.md."""
    path = current_competition().description_path
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cache = podium_state().board_cache
    hit = cache.get("pages.description")
    if hit is not None and hit[0] == key:
        return hit[1]
    text = path.read_text(encoding="utf-8", errors="replace")
    html = Markup(render_markdown(text))  # sanitised by nh3: safe to mark as such
    cache.put("pages.description", (key, html))
    return html


def _markdown_page(text: str) -> Markup:
    return Markup(render_markdown(text))


@bp.get("/overview")
def overview():
    return render_template("pages/overview.html", tab="overview", body=description_html())


@bp.get("/data")
def data():
    found = listing()
    if len(found.files) <= MAX_LISTED:  # a small competition: a row per file, wherever it is
        rows, folders = found.files, ()
    else:  # an image-folders one: its manifests, and a row per folder of images
        rows, folders = found.top[:MAX_LISTED], found.folders
    unlisted = len(found.files) - len(rows) - sum(d.files for d in folders)
    return render_template("pages/data.html", tab="data", files=rows, folders=folders, unlisted=unlisted,
                           total=len(found.files), total_bytes=found.size)


@bp.get("/data/SHA256SUMS")
def checksums():
    """Every public file's digest in ``sha256sum -c`` format."""
    lines = (f"{f.sha256}  {f.path}\n" for f in listing().files)
    return Response(stream_with_context(lines), mimetype="text/plain",
                    headers={"Content-Disposition": "attachment; filename=SHA256SUMS"})


def public_file_path(name: str) -> Path | None:
    """The file ``name`` (relative, forward slashes) under public/, or None when it may not be served."""
    public = current_competition().root / "public"
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in (".", "..") or part.startswith(".") for part in parts):
        return None
    path = public
    for part in parts:  # no link anywhere on the way: a link could point into private/
        path = path / part
        if path.is_symlink():
            return None
    try:
        if not path.is_file() or not path.resolve().is_relative_to(public.resolve()):
            return None
    except OSError:
        return None
    return path


@bp.get("/data/<path:name>")
def download(name: str):
    path = public_file_path(name)
    if path is None:
        abort(404)
    return send_file(path, as_attachment=True, download_name=path.name, mimetype="application/octet-stream",
                     conditional=True, etag=True, max_age=0)


@bp.get("/evaluation")
def evaluation():
    return render_template("pages/markdown.html", tab="evaluation", title="Evaluation",
                           body=_markdown_page(evaluation_markdown(current_competition())))


@bp.get("/rules")
def rules():
    return render_template("pages/markdown.html", tab="rules", title="Rules",
                           body=_markdown_page(rules_markdown(current_competition())))


@bp.app_template_global("fmt_bytes")
def fmt_bytes(num_bytes: int) -> str:
    """1,234 bytes / 12.3 KiB / 4.5 MiB / 1.2 GiB."""
    if num_bytes < 1024:
        return f"{num_bytes:,} bytes"
    for unit, power in (("KiB", 1), ("MiB", 2), ("GiB", 3), ("TiB", 4)):
        if num_bytes < 1024 ** (power + 1) or unit == "TiB":
            return f"{num_bytes / 1024 ** power:.1f} {unit}"
    raise AssertionError("unreachable")
