"""`podium lr-find`: the learning-rate range test on the digits competition (real resnet18, CPU)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from baseline.lr_find import SKIP_START, range_test, suggest, sweep_lrs

PODIUM = [sys.executable, "-m", "podium_cli"]  # the `podium` command, as a real process


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def digits_model_and_batches(competition, seed: int = 0):
    """The demo's resnet18 (BatchNorm buffers, momentum state) and an endless stream of real digits
    training batches of 8 at 16 px, cut and augmented as `podium lr-find` cuts them."""
    from baseline.config import resolve_config
    from baseline.data import make_data, stratified_split
    from baseline.lr_find import _cycle_batches
    from baseline.model import build_baseline_model
    from baseline.transforms import TransformSpec
    from harness.competition import load_train

    config = resolve_config("demo", image_size=16, crop_padding=2, batch_size=8, seed=seed)
    images, labels = load_train(competition)
    train_idx, _ = stratified_split(labels, config.val_fraction, config.seed)
    data = make_data("fast", images[train_idx], labels[train_idx], TransformSpec.from_config(config),
                     torch.device("cpu"), channels_last=False)
    torch.manual_seed(seed)
    model = build_baseline_model("resnet18", "none", 10)
    return model, _cycle_batches(data, config)


def snapshot(model, optimizer) -> tuple[dict, dict, list, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    opt_state = {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()} for i, s in opt["state"].items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return state, {"state": opt_state, "param_groups": [dict(g) for g in opt["param_groups"]]}, grads, torch.get_rng_state()


def test_range_test_restores_model_optimizer_and_rng_bit_for_bit(digits_competition):
    model, batches = digits_model_and_batches(digits_competition)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = next(batches)  # one real step first: momentum buffers, gradients and BN statistics exist
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    model.eval()
    before = snapshot(model, optimizer)

    x, _ = next(batches)
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32  # real digits, normalized
    result = range_test(model, optimizer, batches, min_lr=1e-4, max_lr=1.0, steps=6, beta=0.5)
    assert len(result.lrs) >= 2  # it really trained (and changed the weights while it ran)

    after = snapshot(model, optimizer)
    assert before[0].keys() == after[0].keys()
    for key in before[0]:  # parameters and buffers (BatchNorm running statistics, num_batches_tracked)
        assert torch.equal(before[0][key], after[0][key]), key
        assert before[0][key].dtype == after[0][key].dtype
    assert before[1]["param_groups"] == after[1]["param_groups"]  # learning rate 0.01 again
    for i in before[1]["state"]:
        assert torch.equal(before[1]["state"][i]["momentum_buffer"], after[1]["state"][i]["momentum_buffer"])
    for g0, g1 in zip(before[2], after[2]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    assert torch.equal(before[3], after[3])
    assert not model.training  # the mode it was in

    # The plot of this sweep: the rate on a log x axis, both curves drawn at the swept rates.
    from baseline.lr_find import axes_summary, range_test_figure

    fig = range_test_figure(result)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    raw, smooth = ax.get_lines()[:2]
    assert list(raw.get_xdata()) == result.lrs == list(smooth.get_xdata())
    assert list(raw.get_ydata()) == result.losses
    summary = axes_summary(fig)
    assert summary["x_scale"] == "log" and summary["x_limits"][0] <= result.lrs[0] < result.lrs[-1] <= summary["x_limits"][1]


def test_sweep_is_exponential_and_the_suggestion_is_the_steepest_descent():
    lrs = sweep_lrs(1e-6, 1.0, 61)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 0.1)
    # A loss that falls fastest at 1e-3 (a logistic in log10 lr), then rises after 0.1.
    t = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-3 * (t + 3))) + np.where(t > -1, (t + 1) ** 2 * 10, 0)
    step, why = suggest(list(lrs), list(loss))
    assert why is None and lrs[step] == pytest.approx(1e-3)
    # Never past the minimum, never in the first SKIP_START of the steps.
    assert step <= int(np.argmin(loss)) and step >= int(len(loss) * SKIP_START)
    flat = [1.0] * 30
    assert suggest(list(lrs[:30]), flat)[0] is None


def test_bad_range_is_a_user_error(digits_competition, tmp_path):
    proc = subprocess.run([*PODIUM, "lr-find", "--competition", str(digits_competition.root), "--preset", "demo",
                           "--out", str(tmp_path / "lr"), "--min-lr", "1", "--max-lr", "0.1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--min-lr and --max-lr" in proc.stderr


@pytest.mark.slow
def test_lr_find_on_the_demo_network(digits_competition, tmp_path):
    out = tmp_path / "lr"
    # The README's student's loop: 30 steps from 1e-4 (nothing happens below it for this network).
    proc = run([*PODIUM, "lr-find", "--competition", str(digits_competition.root), "--preset", "demo",
                "--threads", "1", "--min-lr", "1e-4", "--steps", "30", "--quiet", "--out", str(out)])
    assert "suggested learning rate" in proc.stdout and "rule: the rate at which" in proc.stdout
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "lr_find.json").read_text())
    lrs, smoothed, losses = report["lrs"], report["smoothed"], report["losses"]
    assert len(lrs) == len(smoothed) == len(losses) == report["steps_run"] <= 30
    assert lrs[0] == pytest.approx(1e-4)
    # Exponential: a constant ratio between steps, 30 steps from 1e-4 to 10.
    assert np.allclose(np.diff(np.log10(lrs)), 5 / 29)
    # The demo network (SGD momentum 0.9) trains well at 0.02: a sane suggestion is within a decade or so.
    suggestion = report["suggestion"]
    assert 1e-3 <= suggestion <= 0.3, suggestion
    assert "most negative slope" in report["rule"]
    # The suggestion is what the stated rule gives on the recorded smoothed loss.
    finite = [s for s in smoothed if s is not None]
    lowest = int(np.argmin(finite))
    start = int(len(finite) * SKIP_START)
    slopes = np.gradient(np.array(finite[: lowest + 1]), np.log10(lrs[: lowest + 1]))
    assert lrs[start + int(np.argmin(slopes[start:]))] == suggestion
    # The smoothed loss is the bias-corrected moving average of the raw losses.
    beta, avg = report["smoothing"], 0.0
    for i, value in enumerate(losses[: len(finite)]):
        avg = beta * avg + (1 - beta) * value
        assert smoothed[i] == pytest.approx(avg / (1 - beta ** (i + 1)), rel=1e-9)
    # It stops at divergence (10 is far too high a rate for this network).
    assert report["stop_reason"] in ("diverged", "loss not finite")
    assert report["steps_run"] < 30
    if report["stop_reason"] == "diverged":
        assert finite[-1] > report["diverge_factor"] * min(finite)
    assert not any(math.isnan(v) for v in finite)
    # Only the training split was used; no run directory (no model) is written.
    assert report["train_images"] < len(np.load(digits_competition.train_path)["labels"])
    assert sorted(p.name for p in out.iterdir()) == ["lr_find.json", "lr_find.png"]
    # The saved plot's axes, as read back from the figure that was saved: log-x over the swept rates.
    plot = report["plot"]
    assert plot["file"] == "lr_find.png" and plot["x_scale"] == "log" and plot["y_scale"] == "linear"
    assert plot["x_limits"][0] <= lrs[0] < lrs[-1] <= plot["x_limits"][1]
    assert plot["x_label"].startswith("learning rate")
    assert plot["lines"][:2] == ["loss per batch", "smoothed (beta 0.9)"]
    assert plot["lines"][2] == f"suggestion {suggestion:.3g} (steepest descent)"
