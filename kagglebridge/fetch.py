"""``podium init kaggle``: a competition's files downloaded through the client, then built or described.

Kaggle never gives out a competition's test labels, so the labelled training data is the only thing a
podium competition can be scored on: the built competition holds out a stratified share of it
(``--holdout``, default 20 %) as its test set, split public/private like ``podium init``.

Layouts:

- ``train.npz`` with ``images`` (uint8, N x H x W x 3) and ``labels`` (integers): podium's own data
  format (what ``podium kaggle export`` uploads, what a podium server serves): built. Class names come
  from ``classes.csv`` (index,name) when the files have one, else the label numbers.
- a CSV of image ids and labels beside a folder of images (the usual Kaggle image layout; a sample
  submission's labels are not answers): turned into ``podium init images``' input (one folder per class,
  a held-out test folder and its file,label CSV) and built with its rules when this installation has
  ``harness.images``; without it, the command says what it found and prepared, and the command to run.
- anything else: what was found, and nothing built.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CsvImages:
    """A CSV of image ids and labels whose ids name image files of the download."""

    table: Path
    id_column: str
    label_column: str
    rows: int
    matched: dict[str, Path]  # the CSV's id -> its image file
    labels: dict[str, str]  # the CSV's id -> its label

    def describe(self, folder: Path) -> str:
        dirs: dict[str, int] = {}
        for path in self.matched.values():
            key = path.parent.relative_to(folder).as_posix()
            dirs[key] = dirs.get(key, 0) + 1
        where = ", ".join(f"{d}/ ({n} images)" for d, n in sorted(dirs.items()))
        return (f"{self.table.relative_to(folder)} ({self.rows} rows, columns {self.id_column},{self.label_column}) "
                f"beside {where}")


def _image_index(folder: Path) -> dict[str, Path]:
    """Every image file by relative path, by file name and by stem (names given to several files dropped)."""
    by_key: dict[str, Path | None] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            for key in {path.relative_to(folder).as_posix(), path.name, path.stem}:
                by_key[key] = None if key in by_key and by_key[key] != path else path
    return {k: v for k, v in by_key.items() if v is not None}


def find_csv_images(folder: Path) -> list[CsvImages]:
    """CSV + images layouts in ``folder``: labelled tables first (a sample submission's labels are not answers)."""
    images = _image_index(folder)
    if not images:
        return []
    found = []
    for table in sorted(folder.rglob("*.csv")):
        with open(table, newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.reader(fh)
            header = [c.strip().lower() for c in next(reader, [])]
            id_col = next((c for c in header if c in ID_COLUMNS), None)
            label_col = next((c for c in header if c in LABEL_COLUMNS), None)
            if not (id_col and label_col):
                continue
            i, j = header.index(id_col), header.index(label_col)
            rows = [r for r in reader if len(r) > max(i, j)]
        matched, labels = {}, {}
        for row in rows:
            key, label = row[i].strip(), row[j].strip()
            path = images.get(key) or images.get(key.lstrip("./"))
            if path is not None and label:
                matched[key], labels[key] = path, label
        if matched:
            found.append(CsvImages(table, id_col, label_col, len(rows), matched, labels))
    answers = [f for f in found if "sample" not in f.table.name.lower() and "submission" not in f.table.name.lower()]
    return sorted(answers, key=lambda f: ("train" not in f.table.name.lower(), -len(f.matched)))


SAFE_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,99}")


def to_image_folders(layout: CsvImages, out: Path, holdout: float, seed: int) -> tuple[Path, Path, Path]:
    """``podium init images``' input from a CSV + images layout: ``out/train/<class>/<file>`` and a held-out
    ``out/test/`` with ``out/test_labels.csv`` (file,label), a stratified ``holdout`` share of each class
    (Kaggle never gives out its test labels). Files are hard links where the file system allows."""
    from harness.build import stratified_public_mask

    bad = sorted({label for label in layout.labels.values() if not SAFE_LABEL.fullmatch(label)})
    if bad:
        raise DatasetError(f"{layout.table.name}: labels must be usable as folder names (letters, digits, space, "
                           f"'_', '.', '+', '-'); these are not: {', '.join(repr(b) for b in bad[:10])}.")
    classes = sorted(set(layout.labels.values()))
    if len(classes) < 2:
        raise DatasetError(f"{layout.table.name}: the labels name fewer than 2 classes.")
    keys = sorted(layout.matched)
    index = {c: n for n, c in enumerate(classes)}
    held = stratified_public_mask(np.array([index[layout.labels[k]] for k in keys]), holdout, np.random.default_rng(seed))
    if out.exists():
        shutil.rmtree(out)
    train, test = out / "train", out / "test"
    rows = ["file,label"]
    for n, (key, is_test) in enumerate(zip(keys, held)):
        source = layout.matched[key]
        name = f"{n:06d}-{source.name}"  # unique even when two folders hold the same file name
        target = test / name if is_test else train / layout.labels[key] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        if is_test:
            rows.append(f"{name},{layout.labels[key]}")
    test.mkdir(parents=True, exist_ok=True)
    (out / "test_labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return train, test, out / "test_labels.csv"


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


def _init_images():
    """``podium init images``' builder when this installation's harness has it, else None. (Only the
    harness package's own folder counts: an editable install elsewhere can serve a stray copy.)"""
    import importlib.util

    import harness

    try:
        spec = importlib.util.find_spec("harness.images")
    except ImportError:
        return None
    if spec is None or spec.origin is None or Path(spec.origin).parent not in {Path(p) for p in harness.__path__}:
        return None
    from harness.images import build_images_competition

    return build_images_competition


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
    layouts = find_csv_images(files)
    if layouts:
        layout = layouts[0]
        train, test, labels = to_image_folders(layout, files / "podium-images", holdout, seed)
        said = [f"downloaded {len(listing)} files of {slug} into {files}",
                f"found the CSV + images layout: {layout.describe(files)}",
                f"prepared podium init images' input: {train} (one folder per class) and {test} with {labels} "
                f"({int(round(holdout * 100))}% of the labelled images held out: Kaggle never gives out its test labels)"]
        build_images_competition = _init_images()
        if build_images_competition is None:
            raise DatasetError(said + [
                "`podium init images` is not available in this installation, so no competition was built; with it: "
                f"podium init images --train {train} --test {test} --labels {labels} --root {root} --name {name}"
            ])
        competition, _report = build_images_competition(train, test, labels, root, name, title=f"{slug} (from Kaggle)",
                                                        public_fraction=public_fraction, seed=seed)
        return competition, said + [f"built {competition.root} with podium init images' rules"]
    shown = ", ".join(listing[:20]) + (f" and {len(listing) - 20} more" if len(listing) > 20 else "")
    raise DatasetError(
        f"downloaded {len(listing)} files of {slug} into {files}: {shown or 'nothing'}. None is in a layout podium "
        "can build from (train.npz with images and labels, or a CSV of image ids and labels beside a folder of images)."
    )
