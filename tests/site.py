"""Shared by the page tests: an app with known organizer and worker tokens, a served copy, a
plausible training history, a CSV of predictions, a checkpoint file that becomes a queued job."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_safetensors

from tests.live import LiveServer, make_test_app


ADMIN = "pages-admin-token"
WORKER = "pages-worker-token"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = {"desktop": 1280, "phone": 390}


# --------------------------------------------------------------------------------------

def make_app(root: Path, competition_dir: Path, **extra):
    return make_test_app(root, competition_dir, ADMIN_TOKEN=ADMIN, WORKER_TOKEN=WORKER, **extra)


def served(app) -> LiveServer:
    return LiveServer(app, threads=4).start()


def history_csv(epochs: int) -> bytes:
    """A plausible training history: train loss falling, validation flattening out."""
    rows = ["epoch,train_loss,train_acc,val_loss,val_acc"]
    for e in range(1, epochs + 1):
        t = e / epochs
        rows.append(f"{e},{2.2 * (1 - t) + 0.05:.4f},{0.3 + 0.68 * t:.4f},{1.6 * (1 - t) ** 2 + 0.35:.4f},{0.35 + 0.55 * t:.4f}")
    return ("\n".join(rows) + "\n").encode()


def csv_of(solution, classes, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{classes[p]}\n" for i, p in zip(solution.ids, predictions))).encode()


def fake_checkpoint(seed: int) -> bytes:
    """A file with a valid card: enough to become a queued job (no worker here runs it)."""
    weights = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return save_safetensors({"w": weights}, metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})
