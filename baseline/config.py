"""The baseline's settings: one dataclass, two presets, overrides from the command line.

``cifar10`` is the course notes' recipe exactly (course notes 002 §4.10): torchvision resnet50 with
IMAGENET1K_V1 weights, the last layer replaced for 10 classes, SGD lr 1e-3 (momentum 0: the course notes
say SGD and nothing more), batch 128, 3 epochs, images resized to 224, random crop, horizontal
flip, ImageNet normalization. The crop's padding is not in the course notes; 28 at 224 px is the classic
CIFAR pad-4 crop at the 7x scale.

``demo`` trains a small model on the digits competition on a CPU in well under a minute of CPU
time: resnet18 from scratch at 24 px, 4 epochs; it uses momentum and a higher learning rate so that
it really learns in a few epochs. The digits are scikit-learn's 8x8 images upscaled to 32 px, so
24 px loses nothing; on a CPU the cost is resnet18's 11 M parameters times the images seen (on the
shared 2-core machine about 7 s of CPU per epoch of the 1132 training digits at 16 px, 8.6 s at 24 px,
11.5 s at 32 px), and 24 px is the smallest size at which Grad-CAM (``podium explain``) still has
a 6x6 feature map to draw (``layer1``; see baseline/explain.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import PodiumError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATA_PATHS = ("fast", "reference")
LR_SCHEDULES = ("constant", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class BaselineConfig:
    preset: str = "cifar10"
    arch: str = "resnet50"
    weights: str = "IMAGENET1K_V1"  # a torchvision weights name for ``arch``, or "none"
    epochs: int = 3
    batch_size: int = 128  # the global batch: split across processes under torchrun
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # the course notes'; "cosine" lowers it each epoch, to lr/2*(1+cos(pi*(e-1)/E))
    # "plateau": ReduceLROnPlateau on the validation loss (course notes 002 §4.6.3): the rate is multiplied by
    # plateau_factor at the end of the (plateau_patience + 1)-th epoch in a row without a validation loss
    # lower than the best by torch's default relative threshold of 1e-4 (patience 0: every such epoch).
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    early_stopping: int = 0  # stop once this many epochs have passed since the lowest validation loss; 0 = off
    restore_best: bool = False  # keep the weights of the epoch with the lowest validation loss
    seed: int = 42
    image_size: int = 224
    crop_padding: int = 28
    hflip: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    val_fraction: float = 0.1
    device: str = "auto"
    deterministic: bool = False
    compile: bool = False
    data_path: str = "fast"
    amp: bool = True  # bf16 autocast and channels_last, on CUDA only
    # cuDNN autotuning on CUDA. Off: on an H200 (2026-12-04) it cost the first epoch of the course notes'
    # recipe 16-22 s of timing every layer shape and gained nothing after (10.9 s per epoch either way).
    cudnn_benchmark: bool = False
    workers: int = 4  # DataLoader workers of the reference path
    eval_batch_size: int = 512
    threads: int = 0  # CPU threads for torch (0: torch's default, one per core)
    progress: bool = True
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes saved with the run

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


PRESETS: dict[str, BaselineConfig] = {
    "cifar10": BaselineConfig(),
    "demo": BaselineConfig(
        preset="demo",
        arch="resnet18",
        weights="none",
        epochs=4,
        batch_size=64,
        lr=0.02,
        momentum=0.9,
        weight_decay=5e-4,
        lr_schedule="cosine",  # steady last epochs, so the demo's final model is a good one
        image_size=24,
        crop_padding=3,  # CIFAR's pad-4 crop at 3/4 of the scale
        hflip=0.0,  # mirrored digits are other symbols
        device="cpu",
        workers=0,
        eval_batch_size=256,
        # One thread: on a shared 2-core machine two OpenMP threads ran up to 10x slower than one.
        threads=1,
    ),
}


def resolve_config(preset: str, **overrides) -> BaselineConfig:
    """The preset with every override that is not None applied, checked."""
    if preset not in PRESETS:
        raise PodiumError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(BaselineConfig)}
    if unknown:
        raise PodiumError(f"Unknown baseline setting(s): {', '.join(sorted(unknown))}.")
    config = dataclasses.replace(PRESETS[preset], **changes)
    check_config(config)
    return config


def check_config(c: BaselineConfig) -> None:
    problems = []
    if c.epochs < 1:
        problems.append(f"--epochs must be at least 1, got {c.epochs}.")
    if c.batch_size < 2:
        problems.append(f"--batch-size must be at least 2, got {c.batch_size}.")
    if c.lr <= 0:
        problems.append(f"--lr must be positive, got {c.lr}.")
    if c.momentum < 0 or c.weight_decay < 0:
        problems.append("--momentum and --weight-decay cannot be negative.")
    if c.image_size < 8:
        problems.append(f"--image-size must be at least 8 pixels, got {c.image_size}.")
    if not 0 <= c.crop_padding <= c.image_size:
        problems.append(f"--crop-padding must be between 0 and the image size, got {c.crop_padding}.")
    if not 0.0 <= c.val_fraction < 1.0:
        problems.append(f"--val-fraction must be in [0, 1), got {c.val_fraction}.")
    if not 0.0 <= c.hflip <= 1.0:
        problems.append(f"hflip must be a probability, got {c.hflip}.")
    if c.lr_schedule not in LR_SCHEDULES:
        problems.append(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {c.lr_schedule!r}.")
    if not 0.0 < c.plateau_factor < 1.0:
        problems.append(f"--plateau-factor must be between 0 and 1 (the rate is multiplied by it), got {c.plateau_factor}.")
    if c.plateau_patience < 0 or c.early_stopping < 0:
        problems.append("--plateau-patience and --early-stopping cannot be negative.")
    if c.val_fraction == 0 and (c.early_stopping or c.restore_best or c.lr_schedule == "plateau"):
        problems.append(
            "--early-stopping, --restore-best and --lr-schedule plateau watch the validation loss; "
            "they need a validation split (--val-fraction above 0)."
        )
    if c.data_path not in DATA_PATHS:
        problems.append(f"--data-path must be one of {', '.join(DATA_PATHS)}, got {c.data_path!r}.")
    if c.device not in DEVICES and not (c.device.startswith("cuda:") and c.device[5:].isdigit() and c.device[5:].isascii()):
        problems.append(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), got {c.device!r}.")
    if c.workers < 0 or c.threads < 0:
        problems.append("--workers and --threads cannot be negative.")
    if problems:
        raise PodiumError(problems)


# A preset file (``podium baseline --config FILE``, written by ``podium tune``): a TOML file of
# ``BaselineConfig`` settings, with ``preset = "NAME"`` naming the preset they start from.
NOT_IN_FILES = ("extra",)


def _file_value(key: str, value, default, where: str):
    """``value`` checked against the type of the setting's default (TOML has the same few types)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # mean, std: three numbers
        ok = (isinstance(value, list) and len(value) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        value = tuple(float(v) for v in value) if ok else value
    if not ok:
        kind = type(default).__name__ if not isinstance(default, tuple) else "list of three numbers"
        raise PodiumError(f"{where}: {key} must be a {kind}, got {value!r}.")
    return value


def read_config_file(path) -> tuple[str | None, dict]:
    """(the preset it names or None, its settings), each setting checked by name and type."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PodiumError(f"The config file {path} does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PodiumError(f"{path} is not a valid TOML file: {exc}.") from None
    preset = data.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise PodiumError(f"{path}: preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
    defaults = BaselineConfig()
    known = {f.name for f in dataclasses.fields(BaselineConfig)} - set(NOT_IN_FILES)
    unknown = sorted(set(data) - known)
    if unknown:
        raise PodiumError(f"{path}: unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(sorted(known))}.")
    return preset, {key: _file_value(key, value, getattr(defaults, key), str(path)) for key, value in data.items()}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def write_config_file(path, preset: str, settings: dict, comment: str = "") -> Path:
    """A preset file that ``read_config_file`` (and ``podium baseline --config``) reads back."""
    path = Path(path)
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines.append(f"preset = {_toml_value(preset)}")
    lines += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read_config_file(path)  # what we write must read back
    return path


def config_changes(config: BaselineConfig) -> dict:
    """The settings of ``config`` that differ from its preset (what a preset file must hold)."""
    base = PRESETS[config.preset]
    skip = set(NOT_IN_FILES) | {"preset", "progress"}
    out = {}
    for f in dataclasses.fields(BaselineConfig):
        value = getattr(config, f.name)
        if f.name not in skip and value != getattr(base, f.name):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
