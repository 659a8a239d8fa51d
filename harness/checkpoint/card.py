"""The model card: what a checkpoint says about itself, kept in the safetensors metadata.

safetensors metadata is a flat ``{str: str}`` map, so every value is a string: ``library``
(``torchvision`` or ``timm``), ``arch`` (a registry name such as ``resnet50``), ``num_classes``
(decimal), and optionally ``input_size`` (decimal), ``mean`` and ``std`` (JSON lists of three
numbers). Other keys are kept by whoever wrote them and ignored here.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import CheckpointError

LIBRARIES = ("torchvision", "timm")
CARD_KEYS = ("library", "arch", "num_classes", "input_size", "mean", "std")
MAX_ARCH_LENGTH = 200


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint claims to be. Validate against a competition with ``harness.checkpoint.policy``."""

    library: str
    arch: str
    num_classes: int
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    @property
    def qualified_name(self) -> str:
        """``library/arch``, the form used by ``allowed_archs`` in competition.toml."""
        return f"{self.library}/{self.arch}"

    def to_metadata(self) -> dict[str, str]:
        """The card as safetensors metadata (every value a string)."""
        meta = {"library": self.library, "arch": self.arch, "num_classes": str(self.num_classes)}
        if self.input_size is not None:
            meta["input_size"] = str(self.input_size)
        if self.mean is not None:
            meta["mean"] = json.dumps(list(self.mean))
        if self.std is not None:
            meta["std"] = json.dumps(list(self.std))
        return meta

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> "ModelCard":
        """Read and check a card; every problem is named in one ``CheckpointError``."""
        if not metadata or not any(k in metadata for k in ("library", "arch", "num_classes")):
            raise CheckpointError(
                "this checkpoint has no model card: its safetensors metadata must name library "
                "(torchvision or timm), arch and num_classes. Write it with "
                "harness.checkpoint.save_checkpoint(model, path, library=..., arch=..., num_classes=...) "
                "or convert a .pt state dict with `podium pack MODEL.pt --library ... --arch ... -o model.safetensors`."
            )
        problems: list[str] = []
        values = {k: metadata.get(k) for k in CARD_KEYS}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                problems.append(f"model card: {key} must be a string in the safetensors metadata, got {type(value).__name__}.")
        if problems:
            raise CheckpointError(problems)
        library = values["library"]
        if library is None:
            problems.append("model card: library is missing; it must be torchvision or timm.")
        elif library not in LIBRARIES:
            problems.append(f"model card: library {_short(library)} is not supported; it must be torchvision or timm.")
        arch = values["arch"]
        if arch is None or not arch.strip():
            problems.append("model card: arch is missing; name the architecture, e.g. resnet50.")
        elif len(arch) > MAX_ARCH_LENGTH or not all(c.isalnum() or c in "_.-" for c in arch):
            problems.append(f"model card: arch {_short(arch)} is not a registry model name (letters, digits, _ . - only).")
        num_classes = _positive_int(values["num_classes"], "num_classes", problems, required=True)
        input_size = _positive_int(values["input_size"], "input_size", problems, required=False)
        mean = _triple(values["mean"], "mean", problems)
        std = _triple(values["std"], "std", problems)
        if problems:
            raise CheckpointError(problems)
        return cls(library, arch, num_classes, input_size, mean, std)  # type: ignore[arg-type]


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _positive_int(value: str | None, key: str, problems: list[str], required: bool) -> int | None:
    if value is None:
        if required:
            problems.append(f"model card: {key} is missing; write it as a whole number, e.g. \"10\".")
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) <= 0:
        problems.append(f"model card: {key} must be a positive whole number, got {_short(value)}.")
        return None
    return int(text)


def _triple(value: str | None, key: str, problems: list[str]) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value) if len(value) <= 200 else None
    except ValueError:
        parsed = None
    if not (
        isinstance(parsed, list)
        and len(parsed) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in parsed)
    ):
        problems.append(f"model card: {key} must be a JSON list of three numbers such as [0.5, 0.5, 0.5], got {_short(value)}.")
        return None
    return tuple(float(v) for v in parsed)  # type: ignore[return-value]


def _triple_or_none(values: Any, key: str) -> tuple[float, float, float] | None:
    if values is None:
        return None
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise ValueError(f"{key} must have three values (one per RGB channel), got {len(out)}")
    return out  # type: ignore[return-value]


def save_checkpoint(
    model_or_state_dict: Any,
    path: str | Path,
    *,
    library: str,
    arch: str,
    num_classes: int,
    input_size: int | None = None,
    mean: Any = None,
    std: Any = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a live ``nn.Module`` (or its state dict) as a ``.safetensors`` checkpoint with its card.

    ``mean`` and ``std`` are the normalisation the model was trained with (three numbers each);
    ``input_size`` the square side it expects. Leave them out to use the competition's
    ``eval_transform``. Tensors are copied to CPU and made contiguous; shared tensors are
    written once per name. ``extra_metadata`` (strings) is stored beside the card.
    Returns the path written.
    """
    import torch
    from safetensors.torch import save_file

    card = ModelCard(
        library=library,
        arch=arch,
        num_classes=int(num_classes),
        input_size=None if input_size is None else int(input_size),
        mean=_triple_or_none(mean, "mean"),
        std=_triple_or_none(std, "std"),
    )
    ModelCard.from_metadata(card.to_metadata())  # the same checks a submission gets
    if isinstance(model_or_state_dict, torch.nn.Module):
        state = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        state = model_or_state_dict
    else:
        raise TypeError(f"save_checkpoint needs an nn.Module or a state dict, got {type(model_or_state_dict).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor")
        # clone: safetensors refuses tensors that share storage (tied weights, views).
        tensors[str(name)] = value.detach().to("cpu").contiguous().clone()
    metadata = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    metadata.update(card.to_metadata())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    _canonicalize_header(path)
    return path


def _canonicalize_header(path: Path) -> None:
    """Sort the ``__metadata__`` keys of a .safetensors header in place, keeping its length.

    safetensors writes the metadata from a Rust HashMap, whose order changes from process to
    process, so two runs with identical weights would otherwise give files with different sha256.
    """
    with open(path, "r+b") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
        if "__metadata__" not in header:
            return
        ordered = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
        raw = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(raw) > length:  # cannot happen for the same content; leave the file as written
            return
        fh.seek(8)
        fh.write(raw + b" " * (length - len(raw)))
