"""The run directory: model.safetensors, history.csv, curves.png, predictions.csv, report.json."""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from baseline.config import BaselineConfig
from harness.checkpoint import save_checkpoint
from harness.competition import Competition
from harness.diagnosis import diagnose, json_safe, write_history
from harness.metrics import confusion_matrix, split_score
from harness.submission import write_predictions_csv

RUN_FILES = ("model.safetensors", "history.csv", "curves.png", "predictions.csv", "report.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("podium", "torch", "torchvision", "numpy", "safetensors"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def plot_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation, as a PNG (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    has_val = all(row["val_loss"] is not None for row in history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
            ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label="train")
            if has_val:
                ax.plot(epochs, [row[f"val_{key}"] for row in history], "s-", label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(label)
            ax.grid(True, alpha=0.3)
            ax.legend()
            if len(epochs) < 15:
                ax.set_xticks(epochs)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_run(out_dir: Path, config: BaselineConfig, competition: Competition, result) -> Path:
    """Write every file of the run directory from a finished ``RunResult``; returns the directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = save_checkpoint(
        result.model,
        out_dir / "model.safetensors",
        library="torchvision",
        arch=config.arch,
        num_classes=competition.num_classes,
        input_size=config.image_size,
        mean=config.mean,
        std=config.std,
        extra_metadata={"trained_by": "podium baseline", "preset": config.preset, "seed": str(config.seed),
                        "epoch": str(result.model_epoch)},
    )
    write_history(out_dir / "history.csv", result.history)
    plot_curves(result.history, out_dir / "curves.png", f"{config.arch} on {competition.name}")
    write_predictions_csv(out_dir / "predictions.csv", result.test_ids, result.test_predictions, competition.classes)

    validation = None
    if result.val_predictions is not None:
        cm = confusion_matrix(result.val_labels, result.val_predictions, competition.num_classes)
        validation = split_score(cm, competition.classes, competition.primary_metric).to_dict()
    report = {
        "competition": {"name": competition.name, "root": str(competition.root), "classes": list(competition.classes)},
        "config": config.to_dict(),
        "versions": versions(),
        "device": result.device,
        "data": result.data,
        "command": sys.argv,
        "history": result.history,
        "validation": validation,
        "early_stopping": {
            "patience": config.early_stopping or None,
            "best_epoch": result.best_epoch,  # the lowest validation loss
            "stopped_early": result.stopped_epoch is not None,
            "stopped_after_epoch": result.stopped_epoch,
            "restore_best": config.restore_best,
            "model_epoch": result.model_epoch,  # the epoch whose weights model.safetensors holds
        },
        "diagnosis": diagnose(result.history).to_dict(),
        "seconds": result.seconds,
        "files": {"model.safetensors": {"sha256": sha256_file(model_path)}},
    }
    text = json.dumps(json_safe(report), indent=2, default=_json_default, allow_nan=False)  # a diverged loss: null
    (out_dir / "report.json").write_text(text + "\n", encoding="utf-8")
    return out_dir


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
