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


def load_cifar10(data_dir: Path | None = None) -> Dataset:
    """CIFAR-10 through torchvision's loader: downloads once into ``data_dir`` when online."""
    from torchvision.datasets import CIFAR10  # torch only for this dataset

    data_dir = Path(data_dir or default_data_dir())
    try:
        train = CIFAR10(str(data_dir), train=True, download=True)
        test = CIFAR10(str(data_dir), train=False, download=True)
    except Exception as exc:  # urllib, socket, tarfile and checksum errors all mean the same here
        raise DatasetError(
            f"Could not download CIFAR-10 into {data_dir} ({type(exc).__name__}: {exc}). "
            "This machine seems to be offline or cannot reach the dataset's host. To fix it, "
            f"download cifar-10-python.tar.gz (163 MB, from {CIFAR10.url}) on a machine with "
            f"internet access and copy it into {data_dir}, or set PODIUM_DATA to a folder that "
            "holds it, then run the command again; torchvision checks its md5 and extracts it. "
            "To try podium without CIFAR-10, use the bundled dataset: `podium init digits`."
        ) from None
    return Dataset(
        train_images=np.ascontiguousarray(train.data, dtype=np.uint8),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        test_images=np.ascontiguousarray(test.data, dtype=np.uint8),
        test_labels=np.asarray(test.targets, dtype=np.int64),
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
