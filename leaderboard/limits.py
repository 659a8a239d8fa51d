"""Limits before bytes: a request body is refused from its headers, before it is read or spooled.

- Its declared size (``Content-Length``) above the limit of its path is a 413: an upload path
  (``/api/submissions``, ``/upload``) may carry the largest file ``[limits]`` allows plus the form
  (``MAX_CONTENT_LENGTH``); every other path at most ``BODY_LIMIT_OTHER`` (default 16 MiB: the
  largest worker result is a few MiB of class indices).
- An upload whose sender is not a team (no valid bearer token for the API, no valid session for
  the page) is answered by the app from the headers alone, with its body withheld: a 401 (or a 429
  once the rate limits are reached, see ``security``) or a redirect to the login page.
- A chunked body is cut off at the same limits while it arrives.

Two hooks apply the one ``BodyGate``: ``GateMiddleware`` for WSGI servers that hand the body to the
app unread (gunicorn), and ``gated_waitress_server`` for waitress, which otherwise reads and spools
every body to a temporary file before the app sees the request. The waitress hook runs the check in
the server's I/O thread as soon as the headers are in.
"""
from __future__ import annotations

import functools
import io
from typing import Callable, Iterable

from flask import Flask, abort, request
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error

UPLOAD_PATHS = ("/api/submissions", "/upload")
KAGGLE_UPLOADS = "/api/v1/podium/uploads/"  # + token: the createUrl of `kaggle competitions submit` (kaggle_api.py)
BODY_LIMIT_OTHER = 16 * 1024 * 1024
WITHHELD = "podium.body_withheld"  # environ key: the app answers from the headers alone
REFUSE_SIZE = "podium.refuse_size"


class BodyGate:
    """Decides from a request's headers (a WSGI environ with no body) whether its body may be read."""

    def __init__(self, app: Flask):
        self.app = app

    @staticmethod
    def is_upload(path: str) -> bool:
        return path in UPLOAD_PATHS or path.startswith(KAGGLE_UPLOADS)

    def limit_for(self, path: str) -> int:
        config = self.app.config
        if self.is_upload(path):
            return int(config["MAX_CONTENT_LENGTH"])
        return int(config.get("BODY_LIMIT_OTHER", BODY_LIMIT_OTHER))

    def _sender_known(self, environ: dict) -> bool:
        from leaderboard.auth import bearer_token, session_team, team_for_token

        with self.app.request_context(environ):
            path = environ.get("PATH_INFO", "")
            if path.startswith(KAGGLE_UPLOADS):  # the single-use upload URL is the credential
                from leaderboard.kaggle_api import upload_url_open

                return upload_url_open(path[len(KAGGLE_UPLOADS):])
            if path == "/api/submissions":
                token = bearer_token()
                return bool(token) and team_for_token(token) is not None
            return session_team() is not None

    def refusal(self, environ: dict, declared: int | None) -> dict | None:
        """None when the body may be read; otherwise the body-less environ to answer with."""
        path = environ.get("PATH_INFO", "")
        if declared is not None and declared > self.limit_for(path):
            return {**bodyless(environ), REFUSE_SIZE: True}
        if environ.get("REQUEST_METHOD") in ("POST", "PUT") and self.is_upload(path):
            quiet = bodyless(environ)
            if not self._sender_known(quiet):
                return quiet
        return None

    def answer(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        """The app's response to a body-less request (status line, headers, body)."""
        captured: dict = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        chunks = self.app.wsgi_app(environ, start_response)  # the app itself, not the gate again
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return captured["status"], captured["headers"], body


def bodyless(environ: dict) -> dict:
    quiet = dict(environ)
    quiet["wsgi.input"] = io.BytesIO(b"")
    quiet["CONTENT_LENGTH"] = "0"
    quiet.pop("HTTP_TRANSFER_ENCODING", None)
    quiet["wsgi.input_terminated"] = False
    quiet[WITHHELD] = True
    return quiet


def _declared(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def init_limits(app: Flask) -> None:
    """The app's side: a request whose body was withheld gets its 413 or its 401 from the headers."""
    app.config.setdefault("BODY_LIMIT_OTHER", BODY_LIMIT_OTHER)
    app.extensions["podium_gate"] = BodyGate(app)

    @app.before_request
    def _withheld_body():
        if request.environ.get(REFUSE_SIZE):
            abort(413)
        if request.environ.get(WITHHELD) and request.path == "/upload":
            from leaderboard.auth import session_team

            if session_team() is None:  # before CSRF, which would read the (withheld) form
                from flask import redirect, url_for

                return redirect(url_for("teams.login", next="/upload"))
        return None

    # the redirect above must run before Flask-WTF's CSRF check
    app.before_request_funcs[None].insert(0, app.before_request_funcs[None].pop())
    app.wsgi_app = GateMiddleware(app.wsgi_app, app.extensions["podium_gate"])


class GateMiddleware:
    """For WSGI servers that pass the body unread (gunicorn): check the headers before the app reads."""

    def __init__(self, wsgi_app: Callable, gate: BodyGate):
        self.wsgi_app = wsgi_app
        self.gate = gate

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get(WITHHELD) or (_declared(environ) in (None, 0) and not environ.get("wsgi.input_terminated")
                                     and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
            return self.wsgi_app(environ, start_response)
        refused = self.gate.refusal(environ, _declared(environ))
        return self.wsgi_app(refused if refused is not None else environ, start_response)


# ---- waitress --------------------------------------------------------------------------------------

class _AppAnswer(Error):
    """A response the app gave from the headers; waitress sends it and closes the connection."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes):
        super().__init__("")
        self.status, self.headers, self.payload = status, headers, body
        self.code = int(status.split()[0])

    def to_response(self, ident=None):
        skip = {"content-length", "connection", "transfer-encoding"}
        return self.status, [(k, v) for k, v in self.headers if k.lower() not in skip], self.payload


class _TooLarge(Error):
    code = 413
    reason = "Request Entity Too Large"


class GatedParser(HTTPRequestParser):
    def __init__(self, adj, gate: BodyGate, environ_base: dict):
        super().__init__(adj)
        self._gate = gate
        self._environ_base = environ_base
        self._checked = False
        self._limit: int | None = None

    def received(self, data):
        consumed = super().received(data)
        if self.headers_finished and not self._checked:
            self._checked = True
            if not self.completed and self.error is None:  # a body is coming
                self._check_headers()
        elif self._limit is not None and not self.completed and self.body_bytes_received > self._limit:
            self.error = _TooLarge(f"The request body is larger than {self._limit} bytes.")
            self.completed = True
        return consumed

    def _environ(self) -> dict:
        environ = dict(self._environ_base)
        environ.update({
            "REQUEST_METHOD": self.command, "PATH_INFO": self.path, "QUERY_STRING": self.query or "",
            "SERVER_PROTOCOL": f"HTTP/{self.version}", "wsgi.url_scheme": self.url_scheme or "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0), "SCRIPT_NAME": "",
        })
        for key, value in self.headers.items():
            if key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                environ[key] = value
            else:
                environ[f"HTTP_{key}"] = value
        return environ

    def _check_headers(self) -> None:
        environ = self._environ()
        self._limit = self._gate.limit_for(self.path)
        declared = None if self.chunked else self.content_length
        try:
            refused = self._gate.refusal(environ, declared)
            answer = self._gate.answer(refused) if refused is not None else None
        except Exception:  # noqa: BLE001  (the app logs its own errors; never kill the I/O thread)
            self._gate.app.logger.exception("the body gate failed on %s", self.path)
            answer = ("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")],
                      b"Something went wrong on our side; it has been logged. Please try again.")
        if answer is not None:
            self.error = _AppAnswer(*answer)
            self.completed = True
            self.expect_continue = False  # no "100 Continue": the body is not wanted


class GatedChannel(HTTPChannel):
    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        base = {"REMOTE_ADDR": str(addr[0]) if isinstance(addr, tuple) else "",
                "SERVER_NAME": str(server.server_name), "SERVER_PORT": str(server.effective_port)}
        self.parser_class = functools.partial(GatedParser, gate=server.podium_gate, environ_base=base)


def gate_waitress(server, app: Flask) -> None:
    """Make a waitress server (``waitress.create_server``'s) check bodies from their headers."""
    server.podium_gate = app.extensions["podium_gate"]
    server.channel_class = GatedChannel


# Connection defaults for ``podium serve`` (issue 9): a few hundred slow clients cannot hold every
# connection, an idle one is dropped after a minute, a body larger than the largest upload is
# refused by its declared size before it is read.
CONNECTION_LIMIT = 500
CHANNEL_TIMEOUT = 60


def gated_waitress_server(app: Flask, host: str, port: int, threads: int, connection_limit: int = CONNECTION_LIMIT,
                          channel_timeout: int = CHANNEL_TIMEOUT, **adjustments):
    """A waitress server for ``app`` with the gate and ``podium serve``'s limits."""
    from waitress import create_server

    largest = max(int(app.config["MAX_CONTENT_LENGTH"]), int(app.config.get("BODY_LIMIT_OTHER", BODY_LIMIT_OTHER)))
    server = create_server(app, host=host, port=port, threads=threads, ident="podium",
                           connection_limit=connection_limit, channel_timeout=channel_timeout,
                           max_request_body_size=largest + 1, **adjustments)
    gate_waitress(server, app)
    return server
