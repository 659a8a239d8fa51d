"""`podium baseline --early-stopping --restore-best`, `--lr-schedule plateau`, `--config FILE`, and
`podium explain` (Grad-CAM) on the demo preset's model: digits competition, real resnet18, CPU."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from baseline.config import read_config_file, resolve_config, write_config_file
from harness.competition import load_train
from harness.diagnosis import read_history

# Early stopping and plateau decay watch the validation loss, so their tests need a validation loss
# that stops falling on every machine, not on one machine's loss curve. `conflicting_competition`
# makes that so by construction: its validation images are training images shown with another label,
# so the better the network learns the training split, the worse its validation loss gets. A low
# constant rate (0.002, momentum 0.9) keeps the first epoch's model close to the untrained one (its
# validation loss near log 10 = 2.3; higher rates give BatchNorm's running statistics a first epoch
# of wild, confident predictions) and lets it learn steadily after; on the shared machine the
# validation loss then went 2.56, 5.60, 7.15, 7.10, 7.22, 7.20 while the training accuracy went 0.31,
# 0.76, 0.88, 0.92, 0.93, 0.93 (the plateau test's run; the rate dropped after epochs 3 and 5).
CONFLICT = {"lr": 0.002, "lr_schedule": "constant", "threads": 1, "deterministic": True}
EARLY = {**CONFLICT, "epochs": 8, "early_stopping": 2, "restore_best": True}

PODIUM = [sys.executable, "-m", "podium_cli"]  # the `podium` command, as a real process


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def conflicting_competition(digits_competition, tmp_path_factory):
    """A copy of the digits competition whose validation images contradict its training images.

    `podium baseline` holds out ``stratified_split(labels, 0.1, 42)``, which depends on the labels
    only, so the labels are kept and the split stays the same; each validation row keeps its label y
    but its pixels are replaced by those of a training image of class a = (y + 1) % 10. On such an
    image p(y | x) <= 1 - p(a | x), so its loss -log p(y | x) >= -log(1 - p(a | x)): it can only grow
    as the network fits that training image better. The validation loss cannot keep falling while
    the training loss falls. (The test images are untouched.)"""
    from baseline.data import stratified_split
    from harness.competition import load_competition

    root = tmp_path_factory.mktemp("conflicting") / "digits"
    shutil.copytree(digits_competition.root, root)
    path = root / "public" / "train.npz"
    with np.load(path) as data:
        images, labels = data["images"].copy(), data["labels"].copy()
    train_idx, val_idx = stratified_split(labels, 0.1, 42)
    rng = np.random.default_rng(0)
    donors = {}
    for i in val_idx:
        a = (labels[i] + 1) % 10
        donors[int(i)] = int(rng.choice(train_idx[labels[train_idx] == a]))
        images[i] = images[donors[int(i)]]
    np.savez(path, images=images, labels=labels)
    competition = load_competition(root)
    assert np.array_equal(stratified_split(load_train(competition)[1], 0.1, 42)[1], val_idx)  # the same split
    return competition


@pytest.fixture(scope="module")
def early_run(conflicting_competition, tmp_path_factory) -> Path:
    """One early-stopped run on the conflicting competition, its settings given as a preset file (`--config`)."""
    root = tmp_path_factory.mktemp("early")
    config = write_config_file(root / "early.toml", "demo", EARLY, "early stopping test")
    out = root / "run"
    run([*PODIUM, "baseline", "--competition", str(conflicting_competition.root), "--config", str(config), "--quiet",
         "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def trained_run(digits_competition, tmp_path_factory) -> Path:
    """The demo preset on the real digits at their own 32 px, where resnet18's layer1 gives Grad-CAM an
    8x8 map (the preset's 24 px gives 6x6; on one model each, the digit/border heat ratio was 2.10 at
    8x8 and 1.43-1.56 at 6x6: the test of what Grad-CAM highlights wants the finer map)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--preset", "demo", "--image-size", "32",
         "--crop-padding", "4", "--threads", "1", "--quiet", "--out", str(out)])
    return out


def validation_set(competition, fraction=0.1, seed=42):
    from baseline.data import stratified_split
    from harness.competition import load_train

    images, labels = load_train(competition)
    _, val_idx = stratified_split(labels, fraction, seed)
    return images[val_idx], labels[val_idx]


def test_config_file_round_trip_and_refusals(tmp_path):
    path = write_config_file(tmp_path / "p.toml", "demo", {"lr": 0.03, "epochs": 3, "restore_best": True,
                                                           "lr_schedule": "plateau", "mean": [0.5, 0.5, 0.5]})
    preset, settings = read_config_file(path)
    config = resolve_config(preset, **settings)
    assert (config.preset, config.lr, config.epochs, config.restore_best, config.lr_schedule) == ("demo", 0.03, 3, True, "plateau")
    assert config.mean == (0.5, 0.5, 0.5) and config.arch == "resnet18"  # the rest from the demo preset
    from harness.errors import PodiumError

    for text, message in [("lrr = 0.1\n", "unknown setting"), ("epochs = 2.5\n", "epochs must be a int"),
                          ("restore_best = 1\n", "restore_best must be a bool"), ('preset = "nope"\n', "preset must be one of"),
                          ("lr = [\n", "not a valid TOML")]:
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(PodiumError, match=message):
            read_config_file(tmp_path / "bad.toml")


def test_watching_the_validation_loss_needs_a_validation_split(digits_competition, tmp_path):
    proc = subprocess.run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--preset", "demo",
                           "--val-fraction", "0", "--early-stopping", "2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "need a validation split" in proc.stderr


def best_epochs(losses: list[float]) -> list[int]:
    """For each epoch (1-based), the epoch with the lowest validation loss so far (the first on ties:
    a later epoch must be strictly lower, as in `podium baseline`)."""
    out, best, best_epoch = [], float("inf"), 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best, best_epoch = loss, epoch
        out.append(best_epoch)
    return out


@pytest.mark.slow
def test_early_stopping_stops_and_restores_the_best_epoch(early_run, conflicting_competition):
    report = json.loads((early_run / "report.json").read_text())
    history = read_history(early_run / "history.csv")
    losses = [row["val_loss"] for row in history]
    train_acc = [row["train_acc"] for row in history]
    es = report["early_stopping"]
    patience = EARLY["early_stopping"]
    assert report["config"]["early_stopping"] == patience and report["config"]["restore_best"] is True
    # The construction at work: the network learns the training split while the validation loss rises.
    assert train_acc[-1] > train_acc[0] and losses[-1] > min(losses), (train_acc, losses)
    # The rule, on every epoch: the run goes on while fewer than `patience` epochs have passed since the
    # lowest validation loss, and stops at the first epoch where `patience` have.
    bests = best_epochs(losses)
    stopped = len(history)
    for epoch in range(1, stopped):
        assert epoch - bests[epoch - 1] < patience, (epoch, losses)
    assert stopped - bests[-1] == patience, losses
    assert es["stopped_early"] is True and es["stopped_after_epoch"] == stopped < EARLY["epochs"]
    best = bests[-1]
    assert es["best_epoch"] == best == es["model_epoch"] == int(np.argmin(losses)) + 1
    # The best epoch is not the last one: the restored model is a different one.
    assert losses[best - 1] < losses[-1]
    # report.json's validation block is the best epoch's ...
    assert report["validation"]["accuracy"] == pytest.approx(history[best - 1]["val_acc"])
    # ... and model.safetensors holds the best epoch's weights: scored on the validation images through
    # the harness's checkpoint path, its loss is the best epoch's, not the last epoch's.
    from baseline.explain import load_checkpoint_model, predict_probabilities

    model, inspected = load_checkpoint_model(early_run / "model.safetensors", conflicting_competition)
    assert inspected.card.arch == "resnet18"
    images, labels = validation_set(conflicting_competition)
    probs = predict_probabilities(model, images, inspected.input)
    loss = float(np.mean(-np.log(probs[np.arange(len(labels)), labels])))
    assert loss == pytest.approx(losses[best - 1], rel=1e-3)
    assert abs(loss - losses[-1]) > 10 * abs(loss - losses[best - 1])
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(history[best - 1]["val_acc"])


def plateau_rates(first: float, losses: list[float], factor: float, patience: int) -> list[float]:
    """The rate of each epoch under torch's ReduceLROnPlateau with its defaults (mode min, relative
    threshold 1e-4, cooldown 0, min_lr 0, eps 1e-8), stepped with each epoch's validation loss: an
    epoch improves when its loss is below best * (1 - 1e-4); after more than `patience` epochs in a
    row that do not, the next epoch's rate is the factor times this one's (unless that changes it by
    less than eps), and the count starts again."""
    rates, lr, best, bad = [first], first, float("inf"), 0
    for loss in losses[:-1]:
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            if lr - lr * factor > 1e-8:
                lr *= factor
            bad = 0
        rates.append(lr)
    return rates


@pytest.mark.slow
def test_a_plateau_drops_the_rate(conflicting_competition, tmp_path):
    """ReduceLROnPlateau's rule, checked on every epoch of a 6-epoch run whose validation loss cannot
    keep falling (the conflicting competition): with patience 1 the rate must drop at the end of
    the second epoch in a row without a lower validation loss."""
    out = tmp_path / "plateau"
    run([*PODIUM, "baseline", "--competition", str(conflicting_competition.root), "--preset", "demo", "--epochs", "6",
         "--lr", str(CONFLICT["lr"]), "--lr-schedule", "plateau", "--plateau-factor", "0.1", "--plateau-patience", "1",
         "--threads", "1", "--deterministic", "--quiet", "--out", str(out)])
    history = read_history(out / "history.csv")
    lrs = [row["lr"] for row in history]
    losses = [row["val_loss"] for row in history]
    assert len(history) == 6 and lrs[0] == CONFLICT["lr"]
    expected = plateau_rates(CONFLICT["lr"], losses, 0.1, 1)
    assert lrs == pytest.approx(expected, rel=1e-12), (lrs, losses)
    drops = [e for e in range(1, len(lrs)) if lrs[e] < lrs[e - 1]]
    assert drops, f"the rate never dropped: {lrs}, validation losses {losses}"
    for e in drops:  # each drop is the factor, after two epochs in a row that were no improvement
        assert lrs[e] == pytest.approx(0.1 * lrs[e - 1], rel=1e-12)
        assert min(losses[e - 2:e]) >= min(losses[:e - 2], default=float("inf")) * (1 - 1e-4), (e, losses)
    assert json.loads((out / "report.json").read_text())["config"]["plateau_patience"] == 1


@pytest.mark.slow
def test_gradcam_maps_have_the_image_shape_and_highlight_the_digit(trained_run, digits_competition):
    from baseline.explain import find_target_layer, gradcam_maps, load_checkpoint_model

    model, inspected = load_checkpoint_model(trained_run / "model.safetensors", digits_competition)
    assert inspected.input.size == 32
    images, labels = validation_set(digits_competition)
    images, labels = images[:48], labels[:48]
    name, layer = find_target_layer(model, inspected.input.size)
    assert name == "layer1"  # resnet18 at 32 px: layer1 is 8x8, layer2 4x4 (below explain.MIN_SIDE), layer4 1x1
    cams = gradcam_maps(model, images, labels, inspected.input, layer)
    assert cams.shape == images.shape[:3] and cams.dtype == np.float32  # the images' own 32 x 32
    assert 0 <= cams.min() and cams.max() <= 1
    grey = images[..., 0].astype(np.float64)
    ring = np.zeros(images.shape[1:3], dtype=bool)
    ring[:4], ring[-4:], ring[:, :4], ring[:, -4:] = True, True, True, True
    on_digit = np.array([c[g > 128].mean() for c, g in zip(cams, grey)])
    on_border = np.array([c[ring & (g < 16)].mean() for c, g in zip(cams, grey)])
    assert on_digit.mean() > 1.3 * on_border.mean(), (on_digit.mean(), on_border.mean())
    assert (on_digit > on_border).mean() > 0.6


def check_explain_output(out: Path, proc, competition) -> dict:
    assert "Grad-CAM on layer layer1" in proc.stdout
    summary = json.loads((out / "explain.json").read_text())
    items = summary["items"]
    assert 1 <= len(items) <= 4 and all(item["wrong"] for item in items)
    assert [item["confidence"] for item in items] == sorted((item["confidence"] for item in items), reverse=True)
    images, labels = validation_set(competition)
    classes = competition.classes
    for item in items:  # validation rows, with their true label
        assert classes[labels[item["val_row"]]] == item["true"] != item["predicted"]
        assert (out / item["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gradcam_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "gradcam_grid.png" in page and "layer1" in page and "from report.json beside the checkpoint" in page
    return summary


@pytest.mark.slow
def test_explain_command_writes_the_grid_and_page(trained_run, digits_competition, tmp_path):
    out = tmp_path / "explain"
    proc = run([*PODIUM, "explain", str(trained_run / "model.safetensors"), "--competition", str(digits_competition.root),
                "--out", str(out), "--images", "4", "--threads", "1"])
    check_explain_output(out, proc, digits_competition)
    assert (digits_competition.root / "private").is_dir()


@pytest.mark.slow
def test_explain_needs_neither_the_private_folder_nor_the_test_set(trained_run, digits_competition, tmp_path):
    """`podium explain` reads the validation split of public/train only: it runs, and finds the same
    images, on a copy of the competition whose private/ folder and test set have been moved away."""
    comp = tmp_path / "comp"
    shutil.copytree(digits_competition.root, comp)
    away = tmp_path / "away"
    away.mkdir()
    shutil.move(comp / "private", away / "private")
    shutil.move(comp / "public" / "test.npz", away / "test.npz")
    assert not (comp / "private").exists() and not (comp / "public" / "test.npz").exists()
    out = tmp_path / "explain"
    proc = run([*PODIUM, "explain", str(trained_run / "model.safetensors"), "--competition", str(comp),
                "--out", str(out), "--images", "4", "--threads", "1"])
    summary = check_explain_output(out, proc, digits_competition)
    assert not (comp / "private").exists() and not (comp / "public" / "test.npz").exists()  # nothing put back
    with_everything = tmp_path / "explain-full"
    proc = run([*PODIUM, "explain", str(trained_run / "model.safetensors"), "--competition", str(digits_competition.root),
                "--out", str(with_everything), "--images", "4", "--threads", "1"])
    assert json.loads((with_everything / "explain.json").read_text())["items"] == summary["items"]


def test_explain_escapes_class_names_and_refuses_pickles(digits_competition, tmp_path):
    """An untrained checkpoint (fast) on a copy of the competition whose class names are HTML."""
    from baseline.explain import explain_checkpoint
    from baseline.model import build_baseline_model
    from harness.checkpoint import save_checkpoint
    from harness.errors import CheckpointError

    root = tmp_path / "comp"
    shutil.copytree(digits_competition.root / "public", root / "public")
    toml = (digits_competition.root / "competition.toml").read_text()
    names = ", ".join(f'"<b>d{i}</b>&"' for i in range(10))
    (root / "competition.toml").write_text(toml.replace('classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]',
                                                        f"classes = [{names}]"))
    torch.manual_seed(0)
    model = build_baseline_model("resnet18", "none", 10)
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors", library="torchvision", arch="resnet18", num_classes=10,
                           input_size=32)
    result = explain_checkpoint(ckpt, root, tmp_path / "out", images=3, threads=1)
    assert len(result.items) == 3 and result.cams.shape == (3, 32, 32)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<b>d" not in page and "&lt;b&gt;d" in page and "&amp;" in page
    assert result.items[0]["true"].startswith("<b>d")  # the JSON keeps the real names

    torch.save(model.state_dict(), tmp_path / "m.pt")  # a pickle: refused before anything is unpickled
    with pytest.raises(CheckpointError, match="podium pack"):
        explain_checkpoint(tmp_path / "m.pt", root, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
