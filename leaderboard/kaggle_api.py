"""Kaggle's API, as the official ``kaggle`` client calls it, served by podium.

The unmodified client, run with ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and ``HTTP_PROXY`` pointing at
this server, sends ``POST /api/v1/<service>/<Method>`` with a camelCase JSON body. This module
answers the competition methods the client's ``competitions`` commands use (submit, submissions,
leaderboard, files, download) and ``security.OAuthService/IntrospectToken`` (``KAGGLE_API_TOKEN``);
everything else under ``/api/v1/`` is a 404 in Kaggle's error shape ``{"code": 4xx, "message": ...}``.

Credentials: HTTP Basic (``KAGGLE_USERNAME`` = the team slug, ``KAGGLE_KEY`` = the team token) or
``Authorization: Bearer <team token>``. Submissions go through the same ``accept`` as every other
upload (validation messages, daily limit, history); private scores, labels and ``private/`` never
leave before the reveal.

It also holds the organizer's "Kaggle" tab: ``POST /api/kaggle/board`` (organizer token) stores the
Kaggle board that ``podium kaggle board --into-server`` fetched, as JSON in the ``Setting`` table, and
``GET /kaggle`` shows it beside the podium board, Kaggle teams matched to podium teams by name.
"""
from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import hashlib
import io
import json
import os
import secrets
import zipfile
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from harness.errors import PodiumError, SubmissionError

# --- Adapter: the podium functions this module calls. Re-point these lines after a refactor. -------
from leaderboard.auth import check_admin_token as _check_admin_token
from leaderboard.auth import team_for_token as _team_for_token
from leaderboard.extensions import csrf, db
from leaderboard.intake import LimitReached, Upload
from leaderboard.intake import accept as _accept
from leaderboard.intake import daily_limit_left as _daily_limit_left
from leaderboard.intake import used_today as _used_today
from leaderboard.models import Setting, Submission, Team
from leaderboard.ranking import ROUND
from leaderboard.ranking import current_board as _current_board
from leaderboard.ranking import is_revealed as _is_revealed
from leaderboard.state import current_competition, now, podium_state

_PENDING = {"queued", "running"}  # -> PENDING
_COMPLETE = {"scored"}  # -> COMPLETE; "refused" and "failed" -> ERROR
# ---------------------------------------------------------------------------------------------------

SERVICE = "competitions.CompetitionApiService"
KAGGLE_BOARD_SETTING = "kaggle_board"
DEFAULT_UPLOAD_SECONDS = 3600
MAX_OPEN_UPLOADS = 5  # per team: started and not yet submitted (nor expired)
MAX_PAGE_SIZE = 200

bp = Blueprint("kaggle_api", __name__)


class ApiError(Exception):
    """An answer in Kaggle's error shape: ``{"code": status, "message": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str):
    response = jsonify({"code": status, "message": message})
    response.status_code = status
    return response


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    db.session.rollback()
    return _error(exc.status, exc.message)


@bp.errorhandler(PodiumError)
def _podium_error(exc: PodiumError):
    db.session.rollback()
    return _error(400, "\n".join(exc.messages))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    db.session.rollback()
    status = exc.code or 500
    if status == 413:
        return _error(413, "The request is larger than this server accepts for this competition.")
    return _error(status, exc.description or exc.name)


# --- request helpers --------------------------------------------------------------------------------

def _body() -> dict:
    data = request.get_json(silent=True)
    if data is None and request.get_data(cache=True):
        raise ApiError(400, "The request body must be JSON.")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _text(body: dict, key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string.")
    return value


def _whole(body: dict, key: str, default: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():  # proto3 JSON sends int64 as strings
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{key}' must be a whole number.")
    return value


def _check_competition(body: dict) -> None:
    name = _text(body, "competitionName")
    expected = current_competition().name
    if name != expected:
        raise ApiError(404, f"There is no competition {name!r} on this podium server; it runs {expected!r} "
                            f"(use -c {expected}).")


def _credentials() -> tuple[str | None, str | None] | None:
    """(username or None, token) from the Authorization header, or None when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if not scheme or not value:
        return None
    if scheme.lower() == "bearer":
        return None, value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "The Basic credentials could not be read; set KAGGLE_USERNAME and KAGGLE_KEY.") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ApiError(401, "The Basic credentials need a username and a key.")
        return username, password
    raise ApiError(401, "Send your team's credentials as HTTP Basic (KAGGLE_USERNAME, KAGGLE_KEY) or a Bearer token.")


def _optional_team() -> Team | None:
    creds = _credentials()
    if creds is None:
        return None
    username, token = creds
    team = _team_for_token(token)
    if team is None or (username is not None and username != team.slug):
        # 403, not 401: the client prints the message of a 403, and a generic kaggle.com help for a 401.
        raise ApiError(403, "These credentials do not match a team on this podium server: set KAGGLE_USERNAME "
                            "to your team's slug and KAGGLE_KEY to your team token (or KAGGLE_API_TOKEN to the token).")
    return team


def _team() -> Team:
    team = _optional_team()
    if team is None:
        raise ApiError(401, "Your team's credentials are required: set KAGGLE_USERNAME (team slug) and "
                            "KAGGLE_KEY (team token), or KAGGLE_API_TOKEN.")
    return team


def _paging(body: dict, default_size: int = 20) -> tuple[int, int]:
    """(offset, size) from ``pageToken`` (an offset we issued) or ``page`` (1-based), and ``pageSize``."""
    size = _whole(body, "pageSize", default_size) or default_size
    size = max(1, min(size, MAX_PAGE_SIZE))
    token = _text(body, "pageToken")
    if token:
        if not (token.isascii() and token.isdigit() and len(token) <= 12):
            raise ApiError(400, "Unknown pageToken; use the nextPageToken of the previous page.")
        return int(token), size
    page = _whole(body, "page", 1) or 1
    if not 1 <= page <= 10**9:
        raise ApiError(400, "'page' must be between 1 and 1000000000.")
    return (page - 1) * size, size


def _next_token(offset: int, size: int, total: int) -> str:
    return str(offset + size) if offset + size < total else ""


def _iso(when: dt.datetime | None) -> str | None:
    """Kaggle's wire format for a time: naive UTC ISO with milliseconds and a Z."""
    if when is None:
        return None
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _score(value: float | None) -> str | None:
    return None if value is None else f"{value:.{ROUND}f}"


# --- IntrospectToken (KAGGLE_API_TOKEN) ------------------------------------------------------------

@bp.post("/api/v1/security.OAuthService/IntrospectToken")
def introspect_token():
    token = _text(_body(), "token")
    team = _team_for_token(token) if token else None
    if team is None:
        return jsonify({"active": False})
    return jsonify({"active": True, "username": team.slug, "userId": team.id, "clientId": "podium", "scope": ""})


# --- the competition service -------------------------------------------------------------------------

METHODS: dict[str, callable] = {}


def method(name: str):
    def register(fn):
        METHODS[name] = fn
        return fn

    return register


@bp.post(f"/api/v1/{SERVICE}/<name>")
def competition_service(name: str):
    fn = METHODS.get(name)
    if fn is None:
        raise ApiError(404, f"podium does not serve {SERVICE}/{name}.")
    return fn(_body())


def _upload_dir() -> Path:
    path = podium_state().storage_root / ".kaggle-uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _upload_paths(token: str) -> tuple[Path, Path]:
    key = hashlib.sha256(token.encode("utf-8")).hexdigest()
    folder = _upload_dir()
    return folder / f"{key}.json", folder / f"{key}.bin"


def _max_upload_bytes() -> int:
    limits = current_competition().limits
    return max(limits.max_csv_bytes, limits.max_checkpoint_bytes)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _upload_seconds() -> int:
    return int(current_app.config.get("KAGGLE_UPLOAD_SECONDS") or DEFAULT_UPLOAD_SECONDS)


def _sweep_and_count(team_id: int, seconds: int) -> int:
    """Remove expired uploads (and leftovers of interrupted ones); count the team's open uploads."""
    folder = _upload_dir()
    when = now().timestamp()
    mine = 0
    for path in folder.iterdir():
        if path.suffix == ".json":
            record = _read_record(path)
            if record is None:
                continue
            if when > float(record.get("expires_at", 0)):
                path.unlink(missing_ok=True)
                path.with_suffix(".bin").unlink(missing_ok=True)
            elif record.get("team_id") == team_id:
                mine += 1
        elif path.suffix != ".bin":  # .part-/.claim-/.taken- files of a request that died
            try:
                if when - path.stat().st_mtime > seconds + 3600:
                    path.unlink()
            except FileNotFoundError:
                pass
    return mine


@method("StartSubmissionUpload")
def start_submission_upload(body: dict):
    _check_competition(body)
    team = _team()
    length = _whole(body, "contentLength", 0) or 0
    limit = _max_upload_bytes()
    if length > limit:
        raise ApiError(413, f"The file is larger than {_size(limit)}, the limit for a submission to this competition.")
    if length == 0:
        raise ApiError(400, "The file is empty; choose your predictions CSV or model checkpoint.")
    seconds = _upload_seconds()
    if _sweep_and_count(team.id, seconds) >= MAX_OPEN_UPLOADS:
        raise ApiError(429, f"Your team has {MAX_OPEN_UPLOADS} uploads started and not submitted; submit them or "
                            f"wait until they expire ({seconds // 60} minutes after they were started).")
    token = secrets.token_urlsafe(32)
    meta, _ = _upload_paths(token)
    record = {
        "team_id": team.id,
        "file_name": os.path.basename(_text(body, "fileName"))[:255],
        "expires_at": (now() + dt.timedelta(seconds=seconds)).timestamp(),
        "uploaded": False,
    }
    meta.write_text(json.dumps(record), encoding="utf-8")
    create_url = f"{request.host_url.rstrip('/')}/api/v1/podium/uploads/{token}"
    return jsonify({"token": token, "createUrl": create_url})


def _read_record(meta: Path) -> dict | None:
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _expired(record: dict) -> bool:
    return now().timestamp() > float(record.get("expires_at", 0))


def upload_url_open(token: str) -> bool:
    """Whether ``token`` names an upload URL that may still receive its file (the body gate asks,
    from the request's headers, before a byte of the body is read: limits.py)."""
    meta, _ = _upload_paths(token)
    record = _read_record(meta)
    return record is not None and not record.get("uploaded") and not _expired(record)


@bp.put("/api/v1/podium/uploads/<token>")
def put_upload(token: str):
    """The raw bytes of a file announced by StartSubmissionUpload; once per token, before it expires."""
    meta, data = _upload_paths(token)
    record = _read_record(meta)
    if record is None or record.get("uploaded"):
        raise ApiError(404, "This upload URL is unknown or was already used; start the submission again.")
    if _expired(record):
        raise ApiError(404, "This upload URL has expired; start the submission again.")
    limit = _max_upload_bytes()
    if (request.content_length or 0) > limit:
        raise ApiError(413, f"The file is larger than {_size(limit)}, the limit for a submission to this competition.")
    tmp = data.with_suffix(f".part-{secrets.token_hex(4)}")
    size = 0
    try:
        with open(tmp, "wb") as out:
            while True:
                chunk = request.stream.read(1024 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"The file is larger than {_size(limit)}, the limit for a submission to this competition.")
                out.write(chunk)
        # Claim the token: only one PUT wins (the record is replaced atomically, the bytes kept once).
        claimed = meta.with_suffix(f".claim-{secrets.token_hex(4)}")
        try:
            os.rename(meta, claimed)
        except FileNotFoundError:
            raise ApiError(404, "This upload URL was already used; start the submission again.") from None
        os.replace(tmp, data)
        record["uploaded"] = True
        claimed.write_text(json.dumps(record), encoding="utf-8")
        os.replace(claimed, meta)
    finally:
        if tmp.exists():
            tmp.unlink()
    return jsonify({"size": size}), 200


def _claim_upload(token: str, team: Team) -> tuple[dict, Path]:
    """The uploaded file of ``token``, taken for good (a second CreateSubmission finds nothing)."""
    if not token:
        raise ApiError(400, "blobFileTokens is missing; upload the file with StartSubmissionUpload first.")
    meta, data = _upload_paths(token)
    record = _read_record(meta)
    if record is None or record.get("team_id") != team.id:
        raise ApiError(404, "Unknown upload token; upload the file again.")
    if _expired(record):
        raise ApiError(400, "The upload expired before the submission was made; submit again.")
    if not record.get("uploaded") or not data.is_file():
        raise ApiError(400, "The file was not uploaded to the createUrl; submit again.")
    claimed = data.with_suffix(f".taken-{secrets.token_hex(4)}")
    try:
        os.rename(data, claimed)
    except FileNotFoundError:
        raise ApiError(404, "This upload was already submitted.") from None
    meta.unlink(missing_ok=True)
    return record, claimed


@method("CreateSubmission")
def create_submission(body: dict):
    _check_competition(body)
    team = _team()
    record, path = _claim_upload(_text(body, "blobFileTokens"), team)
    try:
        with open(path, "rb") as fh:
            sub = _accept(team, Upload(filename=record.get("file_name", ""), data=fh,
                                       note=_text(body, "submissionDescription")))
    except LimitReached as exc:
        raise ApiError(429, "\n".join(exc.messages)) from None
    except SubmissionError as exc:
        raise ApiError(400, "\n".join(exc.messages)) from None
    finally:
        path.unlink(missing_ok=True)
    competition = current_competition()
    if sub.status == "refused":
        lines = "\n".join(f"  {m}" for m in sub.messages)
        raise ApiError(400, f"Submission {sub.id} was refused (it counts toward today's limit):\n{lines}")
    if sub.status == "scored":
        message = (f"Successfully submitted to {competition.title}: public {competition.primary_metric} "
                   f"{_score(sub.public_score)} (submission {sub.id}).")
    else:
        message = f"Successfully submitted to {competition.title}; submission {sub.id} is queued for scoring."
    return jsonify({"message": message, "ref": sub.id})


def _status(sub: Submission) -> str:
    if sub.status in _PENDING:
        return "PENDING"
    if sub.status in _COMPLETE:
        return "COMPLETE"
    return "ERROR"


def _submission_json(sub: Submission, team: Team, revealed: bool) -> dict:
    out = {
        "ref": sub.id,
        "date": _iso(sub.created_at),
        "description": sub.note or "",
        "fileName": sub.original_name or "",
        "status": _status(sub),
        "submittedBy": team.slug,
        "submittedByRef": team.slug,
        "teamName": team.name,
        "url": f"{request.host_url.rstrip('/')}/submissions/{sub.id}",
    }
    if sub.status in _COMPLETE:
        out["publicScore"] = _score(sub.public_score)
        if revealed:
            out["privateScore"] = _score(sub.private_score)
    if out["status"] == "ERROR":
        out["errorDescription"] = "\n".join(str(m) for m in (sub.messages or []))
    return out


@method("ListSubmissions")
def list_submissions(body: dict):
    _check_competition(body)
    team = _team()
    offset, size = _paging(body)
    total = db.session.scalar(sa.select(sa.func.count(Submission.id)).where(Submission.team_id == team.id)) or 0
    order = (Submission.created_at.desc(), Submission.id.desc())
    if _text(body, "sortBy") == "SUBMISSION_SORT_BY_NAME":
        order = (Submission.original_name, Submission.id.desc())
    subs = db.session.scalars(
        sa.select(Submission).where(Submission.team_id == team.id).order_by(*order).offset(offset).limit(size)
    )
    revealed = _is_revealed()
    return jsonify({"submissions": [_submission_json(s, team, revealed) for s in subs],
                    "nextPageToken": _next_token(offset, size, total)})


@method("GetSubmission")
def get_submission(body: dict):
    team = _team()
    ref = _whole(body, "ref", 0)
    sub = db.session.get(Submission, ref) if ref and 0 < ref < 2**63 else None
    if sub is None or sub.team_id != team.id:
        raise ApiError(404, f"Your team has no submission {ref}.")
    return jsonify(_submission_json(sub, team, _is_revealed()))


@method("GetSubmissionLimits")
def get_submission_limits(body: dict):
    _check_competition(body)
    team = _team()
    total = db.session.scalar(sa.select(sa.func.count(Submission.id)).where(
        Submission.team_id == team.id, Submission.counts_toward_limit.is_(True))) or 0
    return jsonify({"numToday": _used_today(team.id, now()), "numTotal": total,
                    "numAllowedNow": _daily_limit_left(team.id), "limitedByTotal": False})


def _board_rows() -> tuple[bool, list[dict]]:
    """(private?, rows) of the board a viewer may see: public until the reveal, private after."""
    board = _current_board()
    private = board.revealed
    rows = []
    for row in board.rows:
        if private:
            if row.private_rank is None:
                continue
            score = row.private_score
        else:
            score = row.score
        rows.append({"rank": row.private_rank if private else row.rank, "team_id": row.team_id,
                     "team": row.team_name, "date": row.submitted_at, "last": row.last_at,
                     "score": score, "entries": row.entries})
    return private, rows


@method("GetLeaderboard")
def get_leaderboard(body: dict):
    _check_competition(body)
    _optional_team()  # wrong credentials are an error; none are fine (the board is public)
    _, rows = _board_rows()
    offset, size = _paging(body)
    page = rows[offset:offset + size]
    return jsonify({
        "submissions": [{"teamId": r["team_id"], "teamName": r["team"], "submissionDate": _iso(r["date"]),
                         "score": _score(r["score"])} for r in page],
        "nextPageToken": _next_token(offset, size, len(rows)),
    })


def _board_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Rank", "TeamId", "TeamName", "LastSubmissionDate", "Score", "SubmissionCount"])
    for r in rows:
        last = r["last"] or r["date"]
        writer.writerow([r["rank"], r["team_id"], r["team"], last.strftime("%Y-%m-%d %H:%M:%S"),
                         _score(r["score"]), r["entries"]])
    return out.getvalue().encode("utf-8")


@method("DownloadLeaderboard")
def download_leaderboard(body: dict):
    _check_competition(body)
    _optional_team()
    name = current_competition().name
    board = _current_board()
    public_rows = [{"rank": r.rank, "team_id": r.team_id, "team": r.team_name, "date": r.submitted_at,
                    "last": r.last_at, "score": r.score, "entries": r.entries} for r in board.rows]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}-publicleaderboard.csv", _board_csv(public_rows))
        private, rows = _board_rows()
        if private:
            zf.writestr(f"{name}-privateleaderboard.csv", _board_csv(sorted(rows, key=lambda r: r["rank"])))
    data = buffer.getvalue()
    response = current_app.response_class(data, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    response.last_modified = now()
    return response


def _public_files() -> dict[str, Path]:
    """The competition's public data files by name: the plain files of public/, nothing else."""
    folder = current_competition().root / "public"
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()
            and not p.name.startswith(".")}


@method("ListDataFiles")
def list_data_files(body: dict):
    _check_competition(body)
    _team()
    files = list(_public_files().values())
    offset, size = _paging(body)
    page = files[offset:offset + size]
    return jsonify({
        "files": [{"ref": p.name, "name": p.name, "totalBytes": p.stat().st_size,
                   "creationDate": _iso(dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc))}
                  for p in page],
        "nextPageToken": _next_token(offset, size, len(files)),
    })


@method("DownloadDataFiles")
def download_data_files(body: dict):
    _check_competition(body)
    _team()
    return redirect(f"/api/v1/podium/data/{current_competition().name}.zip", code=302)


@method("DownloadDataFile")
def download_data_file(body: dict):
    _check_competition(body)
    _team()
    name = _text(body, "fileName")
    if name not in _public_files():
        raise ApiError(404, f"There is no data file {name!r}; `kaggle competitions files -c "
                            f"{current_competition().name}` lists them.")
    return redirect(f"/api/v1/podium/data/files/{name}", code=302)


def _data_zip() -> Path:
    """All public files in one zip, built once per content (name, size, mtime of each file)."""
    files = _public_files()
    stamp = hashlib.sha256(json.dumps(
        [[n, p.stat().st_size, p.stat().st_mtime_ns] for n, p in files.items()]).encode()).hexdigest()[:16]
    folder = podium_state().storage_root / ".kaggle-data"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{current_competition().name}-{stamp}.zip"
    if not target.is_file():
        tmp = folder / f".{target.name}.{secrets.token_hex(4)}"
        with zipfile.ZipFile(tmp, "w") as zf:
            for n, p in files.items():
                kind = zipfile.ZIP_STORED if p.suffix == ".npz" else zipfile.ZIP_DEFLATED
                zf.write(p, arcname=n, compress_type=kind)
        os.replace(tmp, target)
    return target


@bp.get("/api/v1/podium/data/<name>.zip")
def data_zip(name: str):
    _team()
    if name != current_competition().name:
        raise ApiError(404, "There is nothing here.")
    path = _data_zip()
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=f"{name}.zip",
                     conditional=True, last_modified=max(p.stat().st_mtime for p in _public_files().values()))


@bp.get("/api/v1/podium/data/files/<name>")
def data_file(name: str):
    _team()
    path = _public_files().get(name)
    if path is None:
        raise ApiError(404, "There is nothing here.")
    return send_file(path, as_attachment=True, download_name=name, conditional=True)


@bp.route("/api/v1/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
@bp.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def not_served(rest: str):
    raise ApiError(404, f"podium does not serve /api/v1/{rest}.")


# --- the Kaggle tab --------------------------------------------------------------------------------

def kaggle_board() -> dict | None:
    value = db.session.scalar(sa.select(Setting.value).where(Setting.key == KAGGLE_BOARD_SETTING))
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _admin() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not _check_admin_token(value):
        raise ApiError(401, "The organizer token is required (Authorization: Bearer <ADMIN_TOKEN>).")


@bp.post("/api/kaggle/board")
def store_kaggle_board():
    """Body: {"slug": ..., "rows": [{"rank", "team", "score", "date"}]}; replaces the stored board."""
    _admin()
    body = _body()
    slug = _text(body, "slug").strip()[:200]
    rows = body.get("rows")
    if not slug or not isinstance(rows, list):
        raise ApiError(400, "Send {\"slug\": ..., \"rows\": [...]} as JSON.")
    clean = []
    for i, row in enumerate(rows[:10000]):
        if not isinstance(row, dict):
            raise ApiError(400, f"rows[{i}] must be an object.")
        rank = row.get("rank", i + 1)
        clean.append({
            "rank": rank if isinstance(rank, int) and not isinstance(rank, bool) else i + 1,
            "team": str(row.get("team", ""))[:200],
            "score": str(row.get("score") or "")[:40],
            "date": str(row.get("date") or "")[:40],
        })
    value = json.dumps({"slug": slug, "fetched_at": now().isoformat(timespec="seconds"), "rows": clean})
    db.session.commit()
    updated = db.session.execute(sa.update(Setting).where(Setting.key == KAGGLE_BOARD_SETTING).values(value=value))
    if updated.rowcount == 0:
        db.session.add(Setting(key=KAGGLE_BOARD_SETTING, value=value))
    db.session.commit()
    return jsonify({"stored": len(clean), "url": f"{request.host_url.rstrip('/')}/kaggle"}), 201


@bp.get("/kaggle")
def kaggle_board_page():
    stored = kaggle_board()
    if stored is None:
        abort(404)
    teams = {name.strip().casefold(): slug for name, slug in db.session.execute(sa.select(Team.name, Team.slug))}
    rows = [dict(r, podium_slug=teams.get(str(r.get("team", "")).strip().casefold())) for r in stored["rows"]]
    return render_template("kaggle_board.html", stored=stored, rows=rows)


def register(app: Flask) -> None:
    """Called once by ``create_app``: the blueprint (token-authenticated JSON: no CSRF) and the tab's global."""
    app.register_blueprint(bp)
    csrf.exempt(bp)
    app.jinja_env.globals["kaggle_board_stored"] = lambda: kaggle_board() is not None
