"""What a competition allows a checkpoint: architectures, input size, normalisation, file size.

Pure checks on the card and ``competition.toml`` settings; no torch, so they run in the trusted
parent before any child process is started.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from harness.checkpoint.card import ModelCard
from harness.competition import Competition
from harness.errors import CheckpointError


@dataclass(frozen=True)
class InputSpec:
    """What the model is fed: ``size`` x ``size`` RGB scaled to [0,1], then (x - mean) / std."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def arch_allowed(card: ModelCard, allowed_archs: tuple[str, ...]) -> bool:
    """``allowed_archs`` holds ``library/arch`` patterns (``timm/*``, ``torchvision/resnet*``); empty = all."""
    if not allowed_archs:
        return True
    names = {card.qualified_name, f"{card.library}/{card.arch.split('.', 1)[0]}"}  # timm: with or without its tag
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in allowed_archs)


def check_card(card: ModelCard, competition: Competition) -> InputSpec:
    """The input the model gets, or a ``CheckpointError`` naming everything the competition refuses."""
    problems: list[str] = []
    if card.num_classes != competition.num_classes:
        problems.append(
            f"the model card says num_classes={card.num_classes} but this competition has "
            f"{competition.num_classes} classes ({', '.join(competition.classes[:5])}"
            f"{', ...' if competition.num_classes > 5 else ''}); replace the final layer and retrain."
        )
    if not arch_allowed(card, competition.allowed_archs):
        problems.append(
            f"the architecture {card.qualified_name} is not allowed in this competition; allowed: "
            f"{', '.join(competition.allowed_archs)}."
        )
    et, lim = competition.eval_transform, competition.limits
    size = card.input_size if card.input_size is not None else et.size
    if not lim.min_input_size <= size <= lim.max_input_size:
        problems.append(
            f"the model card asks for input_size {size}; this competition allows {lim.min_input_size} to "
            f"{lim.max_input_size} pixels."
        )
    mean = card.mean if card.mean is not None else et.mean
    std = card.std if card.std is not None else et.std
    if not all(0.0 <= m <= 1.0 for m in mean):
        problems.append(f"the model card's mean {list(mean)} must be three numbers between 0 and 1 (pixels are scaled to [0,1]).")
    if not all(1e-3 <= s <= 10.0 for s in std):
        problems.append(f"the model card's std {list(std)} must be three numbers between 0.001 and 10.")
    if problems:
        raise CheckpointError(problems)
    return InputSpec(size=size, mean=mean, std=std)


def check_file_size(size_bytes: int, competition: Competition) -> None:
    limit = competition.limits.max_checkpoint_bytes
    if size_bytes > limit:
        raise CheckpointError(
            f"this checkpoint is {size_bytes / 2**20:,.1f} MiB, over this competition's limit of "
            f"{limit / 2**20:,.1f} MiB; submit a smaller model or store it in float16/bfloat16."
        )
