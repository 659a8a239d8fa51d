"""Kaggle's API, as the official ``kaggle`` client calls it, served by podium (the views; the
operations are ``leaderboard/kaggle_service.py``).

The unmodified client, run with ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and ``HTTP_PROXY`` pointing at
this server, sends ``POST /api/v1/<service>/<Method>`` with a camelCase JSON body. This module
answers the competition methods the client's ``competitions`` commands use (submit, submissions,
leaderboard, files, download) and ``security.OAuthService/IntrospectToken`` (``KAGGLE_API_TOKEN``);
everything else under ``/api/v1/`` is a 404 in Kaggle's error shape ``{"code": 4xx, "message": ...}``.

Credentials: HTTP Basic (``KAGGLE_USERNAME`` = the team slug, ``KAGGLE_KEY`` = the team token) or
``Authorization: Bearer <team token>``. Submissions go through ``intake.submit`` like every other
upload (validation messages, daily limit, history); every public score is the one the honest board
shows (probing protection: ``public_board`` rounded or ladder); private scores, labels and
``private/`` never leave before the reveal.

It also holds the organizer's "Kaggle" tab: ``POST /api/kaggle/board`` (organizer token) stores the
Kaggle board that ``podium kaggle board --into-server`` fetched, and ``GET /kaggle`` shows it beside
the podium board, Kaggle teams matched to podium teams by name.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from urllib.parse import quote

from flask import Blueprint, Flask, abort, current_app, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from harness.errors import PodiumError
from harness.evaluate import formula_safe
from leaderboard.auth import basic_credentials, check_admin_token, team_for_token
from leaderboard.extensions import csrf, db
from leaderboard.gc import QuotaExceeded
from leaderboard.honest_board import Protection, current_protection, shown_public, shown_scores_of
from leaderboard.kaggle_service import (
    KaggleRefusal, KaggleRow, data_file as find_data_file, data_files, data_zip, kaggle_board, kaggle_tab_rows,
    receive_upload, start_upload, store_kaggle_board as store_board, stored_kaggle_board,
    submission_limits, submit_upload, team_submission, team_submissions,
)
from leaderboard.limits import declared_length
from leaderboard.models import Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import ROUND, is_revealed
from leaderboard.state import current_competition, now

SERVICE = "competitions.CompetitionApiService"
MAX_PAGE_SIZE = 200
KAGGLE_STATUS = {  # podium's states -> Kaggle's SubmissionStatus names
    SubmissionStatus.QUEUED: "PENDING",
    SubmissionStatus.RUNNING: "PENDING",
    SubmissionStatus.SCORED: "COMPLETE",
    SubmissionStatus.REFUSED: "ERROR",
    SubmissionStatus.FAILED: "ERROR",
}

bp = Blueprint("kaggle_api", __name__)


class ApiError(KaggleRefusal):
    """A request the views refuse themselves (bad JSON, credentials, paging)."""


def _error(status: int, message: str):
    response = jsonify({"code": status, "message": message})
    response.status_code = status
    return response


@bp.errorhandler(KaggleRefusal)
def _refused(exc: KaggleRefusal):
    db.session.rollback()
    response = _error(exc.status, "\n".join(exc.messages))
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.errorhandler(QuotaExceeded)
def _quota(exc: QuotaExceeded):
    db.session.rollback()
    return _error(413, "\n".join(exc.messages))


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
    if not _encodable(data):
        raise ApiError(400, "The request body holds text that is not valid Unicode (a lone surrogate).")
    return data


def _encodable(value) -> bool:
    """Every string in a JSON value is valid UTF-8 text (JSON's "\\udc80" escapes make lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


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
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):  # proto3 JSON: int64 as text
        value = int(value)  # ASCII digits only ("\u00b2" passes str.isdigit()), and no more than int64 holds
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
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
        credentials = basic_credentials(value)
        if credentials is None:
            raise ApiError(401, "The Basic credentials could not be read: they need a username and a key; set "
                                "KAGGLE_USERNAME and KAGGLE_KEY.")
        return credentials
    raise ApiError(401, "Send your team's credentials as HTTP Basic (KAGGLE_USERNAME, KAGGLE_KEY) or a Bearer token.")


def _optional_team() -> Team | None:
    creds = _credentials()
    if creds is None:
        return None
    username, token = creds
    team = team_for_token(token)
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


def _score(value: float | None, decimals: int = ROUND) -> str | None:
    """A score as Kaggle's string field, to the decimals the viewer may see."""
    return None if value is None else f"{value:.{decimals}f}"


# --- IntrospectToken (KAGGLE_API_TOKEN) ------------------------------------------------------------

@bp.post("/api/v1/security.OAuthService/IntrospectToken")
def introspect_token():
    token = _text(_body(), "token")
    team = team_for_token(token) if token else None
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


@method("StartSubmissionUpload")
def start_submission_upload(body: dict):
    _check_competition(body)
    team = _team()
    token = start_upload(team, _text(body, "fileName"), _whole(body, "contentLength", 0) or 0)
    return jsonify({"token": token, "createUrl": f"{request.host_url.rstrip('/')}/api/v1/podium/uploads/{token}"})


@bp.put("/api/v1/podium/uploads/<token>")
def put_upload(token: str):
    """The raw bytes of a file announced by StartSubmissionUpload; once per token, before it expires."""
    return jsonify({"size": receive_upload(token, request.stream, declared_length(request.environ))}), 200


@method("CreateSubmission")
def create_submission(body: dict):
    _check_competition(body)
    team = _team()
    outcome = submit_upload(team, _text(body, "blobFileTokens"), _text(body, "submissionDescription"))
    sub = outcome.submission
    if sub is None:  # not a submission at all (the daily limit, an oversized file): nothing counted
        raise ApiError(outcome.status, outcome.messages)
    competition = current_competition()
    if sub.status == SubmissionStatus.REFUSED:
        lines = "\n".join(f"  {m}" for m in outcome.messages)
        raise ApiError(outcome.status, f"Submission {sub.id} was refused (it counts toward today's limit):\n{lines}")
    if sub.status == SubmissionStatus.SCORED:
        protection = current_protection()
        message = (f"Successfully submitted to {competition.title}: public {competition.primary_metric} "
                   f"{_score(shown_public(sub, protection), protection.decimals)} (submission {sub.id}).")
    else:
        message = f"Successfully submitted to {competition.title}; submission {sub.id} is queued for scoring."
    return jsonify({"message": message, "ref": sub.id})


def _submission_json(sub: Submission, team: Team, revealed: bool, public: float | None, decimals: int) -> dict:
    status = KAGGLE_STATUS[SubmissionStatus(sub.status)]
    out = {
        "ref": sub.id,
        "date": _iso(sub.created_at),
        "description": sub.note or "",
        "fileName": sub.original_name or "",
        "status": status,
        "submittedBy": team.slug,
        "submittedByRef": team.slug,
        "teamName": team.name,
        "url": f"{request.host_url.rstrip('/')}/submissions/{sub.id}",
    }
    if status == "COMPLETE":
        out["publicScore"] = _score(public, decimals)
        if revealed:
            out["privateScore"] = _score(sub.private_score)
    if status == "ERROR":
        out["errorDescription"] = "\n".join(str(m) for m in (sub.messages or []))
    return out


@method("ListSubmissions")
def list_submissions(body: dict):
    _check_competition(body)
    team = _team()
    offset, size = _paging(body)
    subs, total = team_submissions(team, offset, size, by_name=_text(body, "sortBy") == "SUBMISSION_SORT_BY_NAME")
    revealed = is_revealed()
    protection = current_protection(revealed)
    shown = shown_scores_of(subs, protection)
    return jsonify({"submissions": [_submission_json(s, team, revealed, shown[s.id], protection.decimals) for s in subs],
                    "nextPageToken": _next_token(offset, size, total)})


@method("GetSubmission")
def get_submission(body: dict):
    team = _team()
    ref = _whole(body, "ref", 0)
    sub = team_submission(team, ref)
    if sub is None:
        raise ApiError(404, f"Your team has no submission {ref}.")
    revealed = is_revealed()
    protection = current_protection(revealed)
    return jsonify(_submission_json(sub, team, revealed, shown_public(sub, protection), protection.decimals))


@method("GetSubmissionLimits")
def get_submission_limits(body: dict):
    _check_competition(body)
    limits = submission_limits(_team())
    return jsonify({"numToday": limits.today, "numTotal": limits.total, "numAllowedNow": limits.allowed_now,
                    "limitedByTotal": False})


def _decimals(protection: Protection, private: bool) -> int:
    return ROUND if private else protection.decimals


@method("GetLeaderboard")
def get_leaderboard(body: dict):
    _check_competition(body)
    _optional_team()  # wrong credentials are an error; none are fine (the board is public)
    board = kaggle_board()
    rows = board.shown
    decimals = _decimals(board.protection, board.private is not None)
    offset, size = _paging(body)
    return jsonify({
        "submissions": [{"teamId": r.team_id, "teamName": r.team, "submissionDate": _iso(r.submitted_at),
                         "score": _score(r.score, decimals)} for r in rows[offset:offset + size]],
        "nextPageToken": _next_token(offset, size, len(rows)),
    })


def _board_csv(rows: list[KaggleRow], decimals: int, medals: bool = False) -> bytes:
    """Kaggle's leaderboard CSV; team names neutralised for spreadsheets (``formula_safe``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Rank", "TeamId", "TeamName", "LastSubmissionDate", "Score", "SubmissionCount"]
                    + (["Medal"] if medals else []))
    for r in rows:
        last = r.last_at or r.submitted_at
        writer.writerow([r.rank, r.team_id, formula_safe(r.team), last.strftime("%Y-%m-%d %H:%M:%S"),
                         _score(r.score, decimals), r.entries] + ([r.medal or ""] if medals else []))
    return out.getvalue().encode("utf-8")


@method("DownloadLeaderboard")
def download_leaderboard(body: dict):
    _check_competition(body)
    _optional_team()
    name = current_competition().name
    board = kaggle_board()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}-publicleaderboard.csv", _board_csv(board.public, _decimals(board.protection, False)))
        if board.private is not None:
            zf.writestr(f"{name}-privateleaderboard.csv", _board_csv(board.private, ROUND, board.medals))
    response = current_app.response_class(buffer.getvalue(), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    response.last_modified = now()
    return response


@method("ListDataFiles")
def list_data_files(body: dict):
    _check_competition(body)
    _team()
    files = data_files()
    offset, size = _paging(body)
    return jsonify({
        "files": [{"ref": f.name, "name": f.name, "totalBytes": f.size,
                   "creationDate": _iso(dt.datetime.fromtimestamp(f.mtime, dt.timezone.utc))}
                  for f in files[offset:offset + size]],
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
    found = find_data_file(_text(body, "fileName"))
    if found is None:
        raise ApiError(404, f"There is no data file {_text(body, 'fileName')!r}; `kaggle competitions files -c "
                            f"{current_competition().name}` lists them.")
    return redirect(f"/api/v1/podium/data/files/{quote(found.name)}", code=302)


@bp.get("/api/v1/podium/data/<name>.zip")
def data_zip_file(name: str):
    _team()
    if name != current_competition().name:
        raise ApiError(404, "There is nothing here.")
    path, newest = data_zip()
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=f"{name}.zip",
                     conditional=True, last_modified=newest)


@bp.get("/api/v1/podium/data/files/<path:name>")
def data_file(name: str):
    _team()
    found = find_data_file(name)
    if found is None:
        raise ApiError(404, "There is nothing here.")
    return send_file(found.path, as_attachment=True, download_name=found.path.name, conditional=True)


@bp.route("/api/v1/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
@bp.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def not_served(rest: str):
    raise ApiError(404, f"podium does not serve /api/v1/{rest}.")


# --- the Kaggle tab --------------------------------------------------------------------------------

def _admin() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not check_admin_token(value):
        raise ApiError(401, "The organizer token is required (Authorization: Bearer <ADMIN_TOKEN>).")


@bp.post("/api/kaggle/board")
def store_kaggle_board():
    """Body: {"slug": ..., "rows": [{"rank", "team", "score", "date"}]}; replaces the stored board."""
    _admin()
    body = _body()
    stored = store_board(_text(body, "slug"), body.get("rows"))
    return jsonify({"stored": stored, "url": f"{request.host_url.rstrip('/')}/kaggle"}), 201


@bp.get("/kaggle")
def kaggle_board_page():
    stored = stored_kaggle_board()
    if stored is None:
        abort(404)
    return render_template("kaggle_board.html", stored=stored, rows=kaggle_tab_rows(stored))


def register(app: Flask) -> None:
    """Called once by ``create_app``: the blueprint (token-authenticated JSON: no CSRF)."""
    app.register_blueprint(bp)
    csrf.exempt(bp)
