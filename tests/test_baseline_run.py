"""Whole baseline runs on the digits competition, on CPU, as real processes (`podium baseline`,
`python -m baseline`, `torchrun`): the run directory, its checkpoint and submission, determinism,
DDP, the demo preset learning, and the offline weights message."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from harness.diagnosis import VERDICTS, read_history
from tests.conftest import PODIUM

# A tiny config: the demo's resnet18 for 2 epochs over ~1130 digits, at the digits' own 32 px (no resize, so
# the two data paths compute bit-identical batches; the demo preset itself trains at 16 px).
TINY = ["--preset", "demo", "--epochs", "2", "--batch-size", "64", "--image-size", "32", "--crop-padding", "4",
        "--threads", "1", "--deterministic", "--quiet"]
RUN_FILES = ("model.safetensors", "history.csv", "curves.png", "predictions.csv", "report.json")


def run(args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    merged = {**os.environ, **(env or {})}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=merged)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_run(digits_competition, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), *TINY, "--out", str(out)])
    return out


def check_run_directory(out: Path, competition, epochs: int, device: str = "cpu") -> dict:
    for name in RUN_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = read_history(out / "history.csv")
    assert [r["epoch"] for r in history] == list(range(1, epochs + 1))
    for row in history:
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1
        assert row["seconds"] > 0 and row["images_per_s"] > 0 and row["lr"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["history"] == history.to_dicts()
    assert history.val_rows == report["data"]["val_images"]  # the diagnosis knows the validation noise
    assert report["diagnosis"]["verdict"] in VERDICTS and report["diagnosis"]["remedies"]
    assert report["config"]["arch"] == "resnet18" and report["versions"]["torch"]
    assert report["device"]["type"] == device
    validation = report["validation"]
    assert validation["n"] == report["data"]["val_images"] > 0
    assert validation["accuracy"] == pytest.approx(history[-1]["val_acc"])
    assert np.array(validation["confusion_matrix"]).sum() == validation["n"]
    assert report["files"]["model.safetensors"]["sha256"] == sha256(out / "model.safetensors")
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "label"] and len(rows) - 1 == report["data"]["test_images"]
    assert {r[1] for r in rows[1:]} <= set(competition.classes)
    return report


def test_tiny_run_writes_the_whole_run_directory(tiny_run, digits_competition):
    report = check_run_directory(tiny_run, digits_competition, epochs=2)
    from harness.competition import load_train

    labels = load_train(digits_competition)[1]
    assert report["data"]["train_images"] + report["data"]["val_images"] == len(labels)
    expected_val = sum(int(round(0.1 * count)) for count in np.bincount(labels))  # 10 % of each class
    assert report["data"]["val_images"] == expected_val
    assert report["data"]["steps_per_epoch"] == -(-report["data"]["train_images"] // 64)  # batches of 64
    assert report["config"]["image_size"] == 32 and report["config"]["threads"] == 1


def test_model_card_is_the_checkpoint_format(tiny_run, digits_competition):
    from harness.checkpoint.card import ModelCard

    with safe_open(str(tiny_run / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
        keys = set(fh.keys())
        fc = fh.get_tensor("fc.weight")
    card = ModelCard.from_metadata(meta)
    assert (card.library, card.arch, card.num_classes, card.input_size) == ("torchvision", "resnet18", 10, 32)
    assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406]
    assert tuple(fc.shape) == (10, 512) and "conv1.weight" in keys


def test_predictions_csv_is_accepted_by_podium_score(tiny_run, digits_competition):
    proc = run([*PODIUM, "score", str(tiny_run / "predictions.csv"), "--competition", str(digits_competition.root), "--json"])
    scores = json.loads(proc.stdout)
    assert scores["all"]["n"] > 0
    # the run is better than chance on the hidden test labels (10 classes)
    assert scores["all"]["accuracy"] > 0.2


def test_model_safetensors_is_accepted_by_checkpoint_scoring(tiny_run, digits_competition, tmp_path):
    """The checkpoint engineer's scorer runs our model.safetensors as is and gets our predictions."""
    saved = tmp_path / "from_checkpoint.csv"
    proc = run([*PODIUM, "score", str(tiny_run / "model.safetensors"), "--competition", str(digits_competition.root),
                "--json", "--device", "cpu", "--save-predictions", str(saved)], timeout=300)
    assert json.loads(proc.stdout)["all"]["n"] > 0
    ours = (tiny_run / "predictions.csv").read_text().splitlines()
    theirs = saved.read_text().splitlines()
    same = len(set(ours[1:]) & set(theirs[1:])) / (len(ours) - 1)
    assert same > 0.98  # same model, same eval transform; a rare near-tie may flip


def test_same_seed_same_bytes(tiny_run, digits_competition, tmp_path):
    """A second run of the same config on the same device: identical weights and history."""
    out = tmp_path / "again"
    run([sys.executable, "-m", "baseline", "--competition", str(digits_competition.root), *TINY, "--out", str(out)])
    assert sha256(out / "model.safetensors") == sha256(tiny_run / "model.safetensors")
    timing = ("seconds", "images_per_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(read_history(out / "history.csv")) == strip(read_history(tiny_run / "history.csv"))
    assert (out / "predictions.csv").read_bytes() == (tiny_run / "predictions.csv").read_bytes()


def test_reference_data_path_trains_the_same_as_the_fast_path(tiny_run, digits_competition, tmp_path):
    """--data-path reference (per-image v2 in a DataLoader with a worker) gives the same first epoch."""
    out = tmp_path / "reference"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), *TINY, "--epochs", "1",
         "--data-path", "reference", "--workers", "1", "--out", str(out)])
    reference, fast = read_history(out / "history.csv")[0], read_history(tiny_run / "history.csv")[0]
    # At 32 px (no resize) both paths compute bit-identical batches, so the epoch is bit-identical.
    for column in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert reference[column] == fast[column], column
    assert json.loads((out / "report.json").read_text())["data"]["data_path"] == "reference"
    assert len((out / "predictions.csv").read_text().splitlines()) == len((tiny_run / "predictions.csv").read_text().splitlines())


def test_a_different_seed_gives_a_different_model(tiny_run, digits_competition, tmp_path):
    out = tmp_path / "seed2"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), *TINY, "--epochs", "1",
         "--seed", "2", "--out", str(out)])
    assert sha256(out / "model.safetensors") != sha256(tiny_run / "model.safetensors")


def test_val_fraction_zero_trains_on_everything(digits_competition, tmp_path):
    """--val-fraction 0, the course notes' full-train recipe: empty validation columns, no_validation diagnosis."""
    out = tmp_path / "full"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), *TINY, "--epochs", "1",
         "--val-fraction", "0", "--out", str(out)])
    history = read_history(out / "history.csv")
    assert not history.has_validation and history[0]["val_acc"] is None
    report = json.loads((out / "report.json").read_text())
    assert report["validation"] is None and report["diagnosis"]["verdict"] == "no_validation"
    from harness.competition import load_train

    assert report["data"]["val_images"] == 0
    assert report["data"]["train_images"] == len(load_train(digits_competition)[1])
    assert (out / "curves.png").stat().st_size > 0 and (out / "predictions.csv").is_file()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_run, digits_competition, tmp_path):
    """torchrun with 2 processes (gloo): a valid run directory, the same global batch and steps."""
    out = tmp_path / "ddp"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "baseline", "--competition", str(digits_competition.root), *TINY, "--out", str(out)],
        env={"OMP_NUM_THREADS": "1"})
    report = check_run_directory(out, digits_competition, epochs=2)
    single = json.loads((tiny_run / "report.json").read_text())
    assert report["device"]["world_size"] == 2 and single["device"]["world_size"] == 1
    assert report["data"]["global_batch"] == single["data"]["global_batch"] == 64
    assert report["data"]["steps_per_epoch"] == single["data"]["steps_per_epoch"]
    assert report["data"]["train_images"] == single["data"]["train_images"]
    assert report["validation"]["n"] == single["validation"]["n"]
    proc = run([*PODIUM, "score", str(out / "predictions.csv"), "--competition", str(digits_competition.root), "--json"])
    assert json.loads(proc.stdout)["all"]["accuracy"] > 0.2


@pytest.mark.slow
def test_demo_preset_learns_the_digits(digits_competition, tmp_path):
    """The demo preset as `podium demo` runs it: >= 0.9 validation accuracy and the whole run directory."""
    out = tmp_path / "demo"
    proc = run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--preset", "demo", "--out", str(out)],
               timeout=600)
    assert "epoch 1/" in proc.stdout and "wrote" in proc.stdout
    report = check_run_directory(out, digits_competition, epochs=report_epochs(out))
    assert report["history"][-1]["val_acc"] >= 0.9, report["history"]
    assert report["validation"]["accuracy"] >= 0.9


def report_epochs(out: Path) -> int:
    return json.loads((out / "report.json").read_text())["config"]["epochs"]


def test_diagnose_command_prints_the_diagnosis(tiny_run):
    proc = run([*PODIUM, "diagnose", str(tiny_run / "history.csv"), "--json"])
    data = json.loads(proc.stdout)
    assert data["verdict"] in VERDICTS and data["remedies"]
    text = run([*PODIUM, "diagnose", str(tiny_run / "history.csv")]).stdout
    assert text.startswith(data["verdict"] + ":") and "remedies" in text


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as a browser's JSON.parse does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_diverged_run_gives_strict_json(digits_competition, tmp_path):
    """Regression: a NaN loss was written as NaN into report.json and `podium diagnose --json`."""
    import torch

    from baseline.config import PRESETS
    from baseline.report import write_run
    from baseline.train import RunResult
    from harness.competition import load_test

    rows = [{"epoch": e, "train_loss": loss, "train_acc": 0.1, "val_loss": loss, "val_acc": 0.1, "lr": 0.5,
             "seconds": 1.0, "images_per_s": 100.0} for e, loss in ((1, 2.3), (2, float("nan")))]
    _, ids = load_test(digits_competition)
    result = RunResult(out_dir=None, history=rows, val_predictions=np.zeros(4, dtype=np.int64),
                       val_labels=np.arange(4), test_predictions=np.zeros(len(ids), dtype=np.int64), test_ids=ids,
                       seconds=1.0, model=torch.nn.Linear(2, 10))
    out = write_run(tmp_path / "run", PRESETS["demo"], digits_competition, result)
    report = strict_json((out / "report.json").read_text())
    assert report["diagnosis"]["verdict"] == "diverging" and report["history"][1]["train_loss"] is None
    proc = run([*PODIUM, "diagnose", str(out / "history.csv"), "--json"])
    data = strict_json(proc.stdout)
    assert data["verdict"] == "diverging" and data["evidence"]["train_loss"] is None


def test_diagnose_command_refuses_a_malformed_history(tmp_path):
    bad = tmp_path / "history.csv"
    bad.write_text("epoch,loss\n1,0.5\n")
    proc = subprocess.run([*PODIUM, "diagnose", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "header must be" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_settings_are_user_errors():
    from baseline.config import resolve_config
    from baseline.model import build_baseline_model
    from harness.errors import PodiumError

    for overrides, expected in [
        ({"val_fraction": 1.5}, "--val-fraction"),
        ({"data_path": "turbo"}, "--data-path must be one of fast, reference"),
        ({"epochs": 0, "lr": -1.0}, "--lr must be positive"),
        ({"device": "cuda:abc"}, "--device must be one of auto, cpu, cuda (or cuda:N)"),  # was a RuntimeError on a GPU
        ({"device": "cuda:"}, "--device must be one of auto, cpu, cuda (or cuda:N)"),
    ]:
        with pytest.raises(PodiumError) as info:
            resolve_config("demo", **overrides)
        assert any(expected in m for m in info.value.messages), info.value.messages
    with pytest.raises(PodiumError, match="Unknown preset"):
        resolve_config("imagenet")
    with pytest.raises(PodiumError, match="not a torchvision classification model"):
        build_baseline_model("resnet5000", "none", 10)
    with pytest.raises(PodiumError, match="no weights named 'IMAGENET9K'.*IMAGENET1K_V1"):
        build_baseline_model("resnet18", "IMAGENET9K", 10)


def test_cli_reports_user_errors_without_a_traceback(tmp_path):
    proc = subprocess.run([*PODIUM, "baseline", "--competition", str(tmp_path / "nowhere"), "--preset", "demo",
                           "--val-fraction", "0.2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a competition directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_offline_pretrained_weights_fail_with_the_fix(tmp_path, monkeypatch):
    """No network (a proxy that refuses): a PodiumError that names the file and $TORCH_HOME."""
    from baseline.model import build_baseline_model
    from harness.errors import PodiumError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(PodiumError) as info:
        build_baseline_model("resnet50", "IMAGENET1K_V1", 10)
    text = " ".join(info.value.messages)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert str(expected) in text and "https://download.pytorch.org/models/resnet50-0676ba61.pth" in text
    assert "$TORCH_HOME/hub/checkpoints" in text and "--weights none" in text


def test_preseeded_weights_are_loaded_from_torch_home(tmp_path, monkeypatch):
    """The fix the message names works: a file at $TORCH_HOME/hub/checkpoints/<name> is used."""
    import torch
    import torchvision

    from baseline.model import build_baseline_model, resolve_weights, weights_cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # any download attempt would fail
    weights = resolve_weights("resnet18", "IMAGENET1K_V1")
    path = weights_cache_path(weights)
    path.parent.mkdir(parents=True)
    torch.manual_seed(123)
    seeded = torchvision.models.resnet18().state_dict()
    torch.save(seeded, path)
    model = build_baseline_model("resnet18", "IMAGENET1K_V1", 10)
    assert torch.equal(model.conv1.weight, seeded["conv1.weight"])
    assert model.fc.out_features == 10 and model.fc.in_features == 512


@pytest.mark.parametrize("content", [b"PK\x03\x04cut short", b"\x80\x02cut short", b""])
def test_a_damaged_weights_file_is_a_user_error_naming_it(tmp_path, monkeypatch, content):
    """Regression: a cut-short copy in $TORCH_HOME gave a RuntimeError/UnpicklingError traceback."""
    from baseline.model import build_baseline_model, resolve_weights, weights_cache_path
    from harness.errors import PodiumError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = weights_cache_path(resolve_weights("resnet18", "IMAGENET1K_V1"))
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(PodiumError) as info:
        build_baseline_model("resnet18", "IMAGENET1K_V1", 10)
    (message,) = info.value.messages
    assert f"The pretrained weights file {path} is damaged" in message and "Delete it" in message


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_run_on_cuda_with_bf16(digits_competition, tmp_path):
    out = tmp_path / "cuda"
    run([*PODIUM, "baseline", "--competition", str(digits_competition.root), "--preset", "demo", "--epochs", "3",
         "--device", "cuda", "--quiet", "--out", str(out)])
    report = check_run_directory(out, digits_competition, epochs=3, device="cuda")
    assert report["history"][-1]["val_acc"] > 0.5
