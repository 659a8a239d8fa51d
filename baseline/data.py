"""Data for the baseline: the validation split, each epoch's plan, and the two data paths.

Both paths serve the same batches: the same images in the same order with the same crops and
flips (``EpochPlan``), so switching ``--data-path`` changes the speed, not the experiment.

- ``FastData``: the whole uint8 dataset is one NCHW tensor on the device; each batch is sliced
  from it and transformed there in one go (``fast_train_batch``), as in airbench.
- ``ReferenceData``: a ``Dataset`` that transforms one image at a time with torchvision v2,
  batched by a ``DataLoader`` (with workers), as the course notes write it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from baseline.transforms import (
    Augmentation,
    TransformSpec,
    draw_augmentation,
    fast_eval_batch,
    fast_train_batch,
    reference_eval_image,
    reference_train_image,
)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of each class, chosen with ``seed``; sorted."""
    if fraction <= 0:
        return np.arange(len(labels)), np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5A11D])
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = int(round(fraction * len(members)))
        val.append(rng.permutation(members)[:take])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


@dataclass(frozen=True)
class EpochPlan:
    """The order of the training images in one epoch and their random crops and flips."""

    order: np.ndarray  # positions into the training set
    augmentation: Augmentation


def epoch_plan(n: int, spec: TransformSpec, seed: int, epoch: int) -> EpochPlan:
    rng = np.random.default_rng([seed, epoch, 0xE90C])
    order = rng.permutation(n)
    return EpochPlan(order=order, augmentation=draw_augmentation(n, spec, rng))


def global_batches(n: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each global batch. A last partial batch is kept unless it is too small to
    give every process at least two images (BatchNorm needs two); then it is dropped."""
    spans = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if spans and spans[-1][1] - spans[-1][0] < 2 * world_size:
        spans.pop()
    return spans


def rank_slice(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """This process's contiguous share of a global batch (sizes differ by at most one)."""
    n = stop - start
    base, extra = divmod(n, world_size)
    lo = start + rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # normalized float images on the device
    y: torch.Tensor  # int64 labels on the device
    global_size: int  # images in the whole global batch, over all processes


class FastData:
    """The dataset as one uint8 tensor on the device; batches transformed there."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, spec: TransformSpec, device: torch.device,
                 channels_last: bool = True):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.spec, self.device, self.channels_last = spec, device, channels_last

    def __len__(self) -> int:
        return self.images.shape[0]

    def train_batches(self, plan: EpochPlan, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        dev = self.device
        order = torch.from_numpy(plan.order).to(dev)
        aug = plan.augmentation
        top, left, flip = (torch.from_numpy(a).to(dev) for a in (aug.top, aug.left, aug.flip))
        for start, stop in global_batches(len(self), batch_size, world_size):
            lo, hi = rank_slice(start, stop, rank, world_size)
            idx = order[lo:hi]
            x = fast_train_batch(self.images[idx], top[idx], left[idx], flip[idx], self.spec)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield Batch(x, self.labels[idx], stop - start)

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        lo, hi = rank_slice(0, len(self), rank, world_size)
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            x = fast_eval_batch(self.images[start:stop], self.spec)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.labels[start:stop] if self.labels is not None else torch.empty(0, dtype=torch.int64)
            yield Batch(x, y, stop - start)


class _TrainImages(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, spec: TransformSpec, augmentation: Augmentation):
        self.images, self.labels, self.spec, self.aug = images, labels, spec, augmentation

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        x = reference_train_image(image, self.aug.top[i], self.aug.left[i], bool(self.aug.flip[i]), self.spec)
        return x, int(self.labels[i])


class _EvalImages(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray | None, spec: TransformSpec):
        self.images, self.labels, self.spec = images, labels, spec

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = reference_eval_image(torch.from_numpy(self.images[i]).permute(2, 0, 1), self.spec)
        return x, (-1 if self.labels is None else int(self.labels[i]))


class ReferenceData:
    """Per-image torchvision v2 transforms in a DataLoader, the course notes' way."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, spec: TransformSpec, device: torch.device,
                 workers: int = 0):
        self.images = np.ascontiguousarray(images)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.spec, self.device, self.workers = spec, device, workers

    def __len__(self) -> int:
        return len(self.images)

    def _loader(self, dataset: Dataset, index_lists: list[list[int]]) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=index_lists,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )

    def train_batches(self, plan: EpochPlan, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        spans = global_batches(len(self), batch_size, world_size)
        lists = [plan.order[slice(*rank_slice(s, e, rank, world_size))].tolist() for s, e in spans]
        dataset = _TrainImages(self.images, self.labels, self.spec, plan.augmentation)
        for (start, stop), (x, y) in zip(spans, self._loader(dataset, lists)):
            yield Batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), stop - start)

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        lo, hi = rank_slice(0, len(self), rank, world_size)
        lists = [list(range(s, min(s + batch_size, hi))) for s in range(lo, hi, batch_size)]
        for x, y in self._loader(_EvalImages(self.images, self.labels, self.spec), lists):
            y = y if self.labels is not None else torch.empty(0, dtype=torch.int64)  # unlabeled: no loss
            yield Batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), len(x))


def make_data(kind: str, images: np.ndarray, labels: np.ndarray | None, spec: TransformSpec,
              device: torch.device, workers: int = 0, channels_last: bool = True) -> FastData | ReferenceData:
    """The one switch between the two data paths."""
    if kind == "fast":
        return FastData(images, labels, spec, device, channels_last)
    return ReferenceData(images, labels, spec, device, workers)
