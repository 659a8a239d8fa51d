"""Checkpoints that run: honest models score like their CSV, and every way a child can fail is reported.

The honest models are real timm and torchvision networks at 32 px whose final layer is fitted to
the digits training set in closed form (ridge regression on the network's random features), so
they score well above chance in a second instead of minutes of training. Each inference starts a
child process that imports torch (a few seconds each), so the children here are few and shared.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from harness.checkpoint import (  # noqa: E402
    inspect_checkpoint,
    predict_checkpoint,
    run_inspected,
    save_checkpoint,
)
from harness.checkpoint.child import FAULT_ENV  # noqa: E402
from harness.checkpoint.infer import prepare_batch  # noqa: E402
from tests.reference_impls import reference_transform  # noqa: E402
from harness.checkpoint.policy import InputSpec  # noqa: E402
from harness.competition import load_test, load_train  # noqa: E402
from harness.errors import CheckpointError  # noqa: E402
from harness.scoring import score_file, score_predictions  # noqa: E402
from tests.conftest import PODIUM  # noqa: E402

SPEC = InputSpec(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
MODELS = {"timm": "test_resnet", "torchvision": "shufflenet_v2_x0_5"}


def naive_logits(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    """Per-image torchvision transforms, float32, one small batch at a time: the slow reference."""
    transform = reference_transform(SPEC)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 64):
            out.append(model(torch.stack([transform(img) for img in images[start : start + 64]])))
    return torch.cat(out)


def fit_head(model: torch.nn.Module, head: torch.nn.Linear, images: np.ndarray, labels: np.ndarray) -> None:
    """Ridge regression of one-hot labels on the features entering ``head``; writes its weights."""
    features: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0].double()))
    mean, std = torch.tensor(SPEC.mean).view(1, 3, 1, 1), torch.tensor(SPEC.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        for start in range(0, len(images), 256):
            model(prepare_batch(torch.from_numpy(images[start : start + 256]), SPEC, mean, std))
    hook.remove()
    f = torch.cat(features)
    mu, sd = f.mean(0), f.std(0) + 1e-6
    fn = (f - mu) / sd
    y = torch.nn.functional.one_hot(torch.from_numpy(labels), head.out_features).double()
    w = torch.linalg.solve(fn.T @ fn + torch.eye(f.shape[1], dtype=torch.float64), fn.T @ y)
    with torch.no_grad():
        head.weight.copy_((w / sd[:, None]).T.float())
        head.bias.copy_((-(mu / sd) @ w).float())


@pytest.fixture(scope="module")
def honest(tmp_path_factory, digits_competition):
    """{library: (checkpoint path, reference predictions on test.npz)} for a timm and a torchvision model."""
    folder = tmp_path_factory.mktemp("honest")
    train_images, train_labels = load_train(digits_competition)
    test_images, _ = load_test(digits_competition)
    out = {}
    for library, arch in MODELS.items():
        torch.manual_seed(0)
        if library == "timm":
            model = timm.create_model(arch, pretrained=False, num_classes=10).eval()
            head = model.get_classifier()
        else:
            model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
            head = model.fc
        fit_head(model, head, train_images, train_labels)
        path = save_checkpoint(model, folder / f"{arch}.safetensors", library=library, arch=arch, num_classes=10,
                               input_size=SPEC.size, mean=SPEC.mean, std=SPEC.std)
        out[library] = (path, naive_logits(model, test_images).argmax(1).numpy())
    return out


def accuracy(predictions: np.ndarray, solution) -> float:
    scored = solution.labels >= 0
    return float((predictions[scored] == solution.labels[scored]).mean())


@pytest.mark.slow
def test_the_reference_models_are_honest(honest, digits_solution):
    # The fitted heads really learned the digits: a wrong row order or transform would show.
    assert accuracy(honest["timm"][1], digits_solution) > 0.8
    assert accuracy(honest["torchvision"][1], digits_solution) > 0.5


@pytest.mark.slow
def test_podium_score_of_a_timm_checkpoint_equals_its_saved_predictions_csv(honest, digits_competition, digits_solution, tmp_path):
    path, reference = honest["timm"]
    csv_path = tmp_path / "predictions.csv"
    comp_dir = str(digits_competition.root)
    by_model = subprocess.run([*PODIUM, "score", str(path), "--competition", comp_dir, "--json", "--save-predictions", str(csv_path)],
                              capture_output=True, text=True, timeout=300)
    assert by_model.returncode == 0, by_model.stderr
    by_csv = subprocess.run([*PODIUM, "score", str(csv_path), "--competition", comp_dir, "--json"], capture_output=True, text=True, timeout=120)
    assert by_csv.returncode == 0, by_csv.stderr
    model_report, csv_report = json.loads(by_model.stdout), json.loads(by_csv.stdout)
    assert model_report == csv_report
    assert model_report["all"]["accuracy"] == pytest.approx(accuracy(reference, digits_solution), abs=0.01)
    assert model_report["all"]["accuracy"] > 0.8


@pytest.mark.slow
def test_a_torchvision_checkpoint_scores_like_its_csv_and_matches_the_naive_path(honest, digits_competition, digits_solution, tmp_path):
    path, reference = honest["torchvision"]
    csv_path = tmp_path / "predictions.csv"
    by_model = score_file(path, digits_competition, save_predictions=csv_path)
    by_csv = score_file(csv_path, digits_competition)
    assert by_model.to_dict() == by_csv.to_dict()
    assert by_model.primary("all") == pytest.approx(accuracy(reference, digits_solution), abs=0.01)


@pytest.mark.slow
def test_run_info_odd_batches_and_isolation(honest, digits_competition, digits_solution):
    path, reference = honest["timm"]
    images, _ = load_test(digits_competition)
    result = run_inspected(inspect_checkpoint(path, digits_competition), images, digits_competition, device="cpu", batch_size=100)
    assert (result.predictions == reference).mean() > 0.99  # fast batched path == per-image torchvision path
    assert result.info["device"] == "cpu"
    assert result.info["memory"].startswith("RLIMIT_AS")
    assert result.info["network"] == network_probe()[0]
    assert score_predictions(result.predictions, digits_solution, digits_competition).primary("all") > 0.8


# --- refusals that need the model built -----------------------------------------------------------


def checkpoint_from(state: dict, path: Path, arch: str = "test_resnet", library: str = "timm", **card) -> Path:
    return save_checkpoint(state, path, library=library, arch=arch, num_classes=10, **card)


@pytest.mark.slow
def test_an_unknown_architecture_is_refused_with_suggestions(tmp_path, digits_competition):
    path = checkpoint_from({"w": torch.zeros(1)}, tmp_path / "m.safetensors", arch="resnet5O")
    with pytest.raises(CheckpointError, match=r"no classification model named 'resnet5O'\. Did you mean resnet50"):
        predict_checkpoint(path, digits_competition)


@pytest.mark.slow
def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path, digits_competition):
    state = timm.create_model("test_resnet", num_classes=10).state_dict()
    state.pop("fc.bias")
    state["head.extra"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(10, 7)
    path = checkpoint_from(state, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError) as info:
        predict_checkpoint(path, digits_competition)
    missing, unexpected, shapes = info.value.messages
    assert "1 key(s)" in missing and "fc.bias" in missing
    assert "head.extra" in unexpected
    assert "fc.weight is [10, 7] in the file but [10, " in shapes


@pytest.mark.slow
def test_nan_outputs_give_a_clear_error(tmp_path, digits_competition):
    model = timm.create_model("test_resnet", num_classes=10)
    with torch.no_grad():
        model.get_classifier().weight.fill_(float("nan"))
    path = checkpoint_from(model, tmp_path / "nan.safetensors", input_size=32)
    m = len(load_test(digits_competition)[0])
    with pytest.raises(CheckpointError, match=rf"NaN or infinite outputs for {m} of {m} test images"):
        predict_checkpoint(path, digits_competition)


@pytest.mark.slow
def test_running_out_of_memory_is_reported(tmp_path, digits_competition):
    # A real allocation failure: 512 px inputs in batches of 128 need gigabytes; the cap is 256 MiB.
    path = checkpoint_from(timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "big.safetensors", input_size=512)
    small = dataclasses.replace(digits_competition, limits=dataclasses.replace(digits_competition.limits, inference_memory_bytes=256 * 2**20))
    with pytest.raises(CheckpointError, match="ran out of memory"):
        predict_checkpoint(path, small, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_the_organizers_error_not_the_teams(any_checkpoint, digits_competition):
    from harness.checkpoint import InferenceEnvironmentError
    from harness.errors import SubmissionError

    with pytest.raises(InferenceEnvironmentError, match="device 'cuda' cannot be used here") as info:
        predict_checkpoint(any_checkpoint, digits_competition, device="cuda")
    assert not isinstance(info.value, SubmissionError)


# --- a child that dies or hangs (real process behaviour, injected before torch is imported) --------


@pytest.fixture(scope="module")
def any_checkpoint(tmp_path_factory) -> Path:
    state = timm.create_model("test_resnet", num_classes=10).state_dict()
    return checkpoint_from(state, tmp_path_factory.mktemp("fault") / "m.safetensors")


@pytest.mark.parametrize(
    "fault, expected",
    [("crash", "crashed \\(segmentation fault\\)"), ("exit", "exited with status 1 without producing predictions")],
)
def test_a_child_that_dies_is_reported_cleanly(any_checkpoint, digits_competition, monkeypatch, fault, expected):
    monkeypatch.setenv(FAULT_ENV, fault)
    with pytest.raises(CheckpointError, match=expected):
        predict_checkpoint(any_checkpoint, digits_competition)


@pytest.mark.parametrize("signum, expected", [(9, "was killed \\(SIGKILL\\)"), (15, "stopped by signal SIGTERM"), (40, "stopped by signal 40")])
def test_a_child_stopped_by_any_signal_is_a_checkpoint_error(tmp_path, signum, expected):
    """Regression: a real-time signal (no name in signal.Signals) raised ValueError in the parent."""
    from harness.checkpoint.isolate import _read_answer

    with pytest.raises(CheckpointError, match=expected):
        _read_answer(tmp_path, -signum, 10, 10)


def test_a_child_that_hangs_is_killed_at_the_time_limit(any_checkpoint, digits_competition, monkeypatch):
    import time

    monkeypatch.setenv(FAULT_ENV, "hang")
    quick = dataclasses.replace(digits_competition, limits=dataclasses.replace(digits_competition.limits, inference_timeout_s=1.5))
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="longer than this competition's limit of 1.5 seconds"):
        predict_checkpoint(any_checkpoint, quick)
    assert time.monotonic() - started < 30


def test_the_cli_reports_a_crashed_child_with_exit_2(any_checkpoint, digits_competition):
    import os

    done = subprocess.run([*PODIUM, "score", str(any_checkpoint), "--competition", str(digits_competition.root)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, FAULT_ENV: "crash"})
    assert done.returncode == 2, done.stderr
    assert "error: the process running the model crashed" in done.stderr
    assert "Traceback" not in done.stderr


# --- no network ----------------------------------------------------------------------------------


def network_probe() -> tuple[str, bool]:
    """(what leave_network reports, whether a connection to a local listener still worked), in a real process."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = textwrap.dedent(f"""
            import json, socket
            from harness.checkpoint.child import leave_network
            before = socket.create_connection(("127.0.0.1", {port}), timeout=5); before.close()
            status = leave_network()
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5).close(); reached = True
            except OSError:
                reached = False
            print(json.dumps([status, reached]))
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, reached = json.loads(done.stdout)
    return status, reached


def test_the_child_leaves_the_network_where_the_kernel_allows_it():
    status, reached = network_probe()
    if status.startswith("not isolated"):
        pytest.skip(f"this kernel does not allow network namespaces here: {status}")
    assert status.startswith("isolated")
    assert reached is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_path_agrees_with_the_cpu_path(honest, digits_competition):
    # The CUDA path runs under bf16 autocast. The honest models' backbones are random (only the head
    # is fitted), so their logits sit close together and bf16 rounding flips some of them: on an
    # H200 (2026-12-04) 4.8 % of this model's 579 predictions differed from the float32 CPU path,
    # 21 of them on rows whose float32 margin exceeded 5 % of the largest logit. 0.98 was the first
    # release's guess, never run on a GPU; the bound below is the measured rate with some room.
    path, reference = honest["timm"]
    images, _ = load_test(digits_competition)
    result = run_inspected(inspect_checkpoint(path, digits_competition), images, digits_competition, device="cuda")
    assert result.info["device"].startswith("cuda")
    assert result.info["memory"].startswith("GPU memory fraction")
    assert (result.predictions == reference).mean() > 0.93
