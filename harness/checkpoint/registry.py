"""Architectures by name from torchvision's and timm's registries; never code from a submission.

``build_untrained(card)`` returns an untrained model (``weights=None`` / ``pretrained=False``) with the
card's ``num_classes``; ``load_strict(model, header, path)`` checks every key and shape against the
file's header (already validated, nothing loaded yet) before the safetensors library reads it.
Imports torch: used inside the inference child and by ``podium pack``.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from harness.checkpoint.card import ModelCard
from harness.checkpoint.safefile import SafetensorsHeader
from harness.errors import CheckpointError

if TYPE_CHECKING:
    import torch

SHOWN_KEYS = 5


def registry_names(library: str) -> list[str]:
    """Every classification model name the library offers."""
    if library == "torchvision":
        import torchvision

        return list(torchvision.models.list_models(module=torchvision.models))
    if library == "timm":
        import timm

        return list(timm.list_models())
    raise CheckpointError(f"library {library!r} is not supported; it must be torchvision or timm.")


def _check_arch(card: ModelCard) -> None:
    names = registry_names(card.library)
    base = card.arch.split(".", 1)[0] if card.library == "timm" else card.arch
    if base in names:
        return
    close = difflib.get_close_matches(base, names, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise CheckpointError(
        f"{card.library} has no classification model named {card.arch!r}.{hint} "
        f"The names are those of {'torchvision.models.list_models()' if card.library == 'torchvision' else 'timm.list_models()'}."
    )


def build_untrained(card: ModelCard) -> "torch.nn.Module":
    """An untrained ``card.arch`` from ``card.library`` with ``card.num_classes`` outputs, in eval mode."""
    _check_arch(card)
    try:
        if card.library == "torchvision":
            import torchvision

            model = torchvision.models.get_model(card.arch, weights=None, num_classes=card.num_classes)
        else:
            import timm

            model = timm.create_model(card.arch, pretrained=False, num_classes=card.num_classes)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise CheckpointError(
            f"{card.library} could not build {card.arch} with num_classes={card.num_classes}: {str(exc)[:300]}"
        ) from None
    return model.eval()


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def key_problems(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], what: str) -> list[str]:
    """Messages for missing, unexpected and wrongly shaped keys (first few of each, with counts)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} key(s) that {what} needs are missing from the checkpoint: {_listed(missing)}.")
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) in the checkpoint are not part of {what}: {_listed(unexpected)}.")
    if wrong:
        shown = "; ".join(f"{k} is {list(found[k])} in the file but {list(expected[k])} in the model" for k in wrong[:SHOWN_KEYS])
        more = f" and {len(wrong) - SHOWN_KEYS} more" if len(wrong) > SHOWN_KEYS else ""
        problems.append(f"{len(wrong)} key(s) have the wrong shape: {shown}{more}.")
    if problems and any(k.startswith("module.") for k in unexpected[:1]):
        problems.append("keys start with 'module.': save model.module.state_dict() when training with DataParallel/DDP.")
    return problems


def load_strict(model: "torch.nn.Module", header: SafetensorsHeader, path: str | Path, card: ModelCard) -> None:
    """Load the checkpoint's tensors into ``model``; every key must match by name and shape."""
    from safetensors.torch import load_file

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    what = f"{card.library} {card.arch} with {card.num_classes} classes"
    problems = key_problems(expected, header.shapes(), what)
    if problems:
        raise CheckpointError(problems)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # the library's own checks (SafetensorError and friends): the file's fault
        raise CheckpointError(f"the safetensors library refused this file: {str(exc)[:300]}") from None
    model.load_state_dict(tensors, strict=True)
