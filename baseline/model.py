"""The model: a torchvision classifier, its pretrained weights through torchvision's weights API,
and its last layer replaced for the competition's classes."""
from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from harness.errors import PodiumError


def resolve_weights(arch: str, name: str):
    """The torchvision weights enum member for ``arch`` named ``name`` (or None for "none")."""
    if name.lower() in ("none", ""):
        return None
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise PodiumError(f"torchvision has no pretrained weights for {arch!r}; use --weights none.") from None
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        choices = ", ".join(["DEFAULT", *(w.name for w in enum), "none"])
        raise PodiumError(f"{arch} has no weights named {name!r}; choose one of {choices}.") from None


def weights_cache_path(weights) -> Path:
    """Where torchvision looks for (and downloads) ``weights``: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last ``nn.Linear`` (``fc`` for ResNets) for a fresh one with ``num_classes`` outputs."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise PodiumError(f"{type(model).__name__} has no final linear layer to replace.")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return model


def build_baseline_model(arch: str, weights_name: str, num_classes: int) -> nn.Module:
    """``torchvision.models.get_model(arch, weights=...)`` with its last layer replaced.

    Offline, a missing weights file raises ``PodiumError`` that says where to put it.
    """
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise PodiumError(
            f"{arch!r} is not a torchvision classification model; for example resnet18, resnet50, "
            "mobilenet_v3_small, efficientnet_b0, convnext_tiny."
        )
    weights = resolve_weights(arch, weights_name)
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        target = weights_cache_path(weights) if weights is not None else None
        if target is None or not target.is_file():
            raise
        # A damaged file in the cache (a copy cut short): torch.load(weights_only=True) refused it.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PodiumError(
            f"The pretrained weights file {target} is damaged and could not be read ({first}). Delete it and run "
            f"again to download it, or copy {weights.url} there again; or train from scratch with --weights none."
        ) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        target = weights_cache_path(weights)
        raise PodiumError(
            [
                f"Could not download the pretrained weights {arch} {weights.name} ({exc}).",
                f"On a machine with internet, download {weights.url} and copy it to {target} "
                f"(that is $TORCH_HOME/hub/checkpoints/{target.name}; TORCH_HOME defaults to ~/.cache/torch), "
                "then run again. Or train from scratch with --weights none.",
            ]
        ) from None
    return replace_head(model, num_classes)
