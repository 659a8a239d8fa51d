"""Errors as pages for browsers and as ``{"errors": [...]}`` for API clients; never a traceback."""
from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from harness.errors import PodiumError
from leaderboard.extensions import db

FRIENDLY = {
    400: "The request could not be understood.",
    401: "You need to log in first.",
    403: "You are not allowed to do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "The file is too large for this server. A prediction CSV is small; a checkpoint must stay under the competition's size limit.",
    429: "Too many submissions.",
    500: "Something went wrong on our side; it has been logged. Please try again.",
}


def wants_json() -> bool:
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json"
    )


def json_errors(status: int, messages: list[str] | tuple[str, ...]) -> Response:
    """The API's one error shape: ``{"errors": [...]}`` with ``status``."""
    response = jsonify({"errors": list(messages)})
    response.status_code = status
    return response


def error_response(status: int, messages: list[str]):
    if wants_json():
        return json_errors(status, messages)
    return render_template("error.html", status=status, messages=messages), status


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        db.session.rollback()
        return error_response(400, ["The form expired or was not sent from this site (missing CSRF token). Reload the page and try again."])

    @app.errorhandler(PodiumError)
    def podium_error(exc: PodiumError):
        db.session.rollback()
        return error_response(422, exc.messages)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        db.session.rollback()
        status = exc.code or 500
        message = FRIENDLY.get(status) or exc.description or exc.name
        return error_response(status, [message])

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        db.session.rollback()
        app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, [FRIENDLY[500]])
