"""``podium init``: build a competition directory from a dataset, deterministically.

The same dataset, name, fraction, decoys and seed give byte-identical files: the test images are
shuffled under the seed, get opaque ids drawn from the seed, and the archives carry fixed
timestamps. The seed is the organizer's secret: with it, ids can be mapped back to the original
test order.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from harness.competition import USAGES, Competition, load_competition
from harness.datasets import Dataset, load_dataset
from harness.errors import CompetitionError
from harness.metrics import METRIC_NAMES
from harness.submission import write_predictions_csv

ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` (readable by ``np.load``) but byte-identical for identical arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE), buf.getvalue())


def stratified_public_mask(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """True for the rows of the Public split: ``fraction`` of each class, chosen by ``rng``."""
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        mask[members[: int(round(fraction * len(members)))]] = True
    return mask


def opaque_ids(count: int, rng: np.random.Generator, length: int = 10) -> np.ndarray:
    """``count`` distinct random hex ids, drawn from ``rng``."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        chunk = rng.bytes(length // 2 * (count - len(ids))).hex()
        for i in range(0, len(chunk), length):
            candidate = chunk[i : i + length]
            if candidate not in seen:
                seen.add(candidate)
                ids.append(candidate)
    return np.asarray(ids, dtype=f"<U{length}")


def make_decoys(train_images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Unscored test images: training images shifted, flipped and noised, so they look real."""
    picks = train_images[rng.integers(0, len(train_images), size=count)].astype(np.int16)
    out = np.empty_like(picks)
    for i, img in enumerate(picks):
        dy, dx = rng.integers(-3, 4, size=2)
        img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        if rng.random() < 0.5:
            img = img[:, ::-1]
        out[i] = img + rng.integers(-8, 9, size=img.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def toml_text(
    name: str,
    title: str,
    dataset: str,
    classes: tuple[str, ...] | list[str],
    public_fraction: float,
    eval_size: int,
    data_format: str = "npz",
    hidden_test: bool = False,
) -> str:
    lines = [
        f"name = {_toml_value(name)}",
        f"title = {_toml_value(title)}",
        f"dataset = {_toml_value(dataset)}",
        f"classes = {_toml_value(list(classes))}",
        f"data_format = {_toml_value(data_format)}      # npz or image-folders",
        f"hidden_test = {_toml_value(hidden_test)}       # true: the test images are in private/, checkpoints only",
        'primary_metric = "accuracy"        # or ' + ", ".join(m for m in METRIC_NAMES if m != "accuracy"),
        f"public_fraction = {public_fraction!r}",
        "daily_limit = 5",
        "final_selections = 2",
        "# deadline = 2026-12-31T23:59:00Z   # submissions after it are kept but not ranked",
        "# allowed_archs = [\"torchvision/resnet50\", \"timm/*\"]   # default: every classification model",
        "",
        "[eval_transform]                   # what checkpoint scoring feeds a model by default",
        f"size = {eval_size}",
        "mean = [0.485, 0.456, 0.406]",
        "std = [0.229, 0.224, 0.225]",
        "",
        "[limits]",
        "max_csv_mb = 20",
        "max_checkpoint_mb = 600",
        "inference_timeout_s = 900",
        "inference_memory_gb = 12",
        "",
    ]
    return "\n".join(lines)


def competition_toml(name: str, dataset: str, data: Dataset, public_fraction: float, hidden_test: bool = False) -> str:
    return toml_text(name, data.title, dataset, data.classes, public_fraction, data.image_size, "npz", hidden_test)


def check_build_options(name: str, public_fraction: float, decoys: int = 0) -> None:
    """The checks that need no data: run before anything is loaded or written."""
    if not 0.0 < public_fraction < 1.0:
        raise CompetitionError(f"--public-fraction must be between 0 and 1 (exclusive), got {public_fraction}.")
    if decoys < 0:
        raise CompetitionError(f"--decoys must be 0 or more, got {decoys}.")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise CompetitionError(f"--name {name!r}: use letters, digits, '-' and '_' only.")


def check_root(root: Path) -> None:
    """``--root`` must be a folder, or a path where one can be made (checked before any work)."""
    root = Path(root)
    for path in (root, *root.parents):
        if path.exists() or path.is_symlink():
            if path.is_dir():
                return
            if path == root:
                raise CompetitionError(f"--root {root} is a file, not a folder; --root is the folder the competition "
                                       "is built in: choose another.")
            raise CompetitionError(f"--root {root}: {path} is a file, not a folder; choose another --root.")


def make_root(root: Path) -> None:
    """Create ``--root`` (and its parents): a refusal the user can act on, never a traceback."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompetitionError(f"--root {root}: cannot create the folder ({exc.strerror or exc}); choose another --root.") from None


def write_description(directory: Path, dataset: str, title: str, classes, facts=None) -> None:
    """``description.md`` (the Overview page), unless the organizer already has one there."""
    from harness.description import description_markdown

    path = Path(directory) / "description.md"
    if not path.exists():
        path.write_text(description_markdown(dataset, title, tuple(classes), facts), encoding="utf-8")


def build_competition(
    dataset: str,
    root: str | Path,
    name: str | None = None,
    public_fraction: float = 0.3,
    decoys: int = 0,
    seed: int = 0,
    data_dir: Path | None = None,
    hidden_test: bool = False,
) -> Competition:
    """Write ``<root>/<name>/`` and return its ``Competition``.

    With ``hidden_test`` the test images go to ``private/test.npz`` (and no sample submission is
    written: CSVs are refused); without it to ``public/test.npz``. Rebuilding in place removes the
    other place's copy, so a competition made hidden never keeps a public test set behind.
    """
    name = name or dataset
    check_build_options(name, public_fraction, decoys)
    check_root(Path(root))
    data = load_dataset(dataset, data_dir)  # after every cheap check: cifar10 may download 163 MB
    directory = Path(root) / name
    if directory.exists() and not directory.is_dir():
        raise CompetitionError(f"{directory} is a file, not a competition folder; remove it or choose another --name.")
    make_root(Path(root))
    (directory / "public").mkdir(parents=True, exist_ok=True)
    (directory / "private").mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    public = stratified_public_mask(data.test_labels, public_fraction, rng)
    usage = np.where(public, 0, 1).astype(np.int8)
    images, labels = data.test_images, data.test_labels
    if decoys:
        images = np.concatenate([images, make_decoys(data.train_images, decoys, rng)])
        labels = np.concatenate([labels, np.full(decoys, -1, dtype=np.int64)])
        usage = np.concatenate([usage, np.full(decoys, 2, dtype=np.int8)])
    order = rng.permutation(len(images))
    images, labels, usage = images[order], labels[order], usage[order]
    ids = opaque_ids(len(images), rng)

    write_npz(directory / "public" / "train.npz", images=data.train_images, labels=data.train_labels)
    test_place, other_place = ("private", "public") if hidden_test else ("public", "private")
    (directory / other_place / "test.npz").unlink(missing_ok=True)
    write_npz(directory / test_place / "test.npz", images=images, ids=ids)
    sample = directory / "public" / "sample_submission.csv"
    if hidden_test:
        sample.unlink(missing_ok=True)
    else:
        write_predictions_csv(sample, ids, np.zeros(len(ids), dtype=np.int64), data.classes)
    class_names = np.asarray(data.classes + ("",), dtype=object)
    solution = ["id,label,Usage"] + [
        f"{i},{class_names[lab]},{USAGES[use]}" for i, lab, use in zip(ids, labels, usage)
    ]
    (directory / "private" / "solution.csv").write_text("\n".join(solution) + "\n", encoding="utf-8")
    (directory / "competition.toml").write_text(
        competition_toml(name, dataset, data, public_fraction, hidden_test), encoding="utf-8"
    )
    facts = {"train_images": len(data.train_images), "test_images": len(images),
             "image_size": data.train_images.shape[1], "hidden_test": hidden_test}
    write_description(directory, dataset, data.title, data.classes, facts)
    from harness.filemodes import make_private  # the answers: 0700 folder, 0600 files (issue 9)

    make_private(directory / "private")
    return load_competition(directory)
