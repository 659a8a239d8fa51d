"""``podium backup`` and ``podium restore``: one archive with the database, the stored submissions
and the instance's secrets, safe to take while the server runs.

The archive (a gzipped tar) holds:

* ``database/podium.sqlite3`` (SQLite's online backup API: one consistent copy of every page, taken
  while the server keeps writing), or ``database/podium.dump`` (``pg_dump --format=custom`` run on a
  snapshot exported from a repeatable-read transaction);
* ``submissions/<team>/<sha256>.<ext>``: exactly the stored files that the database snapshot's
  submissions name, each checked against the sha256 in its row. Uploads are stored before their
  row is written and never change afterwards, so every row of the snapshot has its file, and files
  of uploads that finish after the snapshot are left out with their rows;
* ``instance/<name>``: the instance folder's secrets (``secret_key``, ``admin_token``,
  ``worker_token``: sessions and tokens keep working after a restore);
* ``manifest.json`` (written last): the format, the database's kind, schema revision and row
  counts, and the size and SHA-256 of every other member.

The archive is written to a temporary file beside ``--out`` and renamed into place when complete.
``podium restore`` checks every member against the manifest before it writes anything, refuses a
non-empty instance folder (or a database with tables) without ``--force``, and can restore a
SQLite backup into PostgreSQL (the rows are copied by ``leaderboard.dbcopy``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click
import sqlalchemy as sa

from harness.errors import PodiumError
from leaderboard.recording import PREDICTIONS_SUFFIX

FORMAT = "podium-backup"
FORMAT_VERSION = 1
TABLES = ("team", "submission", "scoring_job", "setting")
DB_FILES = {"podium.sqlite3", "podium.sqlite3-wal", "podium.sqlite3-shm", "podium.sqlite3-journal"}
SECRETS = ("secret_key", "admin_token", "worker_token")
CHUNK = 1024 * 1024


class BackupError(PodiumError):
    """A backup that cannot be written, or an archive that cannot be restored."""


def _sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore``: on PATH, else the newest Debian ``postgresql-client`` one."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise BackupError(f"{name} is needed for a PostgreSQL database: install the PostgreSQL client "
                          "(Debian: apt-get install postgresql-client).")
    return found


def _libpq(url: sa.URL) -> tuple[str, dict]:
    """A libpq connection URI for ``url`` (without its password) and the environment carrying it."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


@dataclass
class Snapshot:
    kind: str  # "sqlite" | "postgresql"
    path: Path  # the database file or dump
    stored: list[tuple[str, str]]  # (stored_path, sha256) of every submission in the snapshot
    counts: dict[str, int]
    revision: str | None


def _rows_and_counts(conn: sa.Connection) -> tuple[list[tuple[str, str]], dict[str, int], str | None]:
    names = set(sa.inspect(conn).get_table_names())
    missing = [t for t in TABLES if t not in names]
    if missing:
        raise BackupError(f"The database has no podium tables ({', '.join(missing)} missing): nothing to back up.")
    stored = [tuple(r) for r in conn.execute(sa.text("SELECT stored_path, sha256 FROM submission ORDER BY id"))]
    counts = {t: conn.scalar(sa.text(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}
    revision = conn.scalar(sa.text("SELECT version_num FROM alembic_version")) if "alembic_version" in names else None
    return stored, counts, revision


def _snapshot_sqlite(url: sa.URL, work: Path) -> Snapshot:
    source = Path(url.database or "")
    if not source.is_file():
        raise BackupError(f"There is no SQLite database at {source}; for an instance on PostgreSQL, give its "
                          "--db postgresql+psycopg://... URL.")
    target = work / "podium.sqlite3"
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read transaction, one consistent state
        dst.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal beside it
    finally:
        dst.close()
        src.close()
    engine = sa.create_engine(f"sqlite:///{target}")
    try:
        with engine.connect() as conn:
            stored, counts, revision = _rows_and_counts(conn)
    finally:
        engine.dispose()
    return Snapshot("sqlite", target, stored, counts, revision)


def _snapshot_postgresql(url: sa.URL, work: Path) -> Snapshot:
    pg_dump = _pg_tool("pg_dump")
    target = work / "podium.dump"
    engine = sa.create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn:  # the transaction stays open while pg_dump reads its snapshot
            snapshot_id = conn.scalar(sa.text("SELECT pg_export_snapshot()"))
            stored, counts, revision = _rows_and_counts(conn)
            uri, env = _libpq(url)
            done = subprocess.run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                                   f"--snapshot={snapshot_id}", "--file", str(target), "--dbname", uri],
                                  capture_output=True, text=True, env=env)
            conn.rollback()
    finally:
        engine.dispose()
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    return Snapshot("postgresql", target, stored, counts, revision)


def create_backup(instance: Path, db_url: str, out: Path, progress: bool | None = None) -> dict:
    """Write the backup archive of ``instance`` (its database at ``db_url``) to ``out``; the manifest."""
    from tqdm import tqdm

    instance = instance.resolve()
    url = sa.make_url(db_url)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    storage = instance / "submissions"
    with tempfile.TemporaryDirectory(prefix=".podium-backup-", dir=out.parent) as tmp:
        work = Path(tmp)
        if url.get_backend_name() == "sqlite":
            snap = _snapshot_sqlite(url, work)
        elif url.get_backend_name() == "postgresql":
            snap = _snapshot_postgresql(url, work)
        else:
            raise BackupError(f"Backups support SQLite and PostgreSQL, not {url.get_backend_name()}.")
        entries: list[dict] = []
        partial = work / "archive.tar.gz"
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            def add(path: Path, name: str, expect: str | None = None) -> None:
                digest, size = _sha256_file(path)
                if expect is not None and digest != expect:
                    raise BackupError(f"The stored file {path} does not match the sha256 in its database row "
                                      f"({digest} != {expect}); the storage is damaged.")
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
                entries.append({"path": name, "size": size, "sha256": digest})

            add(snap.path, f"database/{snap.path.name}")
            for name in SECRETS:
                if (instance / name).is_file():
                    add(instance / name, f"instance/{name}")
            unique = sorted(set(snap.stored))
            with tqdm(unique, desc="stored files", unit="file", disable=None if progress is None else not progress) as bar:
                for relative, sha in bar:
                    path = storage / relative
                    if not path.is_file():
                        raise BackupError(f"The stored file of a submission is missing: {path}.")
                    add(path, f"submissions/{relative}", expect=sha)
                    kept = storage / (relative + PREDICTIONS_SUFFIX)  # a checkpoint's predictions (the honest board)
                    if kept.is_file():
                        add(kept, f"submissions/{relative}{PREDICTIONS_SUFFIX}")
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "podium_version": _podium_version(),
                "database": {"kind": snap.kind, "file": f"database/{snap.path.name}", "schema_revision": snap.revision,
                             "counts": snap.counts},
                "files": entries,
            }
            data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            info.mtime = int(dt.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(data))
        os.replace(partial, out)
    return manifest


def _podium_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("podium")
    except PackageNotFoundError:
        return "unknown"


# --- restore ------------------------------------------------------------------------------------

def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in (
            "database", "instance", "submissions", "manifest.json"):
        raise BackupError(f"The archive has an unexpected member {name!r}; it is not a podium backup.")
    return path


def read_verified(archive: Path, staging: Path) -> dict:
    """Extract ``archive`` into ``staging``, checking every member against the manifest; the manifest."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a readable backup archive: {exc}") from None
    with tar:
        try:
            manifest = json.loads(tar.extractfile("manifest.json").read())
        except (KeyError, AttributeError, ValueError, tarfile.TarError, OSError):
            raise BackupError(f"{archive} has no readable manifest.json; it is not a podium backup.") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise BackupError(f"{archive} is not a podium backup of format {FORMAT_VERSION}.")
        expected = {f["path"]: f for f in manifest["files"]}
        seen = set()
        try:
            for member in tar:
                if member.name == "manifest.json":
                    continue
                rel = _safe_name(member.name)
                if not member.isfile():
                    raise BackupError(f"The archive member {member.name!r} is not a plain file.")
                entry = expected.get(member.name)
                if entry is None:
                    raise BackupError(f"The archive member {member.name!r} is not in its manifest.")
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
                    raise BackupError(f"{member.name} does not match its checksum in the manifest: the archive is "
                                      "damaged. Nothing was restored.")
                seen.add(member.name)
        except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
            raise BackupError(f"{archive} is damaged ({exc}). Nothing was restored.") from None
        missing = sorted(set(expected) - seen)
        if missing:
            raise BackupError(f"The archive lacks {len(missing)} file(s) its manifest lists (first: {missing[0]}). "
                              "Nothing was restored.")
    return manifest


def zlib_error():
    import zlib

    return zlib.error


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def _drop_all(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        with engine.begin() as conn:
            metadata.reflect(bind=conn)
            metadata.drop_all(conn)
    finally:
        engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.scalar(sa.text(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}
    finally:
        engine.dispose()


def restore_backup(archive: Path, instance: Path, db_url: str | None, force: bool) -> dict:
    """Restore ``archive`` into ``instance`` (and ``db_url``, default the instance's SQLite file)."""
    instance = instance.resolve()
    if instance.exists() and not instance.is_dir():
        raise BackupError(f"{instance} is not a folder.")
    if instance.is_dir() and any(instance.iterdir()) and not force:
        raise BackupError(f"The instance folder {instance} is not empty; restore into a new folder, or give "
                          "--force to replace what is there.")
    default_db = f"sqlite:///{instance / 'podium.sqlite3'}"
    url = sa.make_url(db_url or default_db)
    instance.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".podium-restore-", dir=instance.parent) as tmp:
        staging = Path(tmp)
        manifest = read_verified(archive, staging)
        kind = manifest["database"]["kind"]
        dump = staging / manifest["database"]["file"]
        backend = url.get_backend_name()
        if kind == "postgresql" and backend != "postgresql":
            raise BackupError("This backup is of a PostgreSQL database: give --db postgresql+psycopg://... "
                              "(an empty database) to restore it.")
        if backend == "postgresql":
            tables = _tables(url.render_as_string(hide_password=False))
            if tables and not force:
                raise BackupError(f"The database {url.render_as_string(hide_password=True)} has tables already; "
                                  "restore into an empty database, or give --force to replace them.")
        # Everything checked: now write.
        if force:
            for name in DB_FILES | set(SECRETS):
                (instance / name).unlink(missing_ok=True)
            shutil.rmtree(instance / "submissions", ignore_errors=True)
        if backend == "sqlite":
            target = Path(url.database or "")
            if target.exists() and not force:
                raise BackupError(f"{target} exists; give --force to replace it.")
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind != "sqlite":  # unreachable: refused above
                raise BackupError("A PostgreSQL backup restores into PostgreSQL only.")
            shutil.copyfile(dump, target)
        else:
            full = url.render_as_string(hide_password=False)
            if force:
                _drop_all(full)
            if kind == "sqlite":
                from leaderboard.dbcopy import copy_database

                copy_database(f"sqlite:///{dump}", full)
            else:
                uri, env = _libpq(url)
                done = subprocess.run([_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                                       "--dbname", uri, str(dump)], capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
        for name in SECRETS:
            if (staging / "instance" / name).is_file():
                os.replace(staging / "instance" / name, instance / name)
                os.chmod(instance / name, 0o600)
        if (staging / "submissions").is_dir():
            os.replace(staging / "submissions", instance / "submissions")
        for path in (instance / "submissions").rglob("*") if (instance / "submissions").is_dir() else ():
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
    restored = _counts(url.render_as_string(hide_password=False))
    if restored != manifest["database"]["counts"]:
        raise BackupError(f"The restored database's row counts {restored} differ from the backup's "
                          f"{manifest['database']['counts']}.")
    return manifest


# --- the commands ---------------------------------------------------------------------------------

def _instance_options(f):
    f = click.option("--db", default=None, help="SQLAlchemy database URL (default: SQLite in the instance folder).")(f)
    f = click.option("--instance", type=click.Path(file_okay=False), default="instance", show_default=True,
                     help="Instance folder (database, secrets, stored submissions).")(f)
    return f


@click.command("backup")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The archive to write (e.g. podium-2026-12-04.tar.gz); replaced when complete.")
@_instance_options
def backup_command(out: str, instance: str, db: str | None) -> int:
    """Write a consistent backup (database, stored submissions, secrets) while the server runs."""
    folder = Path(instance)
    if not folder.is_dir():
        raise BackupError(f"There is no instance folder at {folder}.")
    manifest = create_backup(folder, db or f"sqlite:///{folder.resolve() / 'podium.sqlite3'}", Path(out))
    counts = manifest["database"]["counts"]
    click.echo(f"backup written: {out} ({manifest['database']['kind']}, schema "
               f"{manifest['database']['schema_revision'] or '0.1'}, {counts['team']} teams, "
               f"{counts['submission']} submissions, {len(manifest['files'])} files)")
    return 0


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@_instance_options
@click.option("--force", is_flag=True, help="Replace a non-empty instance folder / a database with tables.")
def restore_command(archive: str, instance: str, db: str | None, force: bool) -> int:
    """Restore a backup into an instance folder (and database); checks every checksum first."""
    manifest = restore_backup(Path(archive), Path(instance), db, force)
    counts = manifest["database"]["counts"]
    click.echo(f"restored into {instance}: {counts['team']} teams, {counts['submission']} submissions, "
               f"schema {manifest['database']['schema_revision'] or '0.1'}")
    click.echo("If podium is newer than the backup, run `podium db upgrade` before `podium serve`.")
    return 0
