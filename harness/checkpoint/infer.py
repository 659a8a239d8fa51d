"""Batched inference over a uint8 image array: the fast path that checkpoint scoring uses.

The uint8 images go to the device once; each batch is turned NHWC -> NCHW (a view that is already
channels_last), resized with the same bilinear + antialias kernel and rounding as torchvision's
``Resize`` on uint8 images, scaled to [0,1] and normalised, all on the device. On CUDA the
forward pass runs under bf16 autocast with large batches and cuDNN autotuning; on CPU in float32.
The naive per-image torchvision pipeline it must agree with is ``tests/reference_impls.py``
(``reference_transform``, used by the tests and ``benchmarks/checkpoint_speed.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from harness.checkpoint.policy import InputSpec
from harness.errors import CheckpointError

if TYPE_CHECKING:
    import torch

CUDA_BATCH = 512
CPU_BATCH = 128


def resolve_device(device: str | None) -> "torch.device":
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise what was asked for."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_batch(batch: "torch.Tensor", spec: InputSpec, mean: "torch.Tensor", std: "torch.Tensor") -> "torch.Tensor":
    """uint8 [B,H,W,3] on the device -> normalised float32 [B,3,size,size] in channels_last."""
    import torch
    import torch.nn.functional as F

    x = batch.permute(0, 3, 1, 2).float()  # a channels_last view of NHWC memory
    height, width = x.shape[-2:]
    if (height, width) != (spec.size, spec.size):
        # Antialiasing only changes a downscale; upscaling (32 -> 224) takes the faster plain kernel.
        shrink = spec.size < height or spec.size < width
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=shrink)
        x = x.round_().clamp_(0, 255)  # torchvision resizes uint8 images to uint8
    x = x.mul_(1 / 255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


def predict_array(
    model: "torch.nn.Module",
    images: np.ndarray,
    spec: InputSpec,
    device: "torch.device",
    batch_size: int | None = None,
    progress: bool = True,
    pad_last: bool | None = None,
) -> np.ndarray:
    """int64 class indices [M] for uint8 images [M,H,W,3]; non-finite outputs are refused.

    ``pad_last`` (default: on CUDA) pads a short final batch to ``batch_size`` so that every
    forward pass has one shape and cuDNN autotunes once; the padding rows are dropped.
    """
    import torch
    from tqdm import tqdm

    cuda = device.type == "cuda"
    batch_size = batch_size or (CUDA_BATCH if cuda else CPU_BATCH)
    pad_last = cuda if pad_last is None else pad_last
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = model.to(device).eval()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    data = torch.from_numpy(np.ascontiguousarray(images))
    data = data.pin_memory().to(device, non_blocking=True) if cuda else data
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    m = data.shape[0]
    predictions = torch.empty(m, dtype=torch.int64, device=device)
    non_finite = torch.zeros((), dtype=torch.int64, device=device)
    starts = range(0, m, batch_size)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        for start in tqdm(starts, desc="inference", unit="batch", disable=None if progress else True):
            chunk = data[start : start + batch_size]
            real = chunk.shape[0]
            if pad_last and real < batch_size < m:
                # Pad the last batch to the common shape: cuDNN autotuning runs once, not twice.
                chunk = torch.cat([chunk, chunk.new_zeros((batch_size - real, *chunk.shape[1:]))])
            predictions[start : start + real] = _forward(model, chunk, real, spec, mean, std, non_finite)
    _refuse_non_finite(int(non_finite.item()), m)
    return predictions.cpu().numpy()


def predict_batches(
    model: "torch.nn.Module",
    batches: Iterable[np.ndarray],
    count: int,
    spec: InputSpec,
    device: "torch.device",
    progress: bool = True,
) -> np.ndarray:
    """Like ``predict_array`` for images that arrive a batch at a time (decoded from image files).

    Each uint8 [B,H,W,3] batch goes to the device when its turn comes, so memory holds a batch or
    two, never the whole test set. ``count`` is the number of images the batches add up to.
    """
    import torch
    from tqdm import tqdm

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = model.to(device).eval()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    predictions = torch.empty(count, dtype=torch.int64, device=device)
    non_finite = torch.zeros((), dtype=torch.int64, device=device)
    done = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        with tqdm(total=count, desc="inference", unit="img", disable=None if progress else True) as bar:
            for batch in batches:
                real = batch.shape[0]
                if done + real > count:
                    raise ValueError(f"the batches hold more than the {count} images announced")
                chunk = torch.from_numpy(np.ascontiguousarray(batch))
                chunk = chunk.pin_memory().to(device, non_blocking=True) if cuda else chunk
                predictions[done : done + real] = _forward(model, chunk, real, spec, mean, std, non_finite)
                done += real
                bar.update(real)
    if done != count:
        raise ValueError(f"the batches held {done} images, not the {count} announced")
    _refuse_non_finite(int(non_finite.item()), count)
    return predictions.cpu().numpy()


def _forward(model, chunk, real: int, spec: InputSpec, mean, std, non_finite) -> "torch.Tensor":
    """Class indices for the first ``real`` rows of a uint8 batch on the device; counts non-finite rows."""
    import torch

    x = prepare_batch(chunk, spec, mean, std)
    try:
        logits = model(x)
    except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
        if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
            raise
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(
            f"the model failed on a batch of shape {list(x.shape)}: {first_line} "
            "(does this architecture accept the input_size on the model card?)"
        ) from None
    _check_logits(logits, x.shape[0], model)
    logits = logits[:real]
    non_finite += (~torch.isfinite(logits)).any(dim=1).sum()
    return logits.argmax(dim=1)


def _refuse_non_finite(bad: int, m: int) -> None:
    if bad:
        raise CheckpointError(
            f"the model produced NaN or infinite outputs for {bad} of {m} test images, so they have no "
            "prediction; check the weights (a diverged training run?) and resubmit."
        )


def _check_logits(logits: object, batch: int, model: "torch.nn.Module") -> None:
    import torch

    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CheckpointError(f"the model must return one row of class scores per image, got {shape} for {batch} images.")
