"""Helpers for the Kaggle tests: a real ``podium serve``-equivalent server and the real ``kaggle`` command.

The official client is pointed at the server with ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (it then calls
``http://localhost/api/v1/...``) and ``HTTP_PROXY=http://127.0.0.1:PORT`` (absolute-form requests reach
our server). A ``NO_PROXY`` covering localhost would bypass the proxy, so it is cleared.
Imported by test modules; not a test module itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

KAGGLE = str(Path(sys.executable).with_name("kaggle"))


def kaggle_env(port: int, home: Path, username: str | None = None, key: str | None = None,
               token: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("KAGGLE_") and k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=f"http://127.0.0.1:{port}",
               http_proxy=f"http://127.0.0.1:{port}", HOME=str(home), KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
               PYTHONWARNINGS="ignore")
    if username is not None:
        env["KAGGLE_USERNAME"] = username
    if key is not None:
        env["KAGGLE_KEY"] = key
    if token is not None:
        env["KAGGLE_API_TOKEN"] = token
    return env


def run_kaggle(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real ``kaggle`` command as a subprocess."""
    assert shutil.which(KAGGLE) or Path(KAGGLE).is_file(), "the kaggle command is not installed (pip install kaggle six)"
    return subprocess.run([KAGGLE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def set_toml(path: Path, **values) -> None:
    """Replace ``key = ...`` lines of a competition.toml (keys given as max_csv_mb=..., daily_limit=...)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for key, value in values.items():
        lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_toml(path: Path, *lines: str) -> None:
    """Add top-level ``key = value`` lines to a competition.toml (before its first [table])."""
    text = path.read_text(encoding="utf-8").splitlines()
    first_table = next((i for i, line in enumerate(text) if line.startswith("[")), len(text))
    path.write_text("\n".join(text[:first_table] + list(lines) + text[first_table:]) + "\n", encoding="utf-8")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
