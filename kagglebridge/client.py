"""The official client, imported only here and only when a command needs it.

``import kaggle`` authenticates at import time and, without credentials, prints the library's help
and calls ``exit``; so credentials are looked for first and their absence is podium's own message.
Errors the client raises (HTTP errors carrying the server's message, connection errors) become
``PodiumError``s.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from harness.errors import PodiumError

NO_CREDENTIALS = (
    "No Kaggle credentials found. Set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put "
    "kaggle.json in ~/.kaggle (or in $KAGGLE_CONFIG_DIR); create a token at https://www.kaggle.com/settings/api."
)


def has_credentials(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN"):
        return True
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    config_dir = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    if (config_dir / "kaggle.json").is_file():
        return True
    home = Path.home() / ".kaggle"
    return any((home / name).is_file() for name in ("access_token", "access_token.txt", "credentials.json"))


def kaggle_api():
    """An authenticated ``KaggleApi``, or a ``PodiumError`` saying what to set."""
    if not has_credentials():
        raise PodiumError(NO_CREDENTIALS)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            import kaggle  # authenticates now (and swallows its own exit when it cannot)
    except ImportError as exc:
        raise PodiumError(f"The kaggle client is not installed ({exc}); pip install 'kaggle>=2.2' six.") from None
    api = kaggle.api
    if not getattr(api, "_authenticated", False):
        raise PodiumError("Kaggle did not accept these credentials (KAGGLE_USERNAME/KAGGLE_KEY, KAGGLE_API_TOKEN "
                          "or kaggle.json); check them at https://www.kaggle.com/settings/api.")
    return api


@contextlib.contextmanager
def kaggle_errors(what: str):
    """Turn the client's errors into a ``PodiumError`` naming ``what`` was being done."""
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        message = str(exc).strip() or "no message"
        if status == 401:
            message = "Kaggle refused the credentials (401). " + message
        raise PodiumError(f"{what}: Kaggle answered {status}: {message}") from None
    except requests.RequestException as exc:
        raise PodiumError(f"{what}: Kaggle could not be reached ({type(exc).__name__}: {exc}).") from None
