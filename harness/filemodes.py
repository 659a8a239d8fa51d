"""Private files stay private on a shared machine: the answers (``private/``), the leaderboard's
database, secrets and stored submissions are readable by their owner only (folders 0700, files 0600).

``podium init`` locks ``private/`` down; ``podium serve``, ``podium team add`` and ``podium worker``
run under umask 077 so that what they create is private, and ``podium serve`` warns about private
files that others can already read.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

PRIVATE_UMASK = 0o077


def use_private_umask() -> int:
    """From now on, this process creates folders 0700 and files 0600; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def make_private(path: Path) -> None:
    """``path`` and everything under it: folders 0700, files 0600."""
    path = Path(path)
    if path.is_dir():
        path.chmod(0o700)
        for folder, dirs, files in os.walk(path):
            for name in dirs:
                (Path(folder) / name).chmod(0o700)
            for name in files:
                (Path(folder) / name).chmod(0o600)
    elif path.exists():
        path.chmod(0o600)


def exposed(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """The existing paths (and, for a folder, the files directly in it) that others can read, with
    their mode as ``0644``."""
    found = []
    for path in paths:
        path = Path(path)
        candidates = [path] + (sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [])
        for candidate in candidates:
            try:
                mode = stat.S_IMODE(candidate.stat().st_mode)
            except OSError:
                continue
            if mode & 0o077:
                found.append((candidate, f"{mode:04o}"))
    return found
