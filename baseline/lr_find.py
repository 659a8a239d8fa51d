"""The learning-rate range test (course notes 000 §1.1 and 002 §4.6.2): ``podium lr-find``.

One short training run whose learning rate grows exponentially, one mini-batch at a time, from
``min_lr`` to ``max_lr``; the training loss of each batch is recorded and smoothed, and the sweep
stops early once the smoothed loss has diverged. The course notes' own version trains a fresh model for a
few epochs per rate; the sweep over mini-batches (Smith 2017, "Cyclical learning rates", as in
fastai and pytorch-lightning) gives the same curve for the cost of one or two epochs.

- Rate of step i (0-based, of ``steps``): ``min_lr * (max_lr / min_lr) ** (i / (steps - 1))``.
- Smoothed loss: an exponential moving average with bias correction,
  ``avg = beta * avg + (1 - beta) * loss``; ``smoothed_i = avg / (1 - beta ** (i + 1))``.
- Divergence: the sweep stops when the loss is not finite or the smoothed loss exceeds
  ``diverge`` times the lowest smoothed loss so far.
- Suggestion: ``SUGGESTION_RULE`` below (the course notes: "choose the rate where the loss falls fastest").

``range_test`` restores the model (parameters, buffers such as BatchNorm's running statistics,
gradients, train/eval mode), the optimizer (state and learning rates) and torch's random number
generator to exactly what they were, so a caller can run it on the model it is about to train.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from harness.errors import PodiumError

SKIP_START = 0.1  # the first 10 % of the recorded steps are left out of the suggestion: the average is still settling
SUGGESTION_RULE = (
    "the rate at which the smoothed loss falls fastest: the most negative slope of the smoothed loss "
    "against log10(learning rate) (numpy.gradient, central differences), among the steps after the first "
    f"{SKIP_START:.0%} and up to the step where the smoothed loss is lowest"
)


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    suggestion_step: int | None
    stop_reason: str  # "max_lr reached", "diverged" or "loss not finite"
    min_lr: float
    max_lr: float
    steps: int
    beta: float
    diverge: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def min_loss_lr(self) -> float | None:
        return self.lrs[int(np.argmin(self.smoothed))] if self.smoothed else None

    def to_dict(self) -> dict:
        return {
            "suggestion": self.suggestion,
            "suggestion_step": self.suggestion_step,
            "rule": SUGGESTION_RULE,
            "min_smoothed_loss_lr": self.min_loss_lr,
            "stop_reason": self.stop_reason,
            "steps_run": len(self.lrs),
            "steps": self.steps,
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "smoothing": self.beta,
            "diverge_factor": self.diverge,
            "seconds": self.seconds,
            "notes": self.notes,
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
        }


def sweep_lrs(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    return min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[int | None, str | None]:
    """(the step of ``SUGGESTION_RULE``, or None with the reason)."""
    if len(smoothed) < 5:
        return None, "fewer than 5 steps ran before the loss diverged; lower --min-lr"
    lowest = int(np.argmin(smoothed))
    start = int(len(smoothed) * SKIP_START)
    if lowest - start < 2:
        return None, "the smoothed loss never fell after the first steps; lower --min-lr or raise --max-lr"
    window = np.asarray(smoothed[: lowest + 1], dtype=np.float64)
    slopes = np.gradient(window, np.log10(np.asarray(lrs[: lowest + 1], dtype=np.float64)))
    step = start + int(np.argmin(slopes[start:]))
    if slopes[step] >= 0:
        return None, "the smoothed loss never fell; raise --max-lr"
    return step, None


def check_sweep(min_lr: float, max_lr: float, steps: int, beta: float, diverge: float) -> None:
    """The sweep's settings, checked before anything is loaded (a user error: ``PodiumError``)."""
    if not (0 < min_lr < max_lr) or not math.isfinite(max_lr):
        raise PodiumError(f"--min-lr and --max-lr must satisfy 0 < min < max, got {min_lr} and {max_lr}.")
    if steps < 5:
        raise PodiumError(f"--steps must be at least 5, got {steps}.")
    if not 0 <= beta < 1:
        raise PodiumError(f"--smoothing must be in [0, 1), got {beta}.")
    if diverge <= 1:
        raise PodiumError(f"--diverge must be above 1 (a multiple of the lowest smoothed loss), got {diverge}.")


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
    loss_fn: Callable = nn.functional.cross_entropy,
    progress: bool = False,
) -> RangeTest:
    """Sweep the rate over ``steps`` mini-batches of ``batches``; model and optimizer are restored after."""
    check_sweep(min_lr, max_lr, steps, beta, diverge)

    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    saved_cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    was_training = model.training

    lrs, losses, smoothed = [], [], []
    stop, avg, best = "max_lr reached", 0.0, math.inf
    started = time.perf_counter()
    try:
        model.train()
        for i, lr in enumerate(tqdm(sweep_lrs(min_lr, max_lr, steps), desc="lr-find", unit="batch",
                                    leave=False, disable=not progress)):
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            x, y = next(batches)
            loss = loss_fn(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.item())
            lrs.append(float(lr))
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.inf)
                stop = "loss not finite"
                break
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (i + 1))
            smoothed.append(smooth)
            best = min(best, smooth)
            if smooth > diverge * best:
                stop = "diverged"
                break
    finally:
        model.load_state_dict(saved_model)
        for p, g in zip(model.parameters(), saved_grads):
            p.grad = g
        optimizer.load_state_dict(saved_optimizer)
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)
        model.train(was_training)

    finite = [s if math.isfinite(s) else max(s for s in smoothed if math.isfinite(s)) * diverge for s in smoothed] \
        if any(math.isfinite(s) for s in smoothed) else []
    step, why = suggest(lrs[: len(finite)], finite)
    result = RangeTest(
        lrs=lrs, losses=losses, smoothed=smoothed, suggestion=None if step is None else lrs[step],
        suggestion_step=step, stop_reason=stop, min_lr=min_lr, max_lr=max_lr, steps=steps, beta=beta,
        diverge=diverge, seconds=time.perf_counter() - started,
    )
    if why:
        result.notes.append(f"no suggestion: {why}")
    elif stop == "max_lr reached":
        result.notes.append("the loss never diverged: --max-lr may be too low to see the whole curve")
    return result


def range_test_figure(result: RangeTest, title: str = ""):
    """The matplotlib figure of ``plot_range_test`` (a ``Figure``, not attached to pyplot's state):
    the raw and smoothed loss against the rate on a log x axis, the suggestion marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    raw = [v if math.isfinite(v) else np.nan for v in result.losses]
    smooth = [v if math.isfinite(v) else np.nan for v in result.smoothed]
    ax.plot(result.lrs, raw, color="tab:blue", alpha=0.3, label="loss per batch")
    ax.plot(result.lrs, smooth, color="tab:blue", label=f"smoothed (beta {result.beta:g})")
    ax.set_xscale("log")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", linestyle="--",
                   label=f"suggestion {result.suggestion:.3g} (steepest descent)")
        ax.plot([result.suggestion], [result.smoothed[result.suggestion_step]], "o", color="tab:red")
    finite = [v for v in smooth if not np.isnan(v)]
    if finite:  # the diverged tail would squash the interesting part
        low, high = min(finite), min(max(finite), result.diverge * min(finite))
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def axes_summary(fig) -> dict:
    """What the saved plot's axes are, read back from the figure: lr_find.json keeps it as ``plot``."""
    (ax,) = fig.axes
    return {"x_scale": ax.get_xscale(), "y_scale": ax.get_yscale(), "x_label": ax.get_xlabel(),
            "y_label": ax.get_ylabel(), "x_limits": [float(v) for v in ax.get_xlim()],
            "lines": [line.get_label() for line in ax.get_lines()]}


def plot_range_test(result: RangeTest, path: Path, title: str = "") -> dict:
    """``range_test_figure`` saved as a PNG (matplotlib's Agg canvas; no pyplot, no display needed);
    returns the ``axes_summary`` of the figure it saved."""
    fig = range_test_figure(result, title)
    fig.savefig(path, dpi=100)
    return axes_summary(fig)


def _cycle_batches(data, config, first_epoch: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches of epochs 1, 2, 3, ... (each epoch's own order and augmentation), forever."""
    from baseline.data import epoch_plan
    from baseline.transforms import TransformSpec

    spec = TransformSpec.from_config(config)
    epoch = first_epoch
    while True:
        plan = epoch_plan(len(data), spec, config.seed, epoch)
        for batch in data.train_batches(plan, config.batch_size):
            yield batch.x, batch.y
        epoch += 1


def run_lr_find(config, competition_dir: str | Path, out_dir: str | Path, *, min_lr: float = 1e-7,
                max_lr: float = 10.0, steps: int = 100, beta: float = 0.9, diverge: float = 4.0) -> RangeTest:
    """The range test for ``config``'s model on the competition's training split (never the
    validation or test images); writes ``lr_find.png`` and ``lr_find.json`` to ``out_dir``."""
    from baseline.data import make_data, stratified_split
    from baseline.distributed import Dist
    from baseline.model import build_baseline_model
    from baseline.train import select_device, set_determinism
    from baseline.transforms import TransformSpec
    from harness.competition import load_competition, load_train
    from harness.diagnosis import json_safe

    check_sweep(min_lr, max_lr, steps, beta, diverge)
    competition = load_competition(competition_dir)
    single = Dist()
    device = select_device(config, single)
    set_determinism(config, device)
    images, labels = load_train(competition)
    train_idx, _ = stratified_split(labels, config.val_fraction, config.seed)
    if len(train_idx) < 2:
        raise PodiumError("The training split has fewer than 2 images; the range test needs mini-batches.")
    spec = TransformSpec.from_config(config)
    data = make_data(config.data_path, images[train_idx], labels[train_idx], spec, device, config.workers,
                     channels_last=False)
    torch.manual_seed(config.seed)
    model = build_baseline_model(config.arch, config.weights, competition.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=min_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    result = range_test(model, optimizer, _cycle_batches(data, config), min_lr=min_lr, max_lr=max_lr, steps=steps,
                        beta=beta, diverge=diverge, progress=config.progress)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    axes = plot_range_test(result, out / "lr_find.png", f"{config.arch} on {competition.name}: learning-rate range test")
    report = {
        **result.to_dict(),
        "plot": {"file": "lr_find.png", **axes},
        "competition": competition.name,
        "train_images": int(len(train_idx)),
        "optimizer": f"SGD(momentum={config.momentum}, weight_decay={config.weight_decay})",
        "config": config.to_dict(),
    }
    (out / "lr_find.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result
