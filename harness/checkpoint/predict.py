"""Checkpoint file -> predictions: inspect in the trusted parent, run in an isolated child.

Refused in the parent, before any tensor is read: a file over the size limit; anything but
safetensors (a ``.pt``/``.pth`` zip or a raw pickle is refused with the ``podium pack`` command
that converts it; podium never unpickles a submission, not even with ``weights_only=True``; zip
archives are first checked for entry count, declared size, TorchScript and torch.package); a
forged or damaged safetensors header; a missing or invalid card; a card the competition does not
allow. The child then refuses unknown architectures and missing, unexpected or wrongly shaped
keys, and reports NaN outputs, crashes, timeouts and running out of memory.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.checkpoint.archive import inspect_zip
from harness.checkpoint.card import ModelCard
from harness.checkpoint.isolate import ChildResult, run_child
from harness.checkpoint.policy import InputSpec, check_card, check_file_size
from harness.checkpoint.safefile import SafetensorsHeader, read_safetensors_header
from harness.competition import Competition, load_npz
from harness.errors import CheckpointError
from harness.imagefolder import held_out_image_files
from harness.sniff import PICKLE_PROTO, ZIP_MAGIC

PACK_HINT = (
    "Convert a state dict saved with torch.save(model.state_dict(), 'model.pt') by running "
    "`podium pack model.pt --library torchvision|timm --arch ARCH -o model.safetensors`, "
    "then submit model.safetensors."
)


@dataclass(frozen=True)
class InspectedCheckpoint:
    path: Path
    header: SafetensorsHeader
    card: ModelCard
    input: InputSpec


def inspect_checkpoint(path: str | Path, competition: Competition) -> InspectedCheckpoint:
    """Everything that can be checked without torch; raises ``CheckpointError`` on any refusal."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} does not exist.") from None
    check_file_size(size, competition)
    if len(head) >= 9 and head[8:9] == b"{":
        header = read_safetensors_header(path)
        card = ModelCard.from_metadata(header.metadata)
        return InspectedCheckpoint(path, header, card, check_card(card, competition))
    if head.startswith(ZIP_MAGIC):
        archive = inspect_zip(path, max_uncompressed_bytes=competition.limits.max_checkpoint_bytes)
        if any(name.rsplit("/", 1)[-1] == "data.pkl" for name in archive.names):
            raise CheckpointError(
                "this is a PyTorch .pt/.pth archive (a pickle inside a zip); podium never loads pickles from a "
                "submission. " + PACK_HINT
            )
        raise CheckpointError(
            "this is a zip archive, not a checkpoint: submit one .safetensors file (or a prediction CSV)."
        )
    if head.startswith(PICKLE_PROTO):
        raise CheckpointError(
            "this is a Python pickle (for example a legacy torch.save file); podium never loads pickles from "
            "a submission. " + PACK_HINT
        )
    raise CheckpointError(
        "this file is not a checkpoint podium accepts: submit a .safetensors state dict with its model card "
        "(or a prediction CSV)."
    )


def run_inspected(
    checkpoint: InspectedCheckpoint,
    images: np.ndarray,
    competition: Competition,
    device: str | None = None,
    batch_size: int | None = None,
    isolate_network: bool = True,
) -> ChildResult:
    """Run an inspected checkpoint on ``images`` in a child process; predictions plus run info."""
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3):
        raise ValueError(f"images must be a uint8 array [M,H,W,3], got {getattr(images, 'shape', type(images))}")
    with tempfile.TemporaryDirectory(prefix="podium-infer-") as tmp:
        workdir = Path(tmp)
        np.save(workdir / "images.npy", np.ascontiguousarray(images))
        job = _job(checkpoint, competition, device, batch_size, isolate_network, images=str(workdir / "images.npy"))
        return run_child(job, workdir, competition.limits.inference_timeout_s, len(images), competition.num_classes)


def _job(checkpoint: InspectedCheckpoint, competition: Competition, device, batch_size, isolate_network, **source) -> dict:
    card, spec = checkpoint.card, checkpoint.input
    return {
        "checkpoint": str(checkpoint.path.resolve()),
        **source,
        "card": card.to_metadata(),
        "size": spec.size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "device": device,
        "batch_size": batch_size,
        "memory_bytes": competition.limits.inference_memory_bytes,
        "isolate_network": isolate_network,
    }


def run_on_test_set(
    checkpoint: InspectedCheckpoint,
    competition: Competition,
    device: str | None = None,
    batch_size: int | None = None,
    isolate_network: bool = True,
) -> ChildResult:
    """Run an inspected checkpoint on the competition's own test set, hidden or not.

    The child reads the test images where they are: ``test.npz`` whole (a small competition), or
    the image folder a batch at a time, so memory is bounded by the batch, not the test set.
    """
    with tempfile.TemporaryDirectory(prefix="podium-infer-") as tmp:
        workdir = Path(tmp)
        if competition.folders:
            _ids, paths = held_out_image_files(competition)
            listing = workdir / "image_files.json"
            listing.write_text(json.dumps([str(p.resolve()) for p in paths]), encoding="utf-8")
            job = _job(checkpoint, competition, device, batch_size, isolate_network, image_files=str(listing))
            count = len(paths)
        else:
            count = len(load_npz(competition.test_path, ("ids",))["ids"])
            job = _job(checkpoint, competition, device, batch_size, isolate_network, npz=str(competition.test_path.resolve()))
        return run_child(job, workdir, competition.limits.inference_timeout_s, count, competition.num_classes)


def predict_images(
    path: str | Path,
    images: np.ndarray,
    competition: Competition,
    device: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """int64 class indices for uint8 ``images`` [M,H,W,3] (e.g. a worker's copy of test.npz)."""
    checkpoint = inspect_checkpoint(path, competition)
    return run_inspected(checkpoint, images, competition, device, batch_size).predictions


def predict_checkpoint(path: str | Path, competition: Competition, device: str | None = None) -> np.ndarray:
    """int64 class indices in solution row order (``test.npz`` or ``test.csv``); ``CheckpointError`` on every refusal."""
    checkpoint = inspect_checkpoint(path, competition)  # refuse before reading the test set
    return run_on_test_set(checkpoint, competition, device).predictions
