"""`podium baseline --early-stopping --restore-best`, `--lr-schedule plateau`, `--config FILE`, and
`podium explain` (Grad-CAM) on the model that run keeps: digits competition, real resnet18, CPU."""
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
from harness.diagnosis import read_history

# A constant, fairly high rate without crops: the validation loss of this run goes up and down
# (on this machine: lowest at epoch 7, higher at epoch 8), so early stopping with patience 1 ends it.
EARLY = {"lr": 0.05, "lr_schedule": "constant", "crop_padding": 0, "epochs": 12, "early_stopping": 1,
         "restore_best": True, "threads": 1, "deterministic": True}

PODIUM = [sys.executable, "-m", "podium_cli"]  # the `podium` command, as a real process


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def early_run(digits_competition, tmp_path_factory) -> Path:
    """One early-stopped demo run, its settings given as a preset file (`--config`)."""
    root = tmp_path_factory.mktemp("early")
    config = write_config_file(root / "early.toml", "demo", EARLY, "early stopping test")
    out = root / "run"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--config", str(config), "--quiet",
         "--out", str(out)])
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


@pytest.mark.slow
def test_early_stopping_stops_and_restores_the_best_epoch(early_run, digits_competition):
    report = json.loads((early_run / "report.json").read_text())
    history = read_history(early_run / "history.csv")
    losses = [row["val_loss"] for row in history]
    es = report["early_stopping"]
    assert report["config"]["early_stopping"] == 1 and report["config"]["restore_best"] is True
    # It stopped before the 12 epochs, exactly `patience` epochs after the lowest validation loss.
    assert es["stopped_early"] is True
    assert es["stopped_after_epoch"] == len(history) < 12
    best = int(np.argmin(losses)) + 1
    assert es["best_epoch"] == best == es["model_epoch"]
    assert len(history) - best == 1
    # Before the stop, every epoch was within patience of the best so far (it did not stop too early).
    for epoch in range(1, len(history)):
        assert epoch - (int(np.argmin(losses[:epoch])) + 1) < 1
    # The best epoch is not the last one: the restored model is a different one.
    assert losses[best - 1] < losses[-1]
    # report.json's validation block is the best epoch's ...
    assert report["validation"]["accuracy"] == pytest.approx(history[best - 1]["val_acc"])
    # ... and model.safetensors holds the best epoch's weights: scored on the validation images through
    # the harness's checkpoint path, its loss is the best epoch's, not the last epoch's.
    from baseline.explain import load_checkpoint_model, predict_probabilities

    model, inspected = load_checkpoint_model(early_run / "model.safetensors", digits_competition)
    assert inspected.card.arch == "resnet18"
    images, labels = validation_set(digits_competition)
    probs = predict_probabilities(model, images, inspected.input)
    loss = float(np.mean(-np.log(probs[np.arange(len(labels)), labels])))
    assert loss == pytest.approx(losses[best - 1], rel=1e-3)
    assert abs(loss - losses[-1]) > 10 * abs(loss - losses[best - 1])
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(history[best - 1]["val_acc"])


@pytest.mark.slow
def test_a_plateau_drops_the_rate(digits_competition, tmp_path):
    out = tmp_path / "plateau"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--preset", "demo", "--epochs", "5",
         "--lr", "0.05", "--lr-schedule", "plateau", "--plateau-factor", "0.1", "--plateau-patience", "0",
         "--crop-padding", "0", "--image-size", "16", "--threads", "1", "--deterministic", "--quiet", "--out", str(out)])
    history = read_history(out / "history.csv")
    lrs = [row["lr"] for row in history]
    losses = [row["val_loss"] for row in history]
    assert lrs[0] == 0.05
    drops = [e for e in range(1, len(lrs)) if lrs[e] < lrs[e - 1]]
    assert drops, f"the rate never dropped: {lrs}, validation losses {losses}"
    # ReduceLROnPlateau's rule (mode min, relative threshold 1e-4, patience 0): the rate of epoch e+1 is
    # multiplied by the factor exactly when epoch e's loss was not below the best so far by the threshold.
    best = float("inf")
    for e in range(1, len(lrs)):
        improved = losses[e - 1] < best * (1 - 1e-4)
        best = losses[e - 1] if improved else best
        expected = lrs[e - 1] * (0.1 if not improved else 1.0)
        assert lrs[e] == pytest.approx(expected), (e, lrs, losses)


@pytest.mark.slow
def test_gradcam_maps_have_the_image_shape_and_highlight_the_digit(early_run, digits_competition):
    from baseline.explain import find_target_layer, gradcam_maps, load_checkpoint_model

    model, inspected = load_checkpoint_model(early_run / "model.safetensors", digits_competition)
    images, labels = validation_set(digits_competition)
    images, labels = images[:48], labels[:48]
    name, layer = find_target_layer(model, inspected.input.size)
    assert name == "layer2"  # resnet18 at 32 px: layer3 is 2x2, layer4 1x1
    cams = gradcam_maps(model, images, labels, inspected.input, layer)
    assert cams.shape == images.shape[:3] and cams.dtype == np.float32
    assert 0 <= cams.min() and cams.max() <= 1
    grey = images[..., 0].astype(np.float64)
    ring = np.zeros(images.shape[1:3], dtype=bool)
    ring[:4], ring[-4:], ring[:, :4], ring[:, -4:] = True, True, True, True
    on_digit = np.array([c[g > 128].mean() for c, g in zip(cams, grey)])
    on_border = np.array([c[ring & (g < 16)].mean() for c, g in zip(cams, grey)])
    assert on_digit.mean() > 1.3 * on_border.mean(), (on_digit.mean(), on_border.mean())
    assert (on_digit > on_border).mean() > 0.6


@pytest.mark.slow
def test_explain_command_writes_the_grid_and_page(early_run, digits_competition, tmp_path):
    out = tmp_path / "explain"
    private = digits_competition.root / "private"
    proc = run([*PODIUM, "explain", str(early_run / "model.safetensors"), "--competition", str(digits_competition.root),
                "--out", str(out), "--images", "4", "--threads", "1"])
    assert "Grad-CAM on layer layer2" in proc.stdout and private.is_dir()
    summary = json.loads((out / "explain.json").read_text())
    items = summary["items"]
    assert 1 <= len(items) <= 4 and all(item["wrong"] for item in items)
    assert [item["confidence"] for item in items] == sorted((item["confidence"] for item in items), reverse=True)
    images, labels = validation_set(digits_competition)
    classes = digits_competition.classes
    for item in items:  # validation rows, with their true label
        assert classes[labels[item["val_row"]]] == item["true"] != item["predicted"]
        assert (out / item["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gradcam_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "gradcam_grid.png" in page and "layer2" in page and "from report.json beside the checkpoint" in page


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
