"""``podium init kaggle``: a competition's files downloaded through the client, then built or described.

Kaggle never gives out a competition's test labels, so the labelled training data is the only thing a
podium competition can be scored on: the built competition holds out a stratified share of it
(``--holdout``, default 20 %) as its test set, split public/private like ``podium init``.

Layouts:

- ``train.npz`` with ``images`` (uint8, N x H x W x 3) and ``labels`` (integers): podium's own data
  format (what ``podium kaggle export`` uploads, what a podium server serves): built. Class names come
  from ``classes.csv`` (index,name) when the files have one, else the label numbers.
- a CSV of image ids and labels beside a folder of images (the usual Kaggle image layout): detected and
  described. Building it is ``podium init images``' job; without it in this installation the command
  says what it found and where the files are, and builds nothing.
- anything else: what was found, and nothing built.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from harness.competition import USAGES, Competition, load_competition
from harness.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ID_COLUMNS = ("id", "image_id", "image", "file", "filename", "file_name", "img", "path", "image_name")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")


def download(slug: str, folder: Path) -> Path:
    """Every data file of ``slug``, downloaded and unzipped into ``folder``."""
    from kagglebridge.client import kaggle_api, kaggle_errors

    api = kaggle_api()
    folder.mkdir(parents=True, exist_ok=True)
    with kaggle_errors(f"downloading the files of {slug}"):
        api.competition_download_files(slug, path=str(folder), force=True, quiet=True, unzip=True)
    return folder


def _npz_dataset(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "images" not in npz.files or "labels" not in npz.files:
                return None
            images, labels = npz["images"], npz["labels"]
    except (OSError, ValueError):
        return None
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or labels.ndim != 1
            or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer)):
        return None
    return images, labels.astype(np.int64)


def _classes(folder: Path, labels: np.ndarray) -> tuple[str, ...]:
    count = int(labels.max()) + 1 if len(labels) else 0
    for path in folder.rglob("classes.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = {int(r["index"]): r["name"] for r in csv.DictReader(fh) if r.get("index", "").isdigit()}
        if sorted(rows) == list(range(count)):
            return tuple(rows[i] for i in range(count))
    return tuple(str(i) for i in range(count))


def _csv_images(folder: Path) -> list[str]:
    """Sentences describing CSV + images layouts found in ``folder`` (empty when there is none)."""
    found = []
    images_by_dir: dict[Path, int] = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            images_by_dir[path.parent] = images_by_dir.get(path.parent, 0) + 1
    if not images_by_dir:
        return found
    for table in sorted(folder.rglob("*.csv")):
        with open(table, newline="", encoding="utf-8", errors="replace") as fh:
            header = [c.strip().lower() for c in next(csv.reader(fh), [])]
            rows = sum(1 for _ in fh)
        id_col = next((c for c in header if c in ID_COLUMNS), None)
        label_col = next((c for c in header if c in LABEL_COLUMNS), None)
        if id_col and label_col:
            dirs = ", ".join(f"{d.relative_to(folder)}/ ({n} images)" for d, n in sorted(images_by_dir.items()))
            found.append(f"{table.relative_to(folder)} ({rows} rows, columns {id_col},{label_col}) beside {dirs}")
    return found


def _write_competition(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], root: Path, name: str,
                       slug: str, public_fraction: float, holdout: float, seed: int) -> Competition:
    """The competition directory, as ``podium init`` writes it, from labelled images (a holdout as test)."""
    from harness.build import competition_toml, opaque_ids, stratified_public_mask, write_npz
    from harness.datasets import Dataset
    from harness.submission import write_predictions_csv

    rng = np.random.default_rng(seed)
    held = stratified_public_mask(labels, holdout, rng)
    if held.all() or not held.any():
        raise DatasetError(f"{len(labels)} labelled images are too few to hold out a test set.")
    data = Dataset(train_images=images[~held], train_labels=labels[~held], test_images=images[held],
                   test_labels=labels[held], classes=classes, title=f"{slug} (from Kaggle)",
                   image_size=int(images.shape[1]))
    directory = root / name
    (directory / "public").mkdir(parents=True, exist_ok=True)
    (directory / "private").mkdir(parents=True, exist_ok=True)
    public = stratified_public_mask(data.test_labels, public_fraction, rng)
    order = rng.permutation(len(data.test_labels))
    test_images, test_labels, usage = data.test_images[order], data.test_labels[order], np.where(public, 0, 1)[order]
    ids = opaque_ids(len(test_labels), rng)
    write_npz(directory / "public" / "train.npz", images=data.train_images, labels=data.train_labels)
    write_npz(directory / "public" / "test.npz", images=test_images, ids=ids)
    write_predictions_csv(directory / "public" / "sample_submission.csv", ids, np.zeros(len(ids), dtype=np.int64), classes)
    rows = ["id,label,Usage"] + [f"{i},{classes[lab]},{USAGES[use]}" for i, lab, use in zip(ids, test_labels, usage)]
    (directory / "private" / "solution.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (directory / "competition.toml").write_text(competition_toml(name, f"kaggle:{slug}", data, public_fraction),
                                               encoding="utf-8")
    return load_competition(directory)


def init_from_kaggle(slug: str, root: Path, name: str | None = None, public_fraction: float = 0.3,
                     holdout: float = 0.2, seed: int = 0) -> tuple[Competition, list[str]]:
    """Download ``slug`` into ``ROOT/<name>-kaggle-files`` and build ``ROOT/<name>`` when the layout allows.

    Returns (the competition, sentences saying what was found and done); a ``DatasetError`` saying what
    was found when nothing could be built.
    """
    if not slug or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", slug):
        raise DatasetError(f"--slug {slug!r} is not a Kaggle competition slug (letters, digits, '-', '_', '.').")
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", slug).strip("-") or "kaggle"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise DatasetError(f"--name {name!r}: use letters, digits, '-' and '_' only.")
    if not 0.0 < public_fraction < 1.0 or not 0.0 < holdout < 1.0:
        raise DatasetError("--public-fraction and --holdout must be between 0 and 1 (exclusive).")
    root = Path(root)
    target = root / name
    if target.exists():
        raise DatasetError(f"{target} already exists; remove it or choose another --name.")
    files = download(slug, root / f"{name}-kaggle-files")
    listing = sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file())
    for train in sorted(files.rglob("train.npz")):
        dataset = _npz_dataset(train)
        if dataset is not None:
            images, labels = dataset
            classes = _classes(files, labels)
            if len(classes) < 2:
                raise DatasetError(f"{train}: the labels name fewer than 2 classes.")
            competition = _write_competition(images, labels, classes, root, name, slug, public_fraction, holdout, seed)
            return competition, [
                f"downloaded {len(listing)} files of {slug} into {files}",
                f"found podium's data layout: {train.relative_to(files)} ({len(labels)} labelled {images.shape[1]}x"
                f"{images.shape[2]} images, {len(classes)} classes)",
                f"built {competition.root}: {int(round(holdout * 100))}% of the labelled images held out as the test set "
                "(Kaggle never gives out its test labels)",
            ]
    layouts = _csv_images(files)
    if layouts:
        try:
            import harness.images  # noqa: F401  (podium init images, when this installation has it)
            hint = (f"build it with `podium init images` (its --train/--test/--labels rules) from the files in {files}")
        except ImportError:
            hint = (f"`podium init images` is not available in this installation, so nothing was built; "
                    f"the files are in {files}")
        raise DatasetError([f"downloaded {len(listing)} files of {slug} into {files}",
                            *[f"found the CSV + images layout: {found}" for found in layouts], hint])
    shown = ", ".join(listing[:20]) + (f" and {len(listing) - 20} more" if len(listing) > 20 else "")
    raise DatasetError(
        f"downloaded {len(listing)} files of {slug} into {files}: {shown or 'nothing'}. None is in a layout podium "
        "can build from (train.npz with images and labels, or a CSV of image ids and labels beside a folder of images)."
    )
