"""The operations behind Kaggle's API (``leaderboard/kaggle_api.py`` holds its views).

- Upload URLs (``kaggle competitions submit``): ``start_upload`` announces a file of a given size
  and returns a single-use token; ``receive_upload`` takes its bytes (never more than announced,
  never more than the competition's limits); ``submit_upload`` turns them into a submission through
  ``intake.submit``, the one outcome mapping the upload page and ``POST /api/submissions`` share.
  Records and bytes live in ``<storage>/.kaggle-uploads/`` (named by the token's SHA-256); an upload
  is bound to its team, expires after ``KAGGLE_UPLOAD_SECONDS``, at most ``KAGGLE_MAX_OPEN_UPLOADS``
  are open per team, and their announced sizes count toward the team's storage quota.
- The boards as Kaggle shows them (``kaggle_board``): the honest board of ``honest_board.py``, so
  probing protection (``public_board`` rounded or ladder) applies to every score and to the order,
  and medals appear on the private board after the reveal.
- The public data files, recursively (image folders included), and their zip.
- The stored Kaggle board (the "Kaggle" tab), written in one ``write_transaction``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import secrets
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from flask import current_app

from harness.errors import PodiumError
from harness.pages import scan_public
from harness.units import size_text
from leaderboard.extensions import db
from leaderboard.gc import team_usage
from leaderboard.honest_board import Protection, versioned_honest_board
from leaderboard.intake import UploadOutcome, daily_limit_left, submit, used_today
from leaderboard.models import Setting, Submission, Team
from leaderboard.ranking import bump_board_version
from leaderboard.state import current_competition, current_config, now, podium_state
from leaderboard.transactions import write_transaction

KAGGLE_BOARD_SETTING = "kaggle_board"
STORED_BOARD_ROWS = 10000
COPY_CHUNK = 1024 * 1024


class KaggleRefusal(PodiumError):
    """An operation refused, with the HTTP status of Kaggle's error shape ``{"code", "message"}``."""

    def __init__(self, status: int, messages: str | list[str], retry_after: int | None = None):
        super().__init__(messages)
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429's Retry-After


# --------------------------------------------------------------------------- upload URLs

def _upload_dir() -> Path:
    path = podium_state().storage_root / ".kaggle-uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _upload_paths(token: str) -> tuple[Path, Path]:
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    folder = _upload_dir()
    return folder / f"{key}.json", folder / f"{key}.bin"


def _read_record(meta: Path) -> dict | None:
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _expired(record: dict) -> bool:
    return now().timestamp() > float(record.get("expires_at", 0))


def max_upload_bytes() -> int:
    limits = current_competition().limits
    return max(limits.max_csv_bytes, limits.max_checkpoint_bytes)


def _too_large(limit: int) -> KaggleRefusal:
    return KaggleRefusal(413, f"The file is larger than {size_text(limit)}, the limit for a submission to this competition.")


def _sweep_open_uploads(team_id: int) -> tuple[int, int, float | None]:
    """Remove expired uploads (and leftovers of interrupted ones); (the team's open uploads, the
    bytes they announced, when the first of them expires)."""
    folder = _upload_dir()
    when = now().timestamp()
    grace = current_config().kaggle_upload_seconds + 3600
    count = reserved = 0
    first_expiry = None
    for path in folder.iterdir():
        if path.suffix == ".json":
            record = _read_record(path)
            if record is None:
                continue
            if when > float(record.get("expires_at", 0)):
                path.unlink(missing_ok=True)
                path.with_suffix(".bin").unlink(missing_ok=True)
            elif record.get("team_id") == team_id:
                count += 1
                reserved += int(record.get("length") or 0)
                expires = float(record.get("expires_at", 0))
                first_expiry = expires if first_expiry is None else min(first_expiry, expires)
        elif path.suffix != ".bin":  # .part-/.claim-/.taken- files of a request that died
            try:
                if when - path.stat().st_mtime > grace:
                    path.unlink()
            except FileNotFoundError:
                pass
    return count, reserved, first_expiry


def _check_quota(team: Team, reserved: int, length: int) -> None:
    """The team's stored files plus its open uploads plus this one must fit its storage quota."""
    quota = int(current_app.config.get("TEAM_STORAGE_QUOTA") or 0)
    if quota <= 0:
        return
    used = team_usage(team)
    if used + reserved + length > quota:
        raise KaggleRefusal(413, (
            f"Your team's stored submissions ({used / 2**20:.0f} MiB) and open uploads ({reserved / 2**20:.0f} MiB) "
            f"leave no room for {size_text(length)} in its {quota / 2**20:.0f} MiB storage quota. Ask the organizer "
            "to raise the quota or remove old files."))


def start_upload(team: Team, file_name: str, length: int) -> str:
    """Announce an upload of ``length`` bytes for ``team``; returns its single-use token."""
    limit = max_upload_bytes()
    if length > limit:
        raise _too_large(limit)
    if length <= 0:
        raise KaggleRefusal(400, "The file is empty; choose your predictions CSV or model checkpoint.")
    config = current_config()
    count, reserved, first_expiry = _sweep_open_uploads(team.id)
    if count >= config.kaggle_max_open_uploads:
        raise KaggleRefusal(429, (
            f"Your team has {config.kaggle_max_open_uploads} uploads started and not submitted; submit them or "
            f"wait until they expire ({config.kaggle_upload_seconds // 60} minutes after they were started)."),
            retry_after=max(1, math.ceil((first_expiry or now().timestamp()) - now().timestamp())))
    _check_quota(team, reserved, length)
    token = secrets.token_urlsafe(32)
    meta, _ = _upload_paths(token)
    record = {
        "team_id": team.id,
        "file_name": os.path.basename(file_name)[:255],
        "length": length,
        "expires_at": (now() + dt.timedelta(seconds=config.kaggle_upload_seconds)).timestamp(),
        "uploaded": False,
    }
    meta.write_text(json.dumps(record), encoding="utf-8")
    return token


def upload_url_open(token: str, declared: int | None = None) -> bool:
    """Whether ``token`` names an upload URL that may still receive its file, ``declared`` bytes of
    it (no more than announced); the body gate of ``leaderboard/limits.py`` asks, from the
    request's headers, before a byte of the body is read. A refused body is answered by
    ``receive_upload`` from the same headers."""
    meta, _ = _upload_paths(token)
    record = _read_record(meta)
    if record is None or record.get("uploaded") or _expired(record):
        return False
    return declared is None or declared <= int(record.get("length") or max_upload_bytes())


def receive_upload(token: str, stream: BinaryIO, declared: int | None) -> int:
    """Store the bytes of an announced upload, once, before it expires; returns their size.

    A body larger than announced (or than the competition's limit) is refused from its declared
    length before it is read, and a body without one is read no further than the announced size.
    """
    meta, data = _upload_paths(token)
    record = _read_record(meta)
    if record is None or record.get("uploaded"):
        raise KaggleRefusal(404, "This upload URL is unknown or was already used; start the submission again.")
    if _expired(record):
        raise KaggleRefusal(404, "This upload URL has expired; start the submission again.")
    limit = max_upload_bytes()
    announced = int(record.get("length") or limit)
    if (declared or 0) > limit:
        raise _too_large(limit)
    larger = KaggleRefusal(413, f"The body is larger than the {announced} bytes announced for this upload; "
                                "start the submission again.")
    if (declared or 0) > announced:
        raise larger
    tmp = data.with_suffix(f".part-{secrets.token_hex(4)}")
    size = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                chunk = stream.read(min(COPY_CHUNK, announced + 1 - size))
                if not chunk:
                    break
                size += len(chunk)
                if size > announced:
                    raise larger
                out.write(chunk)
        if size != announced:
            raise KaggleRefusal(400, f"The upload ended after {size} of the {announced} bytes announced; "
                                     "start the submission again.")
        # Claim the token: only one PUT wins. The record moves aside atomically (a PUT that finds it
        # gone lost); the one that moved it reads it again (a PUT that finished meanwhile marked it
        # uploaded: this one lost too, and puts it back), then keeps its bytes once.
        claimed = meta.with_suffix(f".claim-{secrets.token_hex(4)}")
        try:
            os.rename(meta, claimed)
        except FileNotFoundError:
            raise KaggleRefusal(404, "This upload URL was already used; start the submission again.") from None
        current = _read_record(claimed)
        if current is None or current.get("uploaded"):
            os.replace(claimed, meta)
            raise KaggleRefusal(404, "This upload URL was already used; start the submission again.")
        os.replace(tmp, data)
        record["uploaded"] = True
        claimed.write_text(json.dumps(record), encoding="utf-8")
        os.replace(claimed, meta)
    finally:
        if tmp.exists():
            tmp.unlink()
    return size


def _claim_upload(token: str, team: Team) -> tuple[dict, Path]:
    """The uploaded file of ``token``, taken for good (a second CreateSubmission finds nothing)."""
    if not token:
        raise KaggleRefusal(400, "blobFileTokens is missing; upload the file with StartSubmissionUpload first.")
    meta, data = _upload_paths(token)
    record = _read_record(meta)
    if record is None or record.get("team_id") != team.id:
        raise KaggleRefusal(404, "Unknown upload token; upload the file again.")
    if _expired(record):
        raise KaggleRefusal(400, "The upload expired before the submission was made; submit again.")
    if not record.get("uploaded") or not data.is_file():
        raise KaggleRefusal(400, "The file was not uploaded to the createUrl; submit again.")
    claimed = data.with_suffix(f".taken-{secrets.token_hex(4)}")
    try:
        os.rename(data, claimed)
    except FileNotFoundError:
        raise KaggleRefusal(404, "This upload was already submitted.") from None
    meta.unlink(missing_ok=True)
    return record, claimed


def submit_upload(team: Team, token: str, note: str) -> UploadOutcome:
    """The uploaded file of ``token`` submitted like any upload (``intake.submit``: its checks, its
    daily limit, its outcome statuses); the upload's bytes are removed whatever the outcome."""
    record, path = _claim_upload(token, team)
    try:
        with open(path, "rb") as fh:
            return submit(team, record.get("file_name", ""), fh, note)
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- a team's submissions

def team_submissions(team: Team, offset: int, size: int, by_name: bool = False) -> tuple[list[Submission], int]:
    """One page of the team's submissions (newest first, or by file name) and their total."""
    total = db.session.scalar(sa.select(sa.func.count(Submission.id)).where(Submission.team_id == team.id)) or 0
    order = (Submission.original_name, Submission.id.desc()) if by_name else (
        Submission.created_at.desc(), Submission.id.desc())
    subs = db.session.scalars(
        sa.select(Submission).where(Submission.team_id == team.id).order_by(*order).offset(offset).limit(size))
    return list(subs), total


def team_submission(team: Team, ref: int | None) -> Submission | None:
    sub = db.session.get(Submission, ref) if ref and 0 < ref < 2**63 else None
    return sub if sub is not None and sub.team_id == team.id else None


@dataclass(frozen=True)
class Limits:
    today: int
    total: int
    allowed_now: int


def submission_limits(team: Team) -> Limits:
    total = db.session.scalar(sa.select(sa.func.count(Submission.id)).where(
        Submission.team_id == team.id, Submission.counts_toward_limit.is_(True))) or 0
    return Limits(today=used_today(team.id, now()), total=total, allowed_now=daily_limit_left(team.id))


# --------------------------------------------------------------------------- the boards

@dataclass(frozen=True)
class KaggleRow:
    rank: int
    team_id: int
    team: str
    submitted_at: dt.datetime
    last_at: dt.datetime | None
    score: float | None
    entries: int
    medal: str | None = None


@dataclass(frozen=True)
class KaggleBoard:
    """The boards a participant may see now: the public one as shown (protected before the reveal,
    ranked as shown), and after the reveal the private one (with medals when the competition has them)."""

    protection: Protection
    public: list[KaggleRow]
    private: list[KaggleRow] | None  # None before the reveal
    medals: bool

    @property
    def shown(self) -> list[KaggleRow]:
        """The board ``kaggle competitions leaderboard --show`` lists: private after the reveal."""
        return self.private if self.private is not None else self.public


def kaggle_board() -> KaggleBoard:
    """The honest board (computed once per board version) in Kaggle's terms."""
    _, honest = versioned_honest_board()
    rows = honest.board.rows
    public = [KaggleRow(r.rank, r.team_id, r.team_name, r.submitted_at, r.last_at, r.score, r.entries)
              for r in sorted(rows, key=lambda r: r.rank)]
    private = None
    if honest.board.revealed:
        private = [KaggleRow(r.private_rank, r.team_id, r.team_name, r.submitted_at, r.last_at, r.private_score,
                             r.entries, honest.extras.get(r.team_id, {}).get("medal") if honest.medals else None)
                   for r in sorted((r for r in rows if r.private_rank is not None), key=lambda r: r.private_rank)]
    return KaggleBoard(protection=honest.protection, public=public, private=private, medals=honest.medals)


# --------------------------------------------------------------------------- the public data files

@dataclass(frozen=True)
class DataFile:
    name: str  # relative to public/, with forward slashes
    path: Path  # absolute
    size: int
    mtime: float
    mtime_ns: int


def public_root() -> Path:
    """The competition's public/ folder, absolute (``podium serve --competition digits`` is relative)."""
    return (current_competition().root / "public").resolve()


def _hidden(name: str) -> bool:
    return name.startswith(".")


def data_files() -> list[DataFile]:
    """Every regular file under public/, the top-level ones first, then each folder's in path order
    (image folders: ``train/<class>/<file>``, ``test/<id>.<ext>``). Hidden names and links are left out,
    so nothing outside public/ (private/ above all) can be reached through a link."""
    root = public_root()
    if not root.is_dir():
        return []
    found = [DataFile(name, root / name, stat.st_size, stat.st_mtime, stat.st_mtime_ns)
             for name, stat in scan_public(root)[0]]  # harness's walk of public/: no hidden name, no link
    return sorted(found, key=lambda f: ("/" in f.name, f.name))


def data_file(name: str) -> DataFile | None:
    """The public file ``name`` (a relative path as ``data_files`` lists it), or None: no ``..``, no
    hidden part, no link on the way, nothing outside public/."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or _hidden(p) or "\\" in p for p in parts):
        return None
    root = public_root()
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    if not path.is_file() or root not in path.resolve().parents:
        return None
    stat = path.stat()
    return DataFile("/".join(parts), path, stat.st_size, stat.st_mtime, stat.st_mtime_ns)


STORED_SUFFIXES = {".npz", ".zip", ".png", ".jpg", ".jpeg", ".gif", ".webp"}  # compressed already


def data_zip() -> tuple[Path, float]:
    """(All public files in one zip, the time of the newest), built once per content (each file's
    name, size and mtime); an older zip of the competition is removed when a new one is built."""
    files = data_files()
    stamp = hashlib.sha256(json.dumps([[f.name, f.size, f.mtime_ns] for f in files]).encode()).hexdigest()[:16]
    folder = podium_state().storage_root / ".kaggle-data"
    folder.mkdir(parents=True, exist_ok=True)
    name = current_competition().name
    target = folder / f"{name}-{stamp}.zip"
    with _zip_lock:  # concurrent first downloads wait for one build (per process), never build it twice
        if not target.is_file():
            _build_zip(files, folder, target, name)
    newest = max((f.mtime for f in files), default=target.stat().st_mtime)
    return target, newest


_zip_lock = threading.Lock()


def _build_zip(files: list[DataFile], folder: Path, target: Path, name: str) -> None:
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}"
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for f in files:
                kind = zipfile.ZIP_STORED if f.path.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                zf.write(f.path, arcname=f.name, compress_type=kind)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for old in folder.glob(f"{name}-*.zip"):
        if old != target:
            old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the stored Kaggle board

def stored_kaggle_board() -> dict | None:
    value = db.session.scalar(sa.select(Setting.value).where(Setting.key == KAGGLE_BOARD_SETTING))
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def store_kaggle_board(slug: str, rows) -> int:
    """Replace the stored Kaggle board (``podium kaggle board --into-server``); returns the rows kept. Commits.

    ``rows``: [{"rank", "team", "score", "date"}], each cut to a sane length; at most 10,000."""
    slug = slug.strip()[:200]
    if not slug or not isinstance(rows, list):
        raise KaggleRefusal(400, "Send {\"slug\": ..., \"rows\": [...]} as JSON.")
    clean = []
    for i, row in enumerate(rows[:STORED_BOARD_ROWS]):
        if not isinstance(row, dict):
            raise KaggleRefusal(400, f"rows[{i}] must be an object.")
        rank = row.get("rank", i + 1)
        clean.append({
            "rank": rank if isinstance(rank, int) and not isinstance(rank, bool) else i + 1,
            "team": str(row.get("team", ""))[:200],
            "score": str(row.get("score") or "")[:40],
            "date": str(row.get("date") or "")[:40],
        })
    value = json.dumps({"slug": slug, "fetched_at": now().isoformat(timespec="seconds"), "rows": clean})
    with write_transaction():
        updated = db.session.execute(sa.update(Setting).where(Setting.key == KAGGLE_BOARD_SETTING).values(value=value))
        if updated.rowcount == 0:
            db.session.add(Setting(key=KAGGLE_BOARD_SETTING, value=value))
        bump_board_version()  # the board page's Kaggle tab link is cached per board version
    return len(clean)


def kaggle_tab_shown(version: str) -> bool:
    """Whether a Kaggle board is stored (the board page links its tab): one existence query per board
    version, never the stored rows on every page view."""
    cache = podium_state().board_cache
    hit = cache.get("kaggle_tab")
    if hit is not None and hit[0] == version:
        return hit[1]
    shown = db.session.scalar(sa.select(Setting.key).where(Setting.key == KAGGLE_BOARD_SETTING,
                                                           Setting.value != "")) is not None
    cache.put("kaggle_tab", (version, shown))
    return shown


def kaggle_tab_rows(stored: dict) -> list[dict]:
    """The stored rows, each with the slug of the podium team of the same name (case and spaces aside)."""
    teams = {name.strip().casefold(): slug for name, slug in db.session.execute(sa.select(Team.name, Team.slug))}
    return [dict(r, podium_slug=teams.get(str(r.get("team", "")).strip().casefold())) for r in stored["rows"]]
