"""The course notes' transforms, twice: per image (torchvision ``transforms.v2``) and per batch on the device.

Order. The course notes (document 002, §4.10) say "first divide by 255 to get the range 0-1" and then lists, for
training, Resize(224x224) & RandomCrop -> HorizontalFlip(p=0.5) -> float32 -> Normalize, and for
evaluation Resize(224x224) -> float32 -> Normalize. We take "first" literally: the uint8 image is
turned into float32 in [0, 1] before anything else, so the resize is a float bilinear resize with
antialiasing (no rounding back to uint8 in between), and the later "float32" step is already
done. Both paths below compute exactly that, in that order:

    uint8 -> float32 / 255 -> Resize(S, bilinear, antialias) -> pad p (zeros) -> crop S at (top, left)
          -> flip if chosen -> Normalize(mean, std)

``RandomCrop(S, padding=p)`` is "pad p on every side with zeros, then crop S at a uniform offset
in [0, 2p]"; ``RandomHorizontalFlip(0.5)`` flips with probability 0.5. The random choices are drawn
once per epoch for every training image (``draw_augmentation``) and handed to both paths, which is
what makes them comparable, and makes the run independent of the number of DataLoader workers or
processes. ``tests/reference_impls.course_train_transform`` is the course notes' own ``v2.Compose``
with the random classes; a test checks that its outputs are among the outputs of ``reference_train_image``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F


@dataclass(frozen=True)
class TransformSpec:
    size: int
    padding: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hflip: float = 0.5

    @classmethod
    def from_config(cls, config) -> "TransformSpec":
        return cls(config.image_size, config.crop_padding, tuple(config.mean), tuple(config.std), config.hflip)


@dataclass(frozen=True)
class Augmentation:
    """One epoch's random choices, one per training image (indexed by image, not by position)."""

    top: np.ndarray  # int64 [N], in [0, 2 * padding]
    left: np.ndarray  # int64 [N]
    flip: np.ndarray  # bool [N]


def draw_augmentation(n: int, spec: TransformSpec, rng: np.random.Generator) -> Augmentation:
    span = 2 * spec.padding + 1
    return Augmentation(
        top=rng.integers(0, span, n, dtype=np.int64),
        left=rng.integers(0, span, n, dtype=np.int64),
        flip=rng.random(n) < spec.hflip,
    )


# ---------------------------------------------------------------- reference: one image at a time


def reference_train_image(image: torch.Tensor, top: int, left: int, flip: bool, spec: TransformSpec) -> torch.Tensor:
    """One CHW uint8 image through the course notes' training transform, with the given random choices."""
    x = F.to_dtype(image, torch.float32, scale=True)
    x = F.resize(x, [spec.size, spec.size], antialias=True)
    if spec.padding:
        x = F.pad(x, [spec.padding], fill=0)
    x = F.crop(x, int(top), int(left), spec.size, spec.size)
    if flip:
        x = F.horizontal_flip(x)
    return F.normalize(x, list(spec.mean), list(spec.std))


def reference_eval_image(image: torch.Tensor, spec: TransformSpec) -> torch.Tensor:
    """One CHW uint8 image through the course notes' evaluation transform."""
    x = F.to_dtype(image, torch.float32, scale=True)
    x = F.resize(x, [spec.size, spec.size], antialias=True)
    return F.normalize(x, list(spec.mean), list(spec.std))


# ---------------------------------------------------------------- fast: a whole batch on the device

# On a CPU, a whole batch of 224 px float images (77 MB at 128) streams through memory once per
# step and runs several times slower than images done one by one in cache; small chunks keep each
# step in cache. On a GPU the whole batch goes at once.
CPU_CHUNK = 8


def _scale_and_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    x = images.to(torch.float32).mul_(1.0 / 255)  # exactly what v2.ToDtype(scale=True) computes
    if x.shape[-2:] != (size, size):  # v2's resize returns the image untouched at its own size too
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _normalize(x: torch.Tensor, spec: TransformSpec) -> torch.Tensor:
    # Python scalars, channel by channel: building mean/std tensors on a GPU each batch would be a
    # blocking host-to-device copy that stalls the CPU until the previous step has finished.
    for c in range(3):
        x[:, c].sub_(spec.mean[c]).div_(spec.std[c])
    return x


def _in_chunks(fn, images: torch.Tensor, *per_image: torch.Tensor, size: int) -> torch.Tensor:
    n = images.shape[0]
    if images.device.type != "cpu" or n <= CPU_CHUNK:
        return fn(images, *per_image)
    out = torch.empty((n, 3, size, size), dtype=torch.float32)
    for start in range(0, n, CPU_CHUNK):
        part = slice(start, start + CPU_CHUNK)
        out[part] = fn(images[part], *(t[part] for t in per_image))
    return out


def _train_chunk(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                 spec: TransformSpec) -> torch.Tensor:
    s, p = spec.size, spec.padding
    x = _scale_and_resize(images, s)
    b, c = x.shape[:2]
    steps = torch.arange(s, device=x.device)
    # Output row i of image k is row top[k] - p + i of the resized image (zero outside it: the
    # padding); output column j is column left[k] - p + j, or left[k] - p + (S-1-j) when flipped.
    rows = top.view(b, 1) - p + steps
    cols = left.view(b, 1) - p + torch.where(flip.view(b, 1), s - 1 - steps, steps)
    inside = ((rows >= 0) & (rows < s)).view(b, 1, s, 1) & ((cols >= 0) & (cols < s)).view(b, 1, 1, s)
    x = torch.gather(x, 2, rows.clamp(0, s - 1).view(b, 1, s, 1).expand(b, c, s, s))
    x = torch.gather(x, 3, cols.clamp(0, s - 1).view(b, 1, 1, s).expand(b, c, s, s))
    return _normalize(x.mul_(inside), spec)


def fast_train_batch(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, spec: TransformSpec
) -> torch.Tensor:
    """NCHW uint8 images (on any device) -> the normalized training batch (NCHW float32).

    Resize the batch, then crop and flip as two gathers (rows, then columns) with a mask for the
    zero padding: the same numbers as pad-then-crop, without building the padded batch.
    """
    dev = images.device
    return _in_chunks(lambda im, t, l, f: _train_chunk(im, t, l, f, spec), images,
                      top.to(dev), left.to(dev), flip.to(dev), size=spec.size)


def fast_eval_batch(images: torch.Tensor, spec: TransformSpec) -> torch.Tensor:
    """NCHW uint8 images -> the normalized evaluation batch (NCHW float32)."""
    return _in_chunks(lambda im: _normalize(_scale_and_resize(im, spec.size), spec), images, size=spec.size)
