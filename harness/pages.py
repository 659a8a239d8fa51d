"""What the competition's Evaluation, Rules and Data pages say, derived from the competition alone.

Flask-free: the board renders these (the Markdown through the same Markdown library and sanitiser
as description.md). Nothing here reads private/: the public file list walks public/ only and
never follows a link out of it, and no text names a hidden label or the split of a row.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from harness.competition import Competition
from harness.metrics import METRICS, get_metric

HASH_CHUNK = 1 << 20


def _md(text: str) -> str:
    """An organizer's string made literal in Markdown (no emphasis, links or HTML from it)."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~" else ch for ch in text)


def _mb(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:g} MiB"


def _sample_lines(competition: Competition, count: int = 4) -> list[str]:
    try:
        with competition.sample_submission_path.open(encoding="utf-8") as fh:
            return [line.rstrip("\n") for _, line in zip(range(count), fh)]
    except OSError:
        return []


def _also_shown(primary: str) -> str:
    """The other registered metrics by their table headers: "Accuracy, Precision (macro) and F1 (macro)"."""
    labels = [m.label for name, m in METRICS.items() if name != primary]
    if len(labels) <= 1:
        return "".join(labels) or "the score"
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def evaluation_markdown(competition: Competition) -> str:
    """The Evaluation page: the metric, the public/private split, the interval, the CSV and checkpoint rules."""
    c, et, lim = competition, competition.eval_transform, competition.limits
    public = round(c.public_fraction * 100)
    metric = get_metric(c.primary_metric)
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    parts = [
        "## Metric",
        "",
        f"Submissions are ranked by {metric.description} ({direction}). The submission page also shows "
        f"{_also_shown(c.primary_metric)}, a per-class table and the confusion matrix.",
        "",
        "## Public and private leaderboards",
        "",
        f"The test set is split once, stratified by class: {public} % of its images score the **public** leaderboard, "
        f"shown while the competition runs; the other {100 - public} % score the **private** leaderboard, hidden until the "
        "organizer reveals it at the end. The private leaderboard decides the final ranking, so fitting the public "
        "score does not pay. Which image belongs to which part is never shown.",
        "",
        "## Confidence interval",
        "",
        "Each score comes with a 95 % interval: the 2.5th and 97.5th percentiles of the metric over 1,000 bootstrap "
        "resamples of the scored test images. Two submissions whose intervals overlap widely may not really differ.",
        "",
    ]
    if c.hidden_test:
        parts += [
            "## Submissions: model checkpoints only",
            "",
            "The test images are **hidden**: they are not among the data files, and prediction CSVs are refused. "
            "Submit a model checkpoint; the organizer's machines run it on the test images and score its predictions.",
            "",
        ]
    else:
        sample = _sample_lines(c)
        parts += [
            "## Prediction CSV",
            "",
            "A CSV file with the header `id,label` and one row per test image: every id of the test set exactly once, "
            "in any order. `label` is a class name or its index (0 for the first class). The sample submission "
            f"shows the format (CSV files up to {_mb(lim.max_csv_bytes)}):",
            "",
            "```",
            *sample,
            "```",
            "",
        ]
    archs = ", ".join(f"`{a}`" for a in c.allowed_archs) if c.allowed_archs else "any classification model of torchvision or timm"
    parts += [
        "## Model checkpoint",
        "",
        "One `.safetensors` file: the state dict of a model from torchvision's or timm's registry, with its model "
        "card in the file's metadata (`library`, `arch`, `num_classes`, and optionally `input_size`, `mean`, `std`). "
        "`podium pack model.pt --library torchvision --arch resnet18 -o model.safetensors` writes one from a state "
        "dict saved with `torch.save`; pickled files are never loaded.",
        "",
        f"- Architectures: {archs}; `num_classes` must be {c.num_classes}.",
        f"- Input: each test image resized to `input_size` x `input_size` (default {et.size}, allowed "
        f"{lim.min_input_size} to {lim.max_input_size}), scaled to [0, 1], then normalised with `mean` and `std` "
        f"(default {list(et.mean)} and {list(et.std)}).",
        f"- Limits: {_mb(lim.max_checkpoint_bytes)} per file, {lim.inference_timeout_s:g} seconds and "
        f"{lim.inference_memory_bytes / 2**30:g} GiB of memory to predict the whole test set, no network.",
        "- The prediction for an image is the class with the highest output; a NaN or infinite output refuses the file.",
        "",
    ]
    return "\n".join(parts)


def rules_markdown(competition: Competition) -> str:
    """The Rules page: daily limit, final selections, deadline, limits."""
    c = competition
    deadline = (
        f"The deadline is **{c.deadline.strftime('%Y-%m-%d %H:%M UTC')}**: submissions after it are kept and scored "
        "but not ranked."
        if c.deadline is not None
        else "This competition has no deadline set; the organizer closes it by revealing the private leaderboard."
    )
    kinds = "model checkpoints (prediction CSVs are refused: the test images are hidden)" if c.hidden_test else (
        "prediction CSVs or model checkpoints"
    )
    limit = (
        f"Each team may submit **{c.daily_limit}** time{'s' if c.daily_limit != 1 else ''} per UTC day; a refused "
        "file counts, a failure on the scoring side does not."
        if c.daily_limit
        else "Submissions are closed: the daily limit is 0."
    )
    finals = (
        f"Each team picks up to **{c.final_selections}** final submission{'s' if c.final_selections != 1 else ''}; "
        "without a choice, its best public ones count. Its best private score among them is its final score."
        if c.final_selections
        else "No final submissions are picked (final_selections is 0), so the private leaderboard ranks no one."
    )
    return "\n".join([
        f"# Rules of {_md(c.title)}",
        "",
        f"- Submissions: {kinds}.",
        f"- {limit}",
        f"- {finals}",
        f"- {deadline}",
        "- Ties are broken in favour of the earlier submission.",
        f"- Files: CSVs up to {_mb(c.limits.max_csv_bytes)}, checkpoints up to {_mb(c.limits.max_checkpoint_bytes)}.",
        "- Train only on the data given here; the test labels are not yours to find.",
        "",
    ])


@dataclass(frozen=True)
class PublicFile:
    path: str  # relative to public/, with forward slashes
    size: int
    sha256: str


@dataclass(frozen=True)
class PublicFolder:
    """A folder directly under public/ (an image-folders competition's ``train/``, ``test/``)."""

    path: str
    files: int
    size: int


@dataclass(frozen=True)
class PublicListing:
    """public/ as the Data page shows it: every file, the files directly in it, and its folders."""

    files: tuple[PublicFile, ...]  # every file, sorted by path (SHA256SUMS)
    top: tuple[PublicFile, ...]  # the files directly in public/ (a row each on the page)
    folders: tuple[PublicFolder, ...]  # the folders directly in public/ (a row each: count and size)
    size: int  # bytes in all
    stamp: tuple  # (path, inode, mtime) of every folder and (path, inode, size, mtime) of the top files
    made: float  # time.monotonic() when it was read


LISTING_FILE = ".public-files.tsv"  # at the competition's root: `podium init images` hashed public/ for the board
LISTING_HEADER = "# podium: the files under public/ when this was written: sha256, size, path (tab-separated)\n"
REVALIDATE_S = 600.0  # a listing older than this is read again (a file rewritten in place inside a folder)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan_public(public: Path) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, os.stat_result]]]:
    """(files, folders) under ``public``, each (relative path, lstat), public itself the folder "".

    Hidden names, links (a link could point into private/) and anything that is neither a regular
    file nor a folder are left out, and nothing under a left-out folder is read.
    """
    files: list[tuple[str, os.stat_result]] = []
    folders: list[tuple[str, os.stat_result]] = [("", os.lstat(public))]
    todo = [("", str(public))]
    while todo:
        prefix, path = todo.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                stat = entry.stat(follow_symlinks=False)
                relative = prefix + entry.name
                if S_ISDIR(stat.st_mode):
                    folders.append((relative, stat))
                    todo.append((relative + "/", entry.path))
                elif S_ISREG(stat.st_mode):
                    files.append((relative, stat))
    files.sort(key=lambda f: f[0])
    return files, folders


def _digests(public: Path, files, cache: dict | None, seeds: tuple[int, dict] | None = None) -> list[PublicFile]:
    """PublicFile for each (relative, stat): the digest from ``cache`` ((path, size, mtime_ns) ->
    sha256), else from ``seeds`` (``read_listing``), else hashed now (and put in ``cache``)."""
    written, seeded = seeds if seeds is not None else (0, {})
    out = []
    for relative, stat in files:
        key = (relative, stat.st_size, stat.st_mtime_ns)
        digest = cache.get(key) if cache is not None else None
        if digest is None:
            seed = seeded.get(relative)
            if seed is not None and seed[0] == stat.st_size and stat.st_mtime_ns <= written:
                digest = seed[1]  # the file has not changed since the listing was written
            else:
                digest = sha256_file(public / relative)
            if cache is not None:
                cache[key] = digest
        out.append(PublicFile(relative, stat.st_size, digest))
    return out


def public_files(competition: Competition, cache: dict | None = None) -> list[PublicFile]:
    """Every file under public/ with its size and SHA-256, sorted by path.

    Hidden files and anything that is not a regular file inside public/ (a link pointing out of it,
    e.g. into private/) are left out. ``cache`` (a dict the caller keeps) maps
    (path, size, mtime_ns) to the digest, so a page view re-hashes only what changed.
    """
    public = (competition.root / "public").resolve()
    if not public.is_dir():
        return []
    return _digests(public, scan_public(public)[0], cache)


def write_listing(directory: Path, known: dict[str, tuple[int, int, str]] | None = None) -> None:
    """``LISTING_FILE`` for the competition in ``directory``: every public file's size and digest, so
    that the board need not hash them. Without ``known`` every file under public/ is hashed here.
    With it, ``known`` maps every file in public/'s folders to the (size, mtime_ns, sha256) its
    writer measured (the images: the workers that wrote them), and only the files directly in
    public/ (the manifests) are read. It holds no time stamp, so the same inputs still give the
    same bytes: an entry counts while its file is no newer than the listing and has that size.
    """
    public = Path(directory) / "public"
    if known is None:
        listed = _digests(public, scan_public(public)[0], None)
    else:
        with os.scandir(public) as entries:
            tops = sorted((e.name, e.stat(follow_symlinks=False)) for e in entries
                          if not e.name.startswith(".") and e.is_file(follow_symlinks=False))
        listed = sorted(_digests(public, tops, None) + [PublicFile(path, size, digest) for path, (size, _, digest)
                                                         in known.items() if "/" in path], key=lambda f: f.path)
    lines = [LISTING_HEADER] + [f"{f.sha256}\t{f.size}\t{f.path}\n" for f in listed]
    temporary = Path(directory) / (LISTING_FILE + ".tmp")
    temporary.write_text("".join(lines), encoding="utf-8")
    os.replace(temporary, Path(directory) / LISTING_FILE)


def read_listing(directory: Path) -> tuple[int, dict[str, tuple[int, str]]]:
    """(the listing's modification time in ns, path -> (size, sha256)) from ``write_listing``'s file;
    (0, {}) when there is none. A stale or damaged listing costs a re-hash: an entry is only used
    for a file of that size that is no newer than the listing. (A file replaced by another of the
    same size whose older modification time was kept, as ``cp -p`` or ``rsync -t`` keep it, would
    keep its old digest: run ``podium init`` again, or touch the file, after such a copy.)"""
    out: dict[str, tuple[int, str]] = {}
    path = Path(directory) / LISTING_FILE
    try:
        written = os.stat(path).st_mtime_ns
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t", 2)
                if len(parts) == 3 and len(parts[0]) == 64 and parts[1].isdigit():
                    out[parts[2]] = (int(parts[1]), parts[0])
    except (OSError, UnicodeDecodeError):
        return 0, {}
    return written, out


def _stamp(files, folders) -> tuple:
    tops = tuple((p, s.st_ino, s.st_size, s.st_mtime_ns) for p, s in files if "/" not in p)
    return tuple((p, s.st_ino, s.st_mtime_ns) for p, s in sorted(folders, key=lambda f: f[0])), tops


def _still_current(public: Path, listing: PublicListing) -> bool:
    """True while no folder of the listing and no file directly in public/ has changed.

    A file added, removed or renamed changes its folder's modification time; a file directly in
    public/ (the manifests, the sample submission) is checked itself. That is a stat per folder and
    per top file, not per image. A file rewritten in place inside a folder is noticed when the
    listing is older than ``REVALIDATE_S``.
    """
    if time.monotonic() - listing.made > REVALIDATE_S:
        return False
    folders, tops = listing.stamp
    try:
        for path, ino, mtime in folders:
            stat = os.lstat(public / path) if path else os.lstat(public)
            if not S_ISDIR(stat.st_mode) or (stat.st_ino, stat.st_mtime_ns) != (ino, mtime):
                return False
        for path, ino, size, mtime in tops:
            stat = os.lstat(public / path)
            if not S_ISREG(stat.st_mode) or (stat.st_ino, stat.st_size, stat.st_mtime_ns) != (ino, size, mtime):
                return False
    except OSError:
        return False
    return True


def public_listing(competition: Competition, state: dict) -> PublicListing:
    """The Data page's listing of public/, kept in ``state`` (a dict the caller keeps per competition).

    Read again only when ``_still_current`` says something changed; digests are cached per (path,
    size, mtime), seeded from ``LISTING_FILE`` when ``podium init`` wrote one, so a view of a
    60,000-image competition stats a dozen folders and hashes nothing.
    """
    public = (competition.root / "public").resolve()
    listing = state.get("listing")
    if listing is not None and state.get("public") == public and _still_current(public, listing):
        return listing
    if state.get("public") != public:
        state.clear()
        state["public"] = public
        state["digests"] = {}
        state["seeds"] = read_listing(competition.root)
    if not public.is_dir():
        listing = PublicListing((), (), (), 0, ((), ()), time.monotonic())
        state["listing"] = listing
        return listing
    made = time.monotonic()
    files, folders = scan_public(public)
    listed = _digests(public, files, state["digests"], state["seeds"])
    live = {(f.path, f.size, stats.st_mtime_ns) for f, (_, stats) in zip(listed, files)}
    for key in [k for k in state["digests"] if k not in live]:  # forget what is gone
        del state["digests"][key]
    counts: dict[str, list[int]] = {p: [0, 0] for p, _ in folders if p and "/" not in p}
    for f in listed:
        head = f.path.split("/", 1)[0]
        if head in counts and "/" in f.path:
            counts[head][0] += 1
            counts[head][1] += f.size
    listing = PublicListing(
        files=tuple(listed),
        top=tuple(f for f in listed if "/" not in f.path),
        folders=tuple(PublicFolder(p, n, size) for p, (n, size) in sorted(counts.items())),
        size=sum(f.size for f in listed),
        stamp=_stamp(files, folders),
        made=made,
    )
    state["listing"] = listing
    return listing
