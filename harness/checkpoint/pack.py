"""``podium pack``: a team's ``.pt``/``.pth`` state dict -> a ``.safetensors`` checkpoint with its card.

This runs on the team's own machine (or the organizer's, on a file they chose to convert), and
is the only place podium reads a pickle: archives are first checked (entry count, declared size,
TorchScript, torch.package), then read with ``torch.load(weights_only=True)`` only, never retried
without it (the attacker controls the error that would trigger a retry; docs/architecture.md). Accepted
contents: a state dict, or a dict holding one under ``state_dict``/``model``/``model_state_dict``;
a ``module.`` prefix (DataParallel/DDP) is removed. The result is checked strictly against the
named architecture before it is written.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.checkpoint.archive import inspect_zip
from harness.checkpoint.card import LIBRARIES, ModelCard, save_checkpoint
from harness.checkpoint.registry import build_untrained, key_problems
from harness.errors import CheckpointError
from harness.sniff import ZIP_MAGIC

DEFAULT_MAX_BYTES = 4 * 1024**3
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
MIN_TORCH = (2, 10)


def _require_safe_torch() -> None:
    import torch

    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        raise CheckpointError(
            f"podium pack needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]} (found {torch.__version__}): older versions can "
            "run code from a .pt file even with weights_only=True (CVE-2025-32434, CVE-2026-24747). Upgrade torch."
        )


def load_state_dict_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Tensors from a ``.pt``/``.pth`` file, read only with ``torch.load(weights_only=True)``."""
    import pickle

    import torch

    _require_safe_torch()
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist.") from None
    if size > max_bytes:
        raise CheckpointError(f"{path.name} is {size / 2**20:,.0f} MiB, over the {max_bytes / 2**20:,.0f} MiB limit.")
    if head == ZIP_MAGIC:
        inspect_zip(path, max_uncompressed_bytes=max_bytes)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never retried without weights_only
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, AttributeError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path.name} is not a plain state dict that torch.load(weights_only=True) can read, and podium will not "
            f"read it any other way ({first}). Save it with torch.save(model.state_dict(), '{path.name}')."
        ) from None
    return _find_state_dict(obj, path.name)


def _find_state_dict(obj: object, name: str) -> dict:
    import torch

    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise CheckpointError(
            f"{name} does not hold a state dict (a map of parameter names to tensors); save it with "
            "torch.save(model.state_dict(), ...), not the whole model."
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def infer_num_classes(state: dict, library: str, arch: str) -> int:
    """The class count a state dict was trained for: build the arch at its default head, compare shapes."""
    import torch

    default = 1000
    with torch.device("meta"):
        model = build_untrained(ModelCard(library, arch, default))
    for key, tensor in model.state_dict().items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape) and tensor.ndim >= 1 and tensor.shape[0] == default:
            return int(state[key].shape[0])
    return default


def pack_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    library: str,
    arch: str,
    num_classes: int | None = None,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ModelCard:
    """Convert ``src`` (a .pt/.pth state dict) into ``dst`` (.safetensors with its card); returns the card."""
    if library not in LIBRARIES:
        raise CheckpointError(f"library {library!r} is not supported; it must be torchvision or timm.")
    state = load_state_dict_file(src, max_bytes)
    if num_classes is None:
        num_classes = infer_num_classes(state, library, arch)
    card = ModelCard(library, arch, int(num_classes), input_size, mean, std)
    ModelCard.from_metadata(card.to_metadata())
    import torch

    with torch.device("meta"):
        model = build_untrained(card)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = key_problems(expected, {k: tuple(v.shape) for k, v in state.items()}, f"{library} {arch} with {num_classes} classes")
    if problems:
        raise CheckpointError(problems)
    save_checkpoint(
        state, dst, library=library, arch=arch, num_classes=card.num_classes,
        input_size=input_size, mean=mean, std=std,
    )
    return card
