"""Datasets a competition can be built from.

Each is one function returning ``Dataset(train_images, train_labels, test_images, test_labels,
classes)`` with images uint8 ``[N, H, W, 3]`` and labels int64. Adding one is a function and a
line in ``DATASETS``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.errors import DatasetError


@dataclass(frozen=True)
class Dataset:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    title: str
    image_size: int


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


def default_data_dir() -> Path:
    return Path(os.environ.get("PODIUM_DATA", Path.home() / ".cache" / "podium" / "data"))


CIFAR10_FOLDER = "cifar-10-batches-py"  # what cifar-10-python.tar.gz holds
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_ROW = 3 * 32 * 32  # one image: 1,024 red, then green, then blue bytes, row by row
# What the python batches may contain: dicts, lists, numbers, strings, and numpy arrays (rebuilt by these).
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # bytes, as protocol 2 writes them
}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as (uint8 [N,32,32,3], int64 [N]).

    The batches are pickles: read by an unpickler that builds only plain data and numpy arrays
    (no other class or function can be named), then checked: 3,072 bytes per row, labels 0-9.
    """
    import importlib
    import pickle

    class BatchUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            target = _BATCH_GLOBALS.get((module, name))
            if target is None:
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
            return getattr(importlib.import_module(target[0]), target[1])

    what = f"{path}: not a CIFAR-10 python batch"
    try:
        with path.open("rb") as fh:
            batch = BatchUnpickler(fh, encoding="latin1").load()
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; copy the whole {CIFAR10_FOLDER} folder (or the archive) again.") from None
    except Exception as exc:  # a damaged pickle raises anything: UnpicklingError, EOFError, KeyError, ValueError...
        raise DatasetError(f"{what} ({type(exc).__name__}: {exc}); download cifar-10-python.tar.gz again.") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR10_ROW or len(labels) != len(data) \
            or not len(data) or labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        raise DatasetError(f"{what}: expected uint8 rows of {CIFAR10_ROW} bytes and as many labels 0-9, got "
                           f"{data.dtype} {data.shape} and {len(labels)} labels; download cifar-10-python.tar.gz again.")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def _extract_cifar10(archive: Path, data_dir: Path) -> None:
    """The batches of ``archive`` into ``data_dir/cifar-10-batches-py`` (through a folder renamed at the end)."""
    import shutil
    import tarfile
    import tempfile

    wanted = {f"{CIFAR10_FOLDER}/{name}" for name in CIFAR10_BATCHES}
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=".cifar-10-extract-"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
                missing = wanted - {m.name for m in members}
                if missing:
                    raise DatasetError(f"{archive} lacks {', '.join(sorted(missing))}: it is not cifar-10-python.tar.gz; "
                                       "download it again.")
                # Only regular files of the expected names: no link, no absolute or ".." path.
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, members=members, **safe)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"{archive} cannot be read as cifar-10-python.tar.gz ({exc}); download it again.") from None
        target = data_dir / CIFAR10_FOLDER
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging / CIFAR10_FOLDER, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_cifar10(data_dir: Path | None = None) -> Dataset:
    """CIFAR-10 from ``data_dir``: its extracted batches (``cifar-10-batches-py/``), else the archive
    ``cifar-10-python.tar.gz`` there (extracted once), else downloaded once through torchvision
    (checked against the archive's md5). The batches are read without torchvision's loader, which
    checks every file against the md5 of the original: any archive in CIFAR-10's python format is
    read, and checked by its contents instead (``_read_batch``)."""
    from torchvision.datasets import CIFAR10  # torch only for this dataset

    data_dir = Path(data_dir or default_data_dir())
    folder = data_dir / CIFAR10_FOLDER
    if not all((folder / name).is_file() for name in CIFAR10_BATCHES):
        archive = data_dir / CIFAR10.filename
        if not archive.is_file():
            from torchvision.datasets.utils import download_url

            try:
                download_url(CIFAR10.url, str(data_dir), CIFAR10.filename, CIFAR10.tgz_md5)
            except Exception as exc:  # urllib, socket and checksum errors all mean the same here
                raise DatasetError(
                    f"Could not download CIFAR-10 into {data_dir} ({type(exc).__name__}: {exc}). "
                    "This machine seems to be offline or cannot reach the dataset's host. To fix it, "
                    f"download cifar-10-python.tar.gz (163 MB, from {CIFAR10.url}) on a machine with "
                    f"internet access and copy it into {data_dir}, or set PODIUM_DATA to a folder that "
                    "holds it, then run the command again; podium extracts it and checks its contents. "
                    "To try podium without CIFAR-10, use the bundled dataset: `podium init digits`."
                ) from None
        _extract_cifar10(archive, data_dir)
    parts = [_read_batch(folder / name) for name in CIFAR10_BATCHES]
    return Dataset(
        train_images=np.concatenate([images for images, _ in parts[:-1]]),
        train_labels=np.concatenate([labels for _, labels in parts[:-1]]),
        test_images=parts[-1][0],
        test_labels=parts[-1][1],
        classes=CIFAR10_CLASSES,
        title="CIFAR-10 image classification",
        image_size=224,
    )


def upscale_digits(images_8x8: np.ndarray, size: int = 32) -> np.ndarray:
    """scikit-learn's 8x8 digits (values 0-16) as ``size`` x ``size`` RGB uint8, bilinear."""
    from PIL import Image

    scaled = np.clip(np.asarray(images_8x8, dtype=np.float64) * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    out = np.empty((len(scaled), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(scaled):
        big = np.asarray(Image.fromarray(img, mode="L").resize((size, size), Image.BILINEAR))
        out[i] = big[:, :, None]
    return out


def load_digits(data_dir: Path | None = None, test_fraction: float = 0.3) -> Dataset:
    """scikit-learn's bundled handwritten digits (1,797 real images), 32x32 RGB, no network.

    The train/test split is fixed (seed 0, stratified), so every digits competition has the
    same test images whatever its own seed.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = upscale_digits(bunch.images)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test_mask[members[: int(round(test_fraction * len(members)))]] = True
    return Dataset(
        train_images=images[~test_mask],
        train_labels=labels[~test_mask],
        test_images=images[test_mask],
        test_labels=labels[test_mask],
        classes=tuple(str(d) for d in range(10)),
        title="Handwritten digits (scikit-learn, 32x32)",
        image_size=32,
    )


DATASETS: dict[str, Callable[..., Dataset]] = {"cifar10": load_cifar10, "digits": load_digits}


def load_dataset(name: str, data_dir: Path | None = None) -> Dataset:
    try:
        loader = DATASETS[name]
    except KeyError:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.") from None
    return loader(data_dir)
