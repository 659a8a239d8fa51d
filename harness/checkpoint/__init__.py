"""Checkpoint submissions: a ``.safetensors`` state dict of a torchvision or timm model, with a card.

Entry points (torch is imported only where a model is built or run, never by this package's import):

- ``save_checkpoint(model_or_state_dict, path, *, library, arch, num_classes, input_size=None,
  mean=None, std=None) -> Path``: write a checkpoint with its card (``card.py``).
- ``predict_checkpoint(path, competition, device=None) -> np.ndarray``: int64 class indices in
  solution row order, on the competition's test set wherever it is (``test.npz``, or an image
  folder the child decodes a batch at a time; in ``private/`` for a hidden test set). Raises ``CheckpointError`` (a ``SubmissionError``) for every
  refusal, timeout, crash or out-of-memory, and ``InferenceEnvironmentError`` (a ``PodiumError``,
  the organizer's problem, e.g. ``device="cuda"`` on a machine without one).
- ``predict_images(path, images, competition, device=None, batch_size=None) -> np.ndarray``: the
  same for a uint8 ``[M,H,W,3]`` array, for a scoring worker that got test.npz from the server.
- ``inspect_checkpoint(path, competition)`` + ``run_inspected(...)`` or ``run_on_test_set(...)``
  ``-> ChildResult`` (predictions
  and run info: device, network isolation, memory cap, images/s) for callers that want both steps.
- ``pack_checkpoint(src, dst, *, library, arch, ...)``: ``podium pack``, a ``.pt/.pth`` state dict
  read with ``torch.load(weights_only=True)`` (never retried without) -> ``.safetensors``.

Safety (docs/architecture.md, "Security rules"): a ``.pt``/``.pth`` or pickle submitted for
scoring is refused with the ``podium pack`` command to run; it is never unpickled on the scoring
side, not even in the child. Safetensors headers are parsed and checked by ``safefile.py`` before
the safetensors library sees the file; zip archives by ``archive.py`` before torch does. The model
is built by name from the registries (``registry.py``) and runs in a child process (``child.py``,
``isolate.py``) with a wall-clock timeout, a memory cap (``RLIMIT_AS`` on CPU only; on CUDA a GPU
memory fraction, since CUDA needs a huge address space) and no network (a new network namespace
via ``unshare``, when the kernel permits it; the run info says whether it did). The child is
handed the test images only, never ids, labels or the solution.
"""
from __future__ import annotations

from harness.checkpoint.card import ModelCard, save_checkpoint
from harness.checkpoint.pack import pack_checkpoint
from harness.checkpoint.isolate import ChildResult, InferenceEnvironmentError
from harness.checkpoint.predict import (
    InspectedCheckpoint,
    inspect_checkpoint,
    predict_checkpoint,
    predict_images,
    run_inspected,
    run_on_test_set,
)

__all__ = [
    "ChildResult",
    "InferenceEnvironmentError",
    "InspectedCheckpoint",
    "ModelCard",
    "inspect_checkpoint",
    "predict_checkpoint",
    "pack_checkpoint",
    "predict_images",
    "run_inspected",
    "run_on_test_set",
    "save_checkpoint",
]
