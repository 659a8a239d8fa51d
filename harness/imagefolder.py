"""Reading the ``image-folders`` data format (written by ``podium init images``).

A competition in this format keeps every image as one file of N x N RGB pixels, listed by a CSV
manifest whose paths are relative to the manifest's own folder::

    public/train/<class>/<file>     torchvision's ImageFolder layout (classes = sorted folder names)
    public/train.csv                file,label   e.g. train/cat/0001.jpg,cat   (ImageFolder's order)
    public/test/<id>.<ext>          test images named by their opaque id
    public/test.csv                 id,file      e.g. 3fa9c01b2e,test/3fa9c01b2e.jpg (solution row order)

(``test/`` and ``test.csv`` are in ``private/`` for a hidden test set.) Whole-set loaders
(``load_train_folder``, ``load_test_folder``) fill one preallocated array; checkpoint scoring uses
``iter_image_batches``, which decodes a batch at a time, so its memory is bounded by the batch.
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from harness.errors import CompetitionError

DECODE_THREADS = 2  # Pillow releases the GIL while decoding: threads decode in parallel


def read_manifest(path: Path, columns: tuple[str, str]) -> list[tuple[str, str]]:
    """The rows of a two-column manifest, checked: the header, the column count, paths inside the folder."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise CompetitionError(f"{path} is missing; rebuild the competition with `podium init images`.") from None
    if not rows or tuple(c.strip() for c in rows[0]) != columns:
        raise CompetitionError(f"{path}: the header must be {','.join(columns)}.")
    out: list[tuple[str, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise CompetitionError(f"{path}: line {line} does not have the two columns {','.join(columns)}.")
        out.append((row[0], row[1]))
    return out


def resolve_inside(folder: Path, relative: str, manifest: Path) -> Path:
    """``folder / relative``, refused when the manifest points outside ``folder``."""
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or not relative:
        raise CompetitionError(f"{manifest}: {relative!r} is not a path inside {folder}.")
    return folder / candidate


def decode_rgb(path: Path) -> np.ndarray:
    """One stored image as uint8 [H,W,3]."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise CompetitionError(f"{path} is missing; rebuild the competition with `podium init images`.") from None
    except OSError as exc:
        raise CompetitionError(f"{path} cannot be read as an image ({exc}); rebuild the competition.") from None


def _checked(path: Path, image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if image.shape != shape:
        raise CompetitionError(
            f"{path} is {image.shape[1]}x{image.shape[0]} pixels, but the competition's images are "
            f"{shape[1]}x{shape[0]}; rebuild the competition with `podium init images`."
        )
    return image


def iter_image_batches(paths: Sequence[Path], batch_size: int, threads: int = DECODE_THREADS) -> Iterator[np.ndarray]:
    """uint8 [B,H,W,3] batches of ``paths`` in order; the next batch decodes while this one is used.

    At most two batches are in memory at once, whatever the number of images.
    """
    if not paths:
        return
    shape = decode_rgb(paths[0]).shape
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def start(begin: int):
            chunk = paths[begin : begin + batch_size]
            return chunk, [pool.submit(decode_rgb, p) for p in chunk]

        pending = start(0)
        for begin in range(0, len(paths), batch_size):
            chunk, futures = pending
            if begin + batch_size < len(paths):
                pending = start(begin + batch_size)
            batch = np.empty((len(chunk), *shape), dtype=np.uint8)
            for i, (path, future) in enumerate(zip(chunk, futures)):
                batch[i] = _checked(path, future.result(), shape)
            yield batch


def load_images(paths: Sequence[Path], desc: str = "loading images") -> np.ndarray:
    """All of ``paths`` as one uint8 [N,H,W,3] array (filled in place, never a list then a stack)."""
    from tqdm import tqdm

    if not paths:
        raise CompetitionError("the competition lists no images; rebuild it with `podium init images`.")
    first = decode_rgb(paths[0])
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    batch = 256
    done = 0
    with tqdm(total=len(paths), desc=desc, unit="img", disable=None) as bar:
        for chunk in iter_image_batches(paths, batch):
            out[done : done + len(chunk)] = chunk
            done += len(chunk)
            bar.update(len(chunk))
    return out


def train_image_files(competition) -> tuple[list[Path], np.ndarray]:
    """(image paths, int64 labels) of the training set, in the manifest's order."""
    manifest = competition.train_manifest_path
    rows = read_manifest(manifest, ("file", "label"))
    index = {name: i for i, name in enumerate(competition.classes)}
    paths, labels = [], np.empty(len(rows), dtype=np.int64)
    for row, (file, label) in enumerate(rows):
        if label not in index:
            raise CompetitionError(f"{manifest}: line {row + 2}: {label!r} is not one of the competition's classes.")
        paths.append(resolve_inside(manifest.parent, file, manifest))
        labels[row] = index[label]
    return paths, labels


def held_out_image_files(competition) -> tuple[np.ndarray, list[Path]]:
    """(ids, image paths) of the test set, in solution row order."""
    manifest = competition.test_manifest_path
    rows = read_manifest(manifest, ("id", "file"))
    ids = np.asarray([r[0] for r in rows], dtype=str)
    return ids, [resolve_inside(manifest.parent, r[1], manifest) for r in rows]


def load_train_folder(competition) -> tuple[np.ndarray, np.ndarray]:
    paths, labels = train_image_files(competition)
    return load_images(paths, "loading training images"), labels


def load_test_folder(competition) -> tuple[np.ndarray, np.ndarray]:
    ids, paths = held_out_image_files(competition)
    return load_images(paths, "loading test images"), ids
