"""Checkpoint submissions: a ``.safetensors`` state dict of a torchvision or timm model, with a card.

Entry points:

- ``save_checkpoint(model_or_state_dict, path, *, library, arch, num_classes, input_size=None,
  mean=None, std=None) -> Path`` writes a checkpoint with its card (``harness.checkpoint.card``).
- ``predict_checkpoint(path, competition, device=None) -> np.ndarray``: int64 class indices in
  ``public/test.npz`` row order, computed in an isolated child process; every refusal is a
  ``CheckpointError``.
- ``predict_images(path, images, competition, device=None) -> np.ndarray``: the same for a
  uint8 ``[M,H,W,3]`` array, for a scoring worker that received the test images from a server.
"""
from __future__ import annotations

from harness.checkpoint.card import ModelCard, save_checkpoint

__all__ = ["ModelCard", "save_checkpoint"]
