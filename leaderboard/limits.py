"""Limits before bytes: a request body is refused from its headers, before it is read or spooled.

- The limit of a path: an upload path (``/api/submissions``, ``/upload``, the Kaggle client's
  upload URL) may carry the largest file ``[limits]`` allows plus the form
  (``MAX_CONTENT_LENGTH``); the scoring workers' results (``/api/jobs/...`` with the workers'
  token) and the Kaggle board the organizer's token posts (``/api/kaggle/board``) at most
  ``BODY_LIMIT_SERVICE``; every other path (logins, the organizer's and the finals forms, JSON
  calls) at most ``BODY_LIMIT_OTHER``. Which token a request carries is a constant-time comparison
  with the configured one: no database, no password hash.
- A body declared (``Content-Length``) above its path's limit is a 413 before a byte of it is read.
- An upload whose sender is not a team (no valid bearer token for the API, no valid session for
  the page, no open upload URL) is answered by the app from the headers alone, with its body
  withheld: a 401 (or a 429 once the rate limits are reached, see ``security``) or a redirect to
  the login page. The rate limits run before the token is checked.
- A chunked body is cut off at the same limits while it arrives (413).

Every refusal is the app's own answer (JSON under ``/api/``, a page elsewhere, the security
headers), given on a body-less copy of the request, and the connection is closed after it.

Two hooks apply the one ``BodyGate``:

- ``gated_waitress_server`` / ``gate_waitress`` for waitress, which otherwise reads and spools
  every body to a temporary file before the app sees the request. Its parser stops reading a
  connection as soon as the headers are in; anything that needs the app (a sender check, a
  refusal's page) runs in one of waitress's worker threads, never in the I/O thread that serves
  every connection, and the I/O thread then reads the body or sends the answer.
- ``GateMiddleware`` for WSGI servers that hand the body to the app unread (gunicorn for
  ``podium serve --processes N``, werkzeug's): the same checks in the request's thread; a chunked
  body on a non-upload path is read into memory up to its limit (never to disk), an upload's is
  cut off at ``MAX_CONTENT_LENGTH`` as the app reads it. gunicorn closes a connection whose body
  the app left unread right after the answer.
"""
from __future__ import annotations

import functools
import hmac
import io
from typing import Callable, Iterable

from flask import Flask, request
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error, RequestEntityTooLarge

from harness.units import size_text
from leaderboard.protocol import JOBS_PREFIX

UPLOAD_PATHS = ("/api/submissions", "/upload")
KAGGLE_UPLOADS = "/api/v1/podium/uploads/"  # + token: the createUrl of `kaggle competitions submit` (kaggle_api.py)
KAGGLE_BOARD = "/api/kaggle/board"  # `podium kaggle board --into-server`: JSON rows, the organizer's token
WITHHELD = "podium.body_withheld"  # environ key: the app answers from the headers alone
REFUSE_SIZE = "podium.refuse_size"  # environ key: the body is over this limit (bytes): answer 413
PROBE = "podium.probe"  # environ key: only tell whether the sender may send its body
VERDICT = "podium.gate_verdict"  # set to "read" by the app when the probe's sender may send it
DECLARED = "podium.declared_length"  # environ key: the Content-Length of a withheld body (None: chunked)
GATED = "podium.gated"  # set by waitress's gate: the body was checked already

Answer = tuple[str, list[tuple[str, str]], bytes]


def _bearer(environ: dict) -> str:
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _same(given: str, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(given.encode(), str(expected).encode())


class BodyGate:
    """Decides from a request's headers (a WSGI environ whose body is unread) whether its body may be read."""

    def __init__(self, app: Flask):
        self.app = app

    @staticmethod
    def is_upload(path: str) -> bool:
        return path in UPLOAD_PATHS or path.startswith(KAGGLE_UPLOADS)

    def limit_for(self, environ: dict) -> int:
        """The most body bytes this request may send: cheap (no database, no hash), for the I/O thread."""
        config = self.app.config
        path = environ.get("PATH_INFO", "")
        if self.is_upload(path) and environ.get("REQUEST_METHOD") in ("POST", "PUT"):  # only these upload
            return int(config["MAX_CONTENT_LENGTH"])
        if path.startswith(JOBS_PREFIX + "/") and _same(_bearer(environ), config.get("WORKER_TOKEN")):
            return int(config["BODY_LIMIT_SERVICE"])
        if path == KAGGLE_BOARD and _same(_bearer(environ), config.get("ADMIN_TOKEN")):
            return int(config["BODY_LIMIT_SERVICE"])
        return int(config["BODY_LIMIT_OTHER"])

    def needs_sender_check(self, environ: dict) -> bool:
        return environ.get("REQUEST_METHOD") in ("POST", "PUT") and self.is_upload(environ.get("PATH_INFO", ""))

    def decide(self, environ: dict, declared: int | None, too_large: bool = False,
               wsgi: Callable | None = None) -> Answer | None:
        """None when the body may be read; otherwise the app's answer, given without the body. May
        check a token (a password hash) and query the database: call it from a request thread."""
        limit = self.limit_for(environ)
        if too_large or (declared is not None and declared > limit):
            return self.answer({**bodyless(environ), REFUSE_SIZE: limit}, wsgi)
        if self.needs_sender_check(environ):
            probe = {**bodyless(environ), PROBE: True}
            answer = self.answer(probe, wsgi)
            return None if probe.get(VERDICT) == "read" else answer
        return None

    def answer(self, environ: dict, wsgi: Callable | None = None) -> Answer:
        """The app's response to a body-less request (status line, headers, body)."""
        captured: dict = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        chunks = (wsgi or self.app.wsgi_app)(environ, start_response)  # past the gate: WITHHELD is set
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
    quiet[DECLARED] = _declared(environ)
    return quiet


def declared_length(environ: dict) -> int | None:
    """The body's declared length, also when the gate withheld the body (the view answers from it)."""
    return environ[DECLARED] if environ.get(WITHHELD) else _declared(environ)


def _declared(environ: dict) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _chunked(environ: dict) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def init_limits(app: Flask) -> None:
    """The app's side: a request whose body was withheld gets its 413, its 401 or its redirect from
    the headers; a probe learns whether its sender may send the body."""
    app.extensions["podium_gate"] = gate = BodyGate(app)

    @app.before_request
    def _withheld_body():
        environ = request.environ
        if environ.get(REFUSE_SIZE):
            return _too_large(int(environ[REFUSE_SIZE]), gate.is_upload(request.path))
        if not environ.get(WITHHELD):
            request.max_content_length = gate.limit_for(environ)  # werkzeug enforces it as the body is read
            return None
        if request.path == "/upload" and request.method == "POST":
            from leaderboard.auth import session_team

            if session_team() is None:  # before CSRF, which would read the (withheld) form
                from flask import redirect, url_for

                return redirect(url_for("teams.login", next="/upload"))
            if environ.get(PROBE):
                environ[VERDICT] = "read"
                return "", 204
        return None

    # the redirect above must run before Flask-WTF's CSRF check
    app.before_request_funcs[None].insert(0, app.before_request_funcs[None].pop())

    @app.before_request
    def _probe_sender():  # after the rate limits (security.init_security ran first): a refused guess costs no hash
        environ = request.environ
        if environ.get(PROBE) and request.path != "/upload" and _sender_known(request.path):
            environ[VERDICT] = "read"
            return "", 204
        return None  # the view answers from the headers (a 401, counted by the rate limits)

    app.wsgi_app = GateMiddleware(app.wsgi_app, gate)


def _sender_known(path: str) -> bool:
    from leaderboard.auth import bearer_token, team_for_token

    if path.startswith(KAGGLE_UPLOADS):  # the single-use upload URL is the credential, for its announced size
        from leaderboard.kaggle_service import upload_url_open

        return upload_url_open(path[len(KAGGLE_UPLOADS):], request.environ.get(DECLARED))
    token = bearer_token()
    return bool(token) and team_for_token(token) is not None


def _too_large(limit: int, upload: bool):
    from leaderboard.errors import FRIENDLY, error_response

    message = FRIENDLY[413] if upload else f"The request body is larger than this address accepts ({size_text(limit)})."
    return error_response(413, [message])


class GateMiddleware:
    """For WSGI servers that pass the body unread (gunicorn, werkzeug): check the headers before the
    app reads, and cap a chunked body at its limit."""

    def __init__(self, wsgi_app: Callable, gate: BodyGate):
        self.wsgi_app = wsgi_app
        self.gate = gate

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get(WITHHELD) or environ.get(GATED):
            return self.wsgi_app(environ, start_response)
        chunked, declared = _chunked(environ), _declared(environ)
        if not chunked and not declared:
            return self.wsgi_app(environ, start_response)
        answer = self.gate.decide(environ, None if chunked else declared, wsgi=self.wsgi_app)
        if answer is None and chunked:
            environ, answer = self._cap_chunked(environ)
        if answer is not None:
            return _send(answer, start_response)
        return self.wsgi_app(environ, start_response)

    def _cap_chunked(self, environ: dict) -> tuple[dict, Answer | None]:
        from werkzeug.wsgi import LimitedStream

        limit = self.gate.limit_for(environ)
        if self.gate.is_upload(environ.get("PATH_INFO", "")):  # a team's upload: cut off as the app reads it
            return {**environ, "wsgi.input": LimitedStream(environ["wsgi.input"], limit, is_max=True)}, None
        body = _read_at_most(environ["wsgi.input"], limit + 1)  # small: in memory, never spooled
        if len(body) > limit:
            return environ, self.gate.decide(environ, None, too_large=True, wsgi=self.wsgi_app)
        plain = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        plain.pop("HTTP_TRANSFER_ENCODING", None)
        return plain, None


def _read_at_most(stream, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        piece = stream.read(min(left, 65536))
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def _send(answer: Answer, start_response: Callable) -> Iterable[bytes]:
    """Send a refusal (gunicorn closes a connection whose body was left unread, at once: measured)."""
    status, headers, body = answer
    start_response(status, headers)
    return [body]


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


_FAILED = ("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")],
           b"Something went wrong on our side; it has been logged. Please try again.")


class GatedParser(HTTPRequestParser):
    """waitress's parser, which stops at the end of the headers when the gate must decide (a sender
    check, a refusal) and hands the decision to a worker thread; the channel reads nothing more
    from the connection meanwhile (``deferred``)."""

    def __init__(self, adj, channel: "GatedChannel"):
        super().__init__(adj)
        self._channel = channel
        self._gate: BodyGate = channel.server.podium_gate
        self._checked = False
        self._limit: int | None = None
        self.deferred = False
        self._held = b""  # bytes that arrived with the headers while the decision is pending
        self._expected_continue = False

    def received(self, data):
        if self.deferred:
            self._held += data  # at most one recv() of data: the channel is not read meanwhile
            return len(data)
        consumed = super().received(data)
        if self.headers_finished and not self._checked:
            self._checked = True
            if isinstance(self.error, RequestEntityTooLarge):  # waitress's own limit: answered by the app too
                self.error, self.completed = None, False
                self._defer(too_large=True)
            elif not self.completed and self.error is None:  # a body is coming
                environ = self._environ()
                self._limit = self._gate.limit_for(environ)
                declared = None if self.chunked else self.content_length
                if (declared is not None and declared > self._limit) or self._gate.needs_sender_check(environ):
                    self._defer()
        elif self._limit is not None and not self.deferred and (
                isinstance(self.error, RequestEntityTooLarge)
                or (not self.completed and self.body_bytes_received > self._limit)):
            self.error, self.completed = None, False  # cut off: the app answers the 413
            self._defer(too_large=True)
        return consumed

    def _defer(self, too_large: bool = False) -> None:
        self.deferred = True
        self._expected_continue, self.expect_continue = self.expect_continue, False  # no "100 Continue" yet
        environ = self._environ()
        declared = None if self.chunked else self.content_length
        self._channel.server.add_task(_GateTask(self, environ, declared, too_large))

    def _environ(self) -> dict:
        environ = dict(self._channel.environ_base)
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

    def resume(self, answer: Answer | None) -> None:
        """In the I/O thread (a trigger thunk): send the answer, or read the body after all."""
        channel = self._channel
        if not self.deferred or channel.request is not self or not channel.connected:
            return  # the client went away meanwhile
        self.deferred = False
        if answer is not None:
            self.error = _AppAnswer(*answer)
            self.completed = True
            with channel.requests_lock:
                channel.request = None
                channel.requests.append(self)
                if len(channel.requests) == 1:
                    channel.server.add_task(channel)
            return
        self.expect_continue = self._expected_continue
        held, self._held = self._held, b""
        if held:
            channel.received(held)
        elif self.expect_continue and not channel.requests and not channel.sent_continue:
            with channel.requests_lock:
                channel.send_continue()


class _GateTask:
    """The gate's decision, run by one of waitress's worker threads (the app: token hash, database)."""

    def __init__(self, parser: GatedParser, environ: dict, declared: int | None, too_large: bool):
        self.parser, self.environ, self.declared, self.too_large = parser, environ, declared, too_large

    def service(self) -> None:
        gate = self.parser._gate
        try:
            answer = gate.decide(self.environ, self.declared, self.too_large)
        except Exception:  # noqa: BLE001  (the app logs its own errors; the request still gets an answer)
            gate.app.logger.exception("the body gate failed on %s", self.environ.get("PATH_INFO"))
            answer = _FAILED
        self.parser._channel.server.trigger.pull_trigger(functools.partial(self.parser.resume, answer))

    def cancel(self) -> None:  # the server is shutting down
        pass


class GatedChannel(HTTPChannel):
    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.environ_base = {"REMOTE_ADDR": str(addr[0]) if isinstance(addr, tuple) else "",
                             "SERVER_NAME": str(server.server_name), "SERVER_PORT": str(server.effective_port)}
        self.parser_class = functools.partial(GatedParser, channel=self)

    def readable(self):
        request = self.request
        return super().readable() and not (request is not None and getattr(request, "deferred", False))


class _Gated:
    """The app as waitress calls it: marks the environ as checked by the gate already."""

    def __init__(self, app: Flask):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable):
        environ[GATED] = True
        return self.app(environ, start_response)


def gate_waitress(server, app: Flask) -> None:
    """Make a waitress server (``waitress.create_server``'s, one socket or several) check bodies from
    their headers."""
    from waitress.server import BaseWSGIServer

    servers = [server] if isinstance(server, BaseWSGIServer) else [
        s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
    for one in servers:
        one.podium_gate = app.extensions["podium_gate"]
        one.channel_class = GatedChannel
        one.application = _Gated(app)


def gated_waitress_server(app: Flask, host: str, port: int, threads: int, connection_limit: int | None = None,
                          channel_timeout: int | None = None, **adjustments):
    """A waitress server for ``app`` with the gate and ``podium serve``'s limits (``CONNECTION_LIMIT``,
    ``CHANNEL_TIMEOUT`` from the app's config unless given)."""
    from waitress import create_server

    config = app.config
    largest = max(int(config["MAX_CONTENT_LENGTH"]), int(config["BODY_LIMIT_OTHER"]), int(config["BODY_LIMIT_SERVICE"]))
    server = create_server(app, host=host, port=port, threads=threads, ident="podium",
                           connection_limit=connection_limit or int(config["CONNECTION_LIMIT"]),
                           channel_timeout=channel_timeout or int(config["CHANNEL_TIMEOUT"]),
                           max_request_body_size=largest + 1, **adjustments)
    gate_waitress(server, app)
    return server
