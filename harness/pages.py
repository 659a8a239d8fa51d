"""What the competition's Evaluation, Rules and Data pages say, derived from the competition alone.

Flask-free: the board renders these (the Markdown through the same Markdown library and sanitiser
as description.md). Nothing here reads private/: the public file list walks public/ only and
never follows a link out of it, and no text names a hidden label or the split of a row.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def public_files(competition: Competition, cache: dict | None = None) -> list[PublicFile]:
    """Every file under public/ with its size and SHA-256, sorted by path.

    Hidden files and anything that is not a regular file inside public/ (a link pointing out of it,
    e.g. into private/) are left out. ``cache`` (a dict the caller keeps) maps
    (path, size, mtime_ns) to the digest, so a page view re-hashes only what changed.
    """
    public = (competition.root / "public").resolve()
    out: list[PublicFile] = []
    if not public.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(public):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d)))
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            stat = path.stat()
            relative = path.relative_to(public).as_posix()
            key = (relative, stat.st_size, stat.st_mtime_ns)
            digest = cache.get(key) if cache is not None else None
            if digest is None:
                digest = sha256_file(path)
                if cache is not None:
                    cache[key] = digest
            out.append(PublicFile(relative, stat.st_size, digest))
    return sorted(out, key=lambda f: f.path)
