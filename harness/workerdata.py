"""The test data a scoring worker needs, as one archive: for both data formats, hidden or not.

A worker gets ``competition.toml`` and the test images, never ``solution.csv``. In the archive the
test data is always under ``public/`` (the worker's copy has no private/; ``Competition.test_dir``
falls back to public/ when private/ holds no test set), so a worker scores a copy with the same
``predict_checkpoint`` as the organizer's machine, streaming image folders a batch at a time:

    npz:            competition.toml, public/test.npz
    image-folders:  competition.toml, public/test.csv, public/test/<id>.<ext>

Files are stored, not compressed (JPEG and npz gain nothing), and written one at a time.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from harness.competition import Competition, load_competition
from harness.errors import CompetitionError
from harness.imagefolder import held_out_image_files


def worker_data_members(competition: Competition) -> list[tuple[Path, str]]:
    """(file on disk, name in the archive) for everything a worker needs, the settings first."""
    members = [(competition.root / "competition.toml", "competition.toml")]
    if competition.folders:
        members.append((competition.test_manifest_path, "public/test.csv"))
        _ids, paths = held_out_image_files(competition)
        base = competition.test_manifest_path.parent
        members += [(p, "public/" + p.relative_to(base).as_posix()) for p in paths]
    else:
        members.append((competition.test_path, "public/test.npz"))
    return members


def write_worker_data_zip(competition: Competition, target: str | Path) -> Path:
    """Write the worker archive to ``target`` (through a temporary file renamed at the end)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path, name in worker_data_members(competition):
                zf.write(path, name)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _allowed(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "\\" in name:
        return False
    return name in ("competition.toml", "public/test.npz", "public/test.csv") or (
        len(parts) == 3 and parts[:2] == ("public", "test")
    )


def extract_worker_data(archive: str | Path, directory: str | Path) -> Competition:
    """Unpack a worker archive into ``directory`` (made beside and renamed) and load it."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".test-data-"))
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            bad = [n for n in names if not _allowed(n)]
            if bad or "competition.toml" not in names:
                raise CompetitionError(f"unexpected test-data archive contents: {sorted(bad)[:5] or 'no competition.toml'}")
            zf.extractall(staging)
        os.rename(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_competition(directory)
