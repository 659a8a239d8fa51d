"""A worker's temporary folder, and the removal of those left by workers that were killed.

Each worker works in ``<tmp>/podium-worker-<pid>-<random>``; the inference folders of its jobs
(``podium-infer-*``) are made inside it. A worker killed with SIGKILL cannot remove its folder
(downloaded checkpoints, test images), so every worker, when it starts, removes the folders whose
process is gone.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

log = logging.getLogger("podium.worker")
FOLDER = re.compile(r"podium-worker-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_folders(base: Path) -> list[Path]:
    """Remove this user's worker folders in ``base`` whose worker process no longer runs."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            match = FOLDER.match(entry.name)
            if not match or not entry.is_dir() or entry.is_symlink():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid != os.getuid() or _alive(int(match.group(1))):
                    continue
                shutil.rmtree(entry)
                removed.append(entry)
                log.info("removed %s, left by a worker that was killed", entry)
    return removed


@contextlib.contextmanager
def worker_scratch() -> Iterator[str]:
    """This worker's folder; the temporary folders of its jobs go inside it while it runs."""
    base = Path(tempfile.gettempdir())
    remove_stale_folders(base)
    with tempfile.TemporaryDirectory(prefix=f"podium-worker-{os.getpid()}-") as tmp:
        previous = tempfile.tempdir
        tempfile.tempdir = tmp
        try:
            yield tmp
        finally:
            tempfile.tempdir = previous
