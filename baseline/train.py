"""The training run: set up, train and validate each epoch, predict the test set, write the run.

One function (``run_baseline``) for both data paths and for one or many processes. Under
``torchrun`` each process takes a contiguous share of every global batch (the global batch stays
``batch_size``), and the loss is scaled so that DistributedDataParallel's gradient average equals
the gradient of the mean over the whole global batch.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from baseline.config import BaselineConfig
from baseline.data import FastData, ReferenceData, epoch_plan, global_batches, make_data, stratified_split
from baseline.distributed import Dist, all_concat, all_sum, barrier, init_distributed, shutdown
from baseline.model import build_baseline_model
from baseline.transforms import TransformSpec
from harness.competition import Competition, load_competition, load_test, load_train
from harness.errors import PodiumError


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float


@dataclass
class RunResult:
    out_dir: Path | None
    history: list[dict]
    val_predictions: np.ndarray | None
    val_labels: np.ndarray | None
    test_predictions: np.ndarray
    test_ids: np.ndarray
    seconds: float
    device: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    model: nn.Module | None = None  # the trained model (unwrapped from DDP and torch.compile)
    best_epoch: int | None = None  # the epoch with the lowest validation loss (None without validation)
    stopped_epoch: int | None = None  # the epoch after which early stopping ended the run, if it did
    model_epoch: int | None = None  # the epoch whose weights ``model`` holds (the best one with restore_best)


def select_device(config: BaselineConfig, d: Dist) -> torch.device:
    wanted = config.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PodiumError(f"--device {config.device} was asked for, but no CUDA GPU is available; use --device cpu.")
        return torch.device("cuda", d.local_rank if d.enabled else (torch.device(wanted).index or 0))
    return torch.device("cpu")


def set_determinism(config: BaselineConfig, device: torch.device) -> None:
    """Seeds, and with ``deterministic`` every flag that makes GPU kernels repeatable, in one place."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # must precede the first cuBLAS call
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _autocast(config: BaselineConfig, device: torch.device):
    if device.type == "cuda" and config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_lr(config: BaselineConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based): constant (the course notes'), or cosine from lr down.
    (``plateau`` is driven by the validation loss, by ReduceLROnPlateau in ``_train``.)"""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return config.lr


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: FastData | ReferenceData,
    config: BaselineConfig,
    epoch: int,
    d: Dist,
    device: torch.device,
) -> EpochStats:
    model.train()
    spec = TransformSpec.from_config(config)
    plan = epoch_plan(len(data), spec, config.seed, epoch)
    steps = len(global_batches(len(data), config.batch_size, d.world_size))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    _sync(device)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
               disable=not (d.is_main and config.progress))
    for batch in data.train_batches(plan, config.batch_size, d.rank, d.world_size):
        with _autocast(config, device):
            logits = model(batch.x)
        losses = nn.functional.cross_entropy(logits.float(), batch.y, reduction="none")
        # sum / global size, times world size: DDP's average of the processes' gradients is then the
        # gradient of the mean loss over the whole global batch, whatever the shares' sizes.
        loss = losses.sum() * (d.world_size / batch.global_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += losses.detach().sum()
        correct += (logits.detach().argmax(1) == batch.y).sum()
        seen += len(batch.y)
        bar.update(1)
    bar.close()
    _sync(device)
    seconds = time.perf_counter() - start
    total_loss, total_correct, total_seen = all_sum(d, [loss_sum.item(), float(correct.item()), float(seen)], device)
    return EpochStats(total_loss / max(total_seen, 1), total_correct / max(total_seen, 1), int(total_seen), seconds)


@torch.inference_mode()
def predict(
    model: nn.Module, data: FastData | ReferenceData, config: BaselineConfig, d: Dist, device: torch.device
) -> tuple[np.ndarray, float]:
    """(class predictions for every image of ``data``, summed cross-entropy when it has labels)."""
    model.eval()
    preds, loss_sum = [], torch.zeros((), dtype=torch.float64, device=device)
    for batch in data.eval_batches(config.eval_batch_size, d.rank, d.world_size):
        with _autocast(config, device):
            logits = model(batch.x).float()
        preds.append(logits.argmax(1))  # stays on the device: no sync per batch
        if batch.y.numel():
            loss_sum += nn.functional.cross_entropy(logits, batch.y, reduction="sum")
    mine = torch.cat(preds).cpu().numpy() if preds else np.empty(0, dtype=np.int64)
    (loss_sum,) = all_sum(d, [loss_sum.item()], device)
    return all_concat(d, mine), loss_sum


def describe_device(device: torch.device, d: Dist) -> dict:
    import platform

    info = {"type": device.type, "world_size": d.world_size, "torch_threads": torch.get_num_threads()}
    info["name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return info


def run_baseline(
    config: BaselineConfig,
    competition_dir: str | Path,
    out_dir: str | Path | None,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    predict_test: bool = True,
) -> RunResult:
    """Train, validate and predict; the main process writes the run directory (``out_dir``).

    ``on_epoch(row)`` is called after each epoch with its history row (``podium tune`` reports the
    validation loss to Optuna's pruner there; an exception it raises ends the run). With
    ``predict_test=False`` the test set is never read (no run directory can then be written).
    """
    if out_dir is not None and not predict_test:
        raise ValueError("a run directory needs the test predictions: pass predict_test=True or out_dir=None")
    started = time.perf_counter()
    competition = load_competition(competition_dir)
    device_type = "cuda" if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()) else "cpu"
    d = init_distributed(device_type)
    try:
        device = select_device(config, d)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        set_determinism(config, device)
        result = _train(config, competition, d, device, started, on_epoch, predict_test)
        if d.is_main and out_dir is not None:
            from baseline.report import write_run

            result.out_dir = write_run(Path(out_dir), config, competition, result)
        barrier(d)
        return result
    finally:
        shutdown(d)


def _train(
    config: BaselineConfig,
    competition: Competition,
    d: Dist,
    device: torch.device,
    started: float,
    on_epoch: Callable[[dict], None] | None = None,
    predict_test: bool = True,
) -> RunResult:
    spec = TransformSpec.from_config(config)
    images, labels = load_train(competition)
    train_idx, val_idx = stratified_split(labels, config.val_fraction, config.seed)
    channels_last = device.type == "cuda" and config.amp
    make = lambda imgs, labs: make_data(config.data_path, imgs, labs, spec, device, config.workers, channels_last)  # noqa: E731
    train_data = make(images[train_idx], labels[train_idx])
    val_data = make(images[val_idx], labels[val_idx]) if len(val_idx) else None

    if not d.is_main:
        barrier(d)  # let the main process download the weights first
    torch.manual_seed(config.seed)
    model = build_baseline_model(config.arch, config.weights, competition.num_classes)
    if d.is_main:
        barrier(d)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    base = model
    if d.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eval_model = base
    if config.compile:
        model, eval_model = torch.compile(model), torch.compile(base)
    optimizer = torch.optim.SGD(
        base.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        fused=device.type == "cuda",  # one kernel for the whole update on a GPU; the same SGD
    )

    plateau = None
    if config.lr_schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
        )
    history: list[dict] = []
    val_pred = None
    best_loss, best_epoch, best_state, best_pred, stopped = math.inf, None, None, None, None
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        if plateau is None:
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr(config, epoch)
        stats = train_one_epoch(model, optimizer, train_data, config, epoch, d, device)
        row = {
            "epoch": epoch,
            "train_loss": stats.loss,
            "train_acc": stats.accuracy,
            "val_loss": None,
            "val_acc": None,
            "val_rows": len(val_idx) if val_data is not None else None,  # the diagnosis weighs noise by it
            "lr": optimizer.param_groups[0]["lr"],
        }
        if val_data is not None:
            val_pred, val_loss_sum = predict(eval_model, val_data, config, d, device)
            row["val_loss"] = val_loss_sum / len(val_idx)
            row["val_acc"] = float(np.mean(val_pred == labels[val_idx]))
        row["seconds"] = time.perf_counter() - t0
        row["images_per_s"] = stats.images / stats.seconds if stats.seconds > 0 else 0.0
        history.append(row)
        if d.is_main and config.progress:
            print(format_epoch(row, config.epochs), flush=True)
        if val_data is not None:
            if plateau is not None:
                plateau.step(row["val_loss"])  # the next epoch's rate
            if math.isfinite(row["val_loss"]) and row["val_loss"] < best_loss:
                best_loss, best_epoch, best_pred = row["val_loss"], epoch, val_pred
                if config.restore_best:
                    best_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
        if on_epoch is not None:
            on_epoch(row)
        if config.early_stopping and epoch - (best_epoch or 0) >= config.early_stopping and epoch < config.epochs:
            stopped = epoch
            if d.is_main and config.progress:
                print(f"early stopping: no lower validation loss for {config.early_stopping} epoch(s) "
                      f"(best: epoch {best_epoch})", flush=True)
            break

    model_epoch = history[-1]["epoch"]
    if best_state is not None:
        base.load_state_dict(best_state)
        val_pred, model_epoch = best_pred, best_epoch

    if predict_test:
        test_images, test_ids = load_test(competition)
        test_pred, _ = predict(eval_model, make(test_images, None), config, d, device)
    else:
        test_pred, test_ids = np.empty(0, dtype=np.int64), np.empty(0, dtype=str)
    result = RunResult(
        out_dir=None,
        history=history,
        val_predictions=val_pred,
        val_labels=labels[val_idx] if len(val_idx) else None,
        test_predictions=test_pred,
        test_ids=test_ids,
        seconds=time.perf_counter() - started,
        device=describe_device(device, d),
        data={
            "train_images": len(train_idx),
            "val_images": len(val_idx),
            "test_images": len(test_ids),
            "global_batch": config.batch_size,
            "world_size": d.world_size,
            "steps_per_epoch": len(global_batches(len(train_idx), config.batch_size, d.world_size)),
            "data_path": config.data_path,
        },
        model=base,
        best_epoch=best_epoch,
        stopped_epoch=stopped,
        model_epoch=model_epoch,
    )
    return result


def format_epoch(row: dict, epochs: int) -> str:
    val = (
        f"val_loss {row['val_loss']:.4f} val_acc {row['val_acc']:.4f}" if row["val_loss"] is not None else "no validation"
    )
    return (
        f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f} train_acc {row['train_acc']:.4f}  "
        f"{val}  lr {row['lr']:g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s"
    )
