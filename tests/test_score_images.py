"""Scoring on image-folder and hidden-test competitions: CSVs, checkpoints, and the CSV refusal."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from harness.build import build_competition
from harness.competition import load_solution, load_test, load_train
from harness.errors import SubmissionError
from harness.scoring import score_file
from harness.submission import parse_csv_submission
from tests.conftest import PODIUM, write_submission
from tests.test_init_images import CLASSES, build, make_tree

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def images_comp(tmp_path_factory):
    base = tmp_path_factory.mktemp("images")
    tree = make_tree(base / "src", per_class=6, test_per_class=5)
    comp, _ = build(tree, base / "open", name="open", image_size=32, seed=1)
    hidden, _ = build(tree, base / "hidden", name="hidden", image_size=32, seed=1, hidden_test=True)
    return comp, hidden


def colour_model_checkpoint(path, comp):
    """A real torchvision resnet18 whose head reads the mean colour: right on these images, by construction."""
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES)).eval()
    images, labels = load_train(comp)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        features = torch.nn.Sequential(*list(model.children())[:-1])(x).flatten(1)
        # Least squares from the pooled features to one-hot labels: a head that fits the training set.
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), len(CLASSES)).float()
        design = torch.cat([features, torch.ones(len(features), 1)], 1)
        solution = torch.linalg.lstsq(design, onehot).solution
        model.fc.weight.copy_(solution[:-1].T)
        model.fc.bias.copy_(solution[-1])
    save_checkpoint(model, path, library="torchvision", arch="resnet18", num_classes=len(CLASSES), input_size=32)
    return model


def test_a_csv_is_scored_on_an_images_competition(images_comp, tmp_path):
    comp, _ = images_comp
    solution = load_solution(comp)
    names = np.asarray(CLASSES)
    perfect = write_submission(tmp_path / "perfect.csv", solution.ids, names[solution.labels])
    report = score_file(perfect, comp)
    assert report.primary("public") == 1.0 and report.primary("private") == 1.0
    wrong = write_submission(tmp_path / "wrong.csv", solution.ids, names[(solution.labels + 1) % 3])
    assert score_file(wrong, comp).primary("all") == 0.0
    sample = comp.sample_submission_path
    assert 0 < score_file(sample, comp).primary("all") < 1  # the sample (all "ant") scores a third


def test_a_checkpoint_is_scored_streaming_the_test_folder(images_comp, tmp_path):
    comp, _ = images_comp
    path = tmp_path / "model.safetensors"
    model = colour_model_checkpoint(path, comp)
    from harness.checkpoint.infer import predict_array
    from harness.checkpoint.policy import InputSpec

    images, _ = load_test(comp)  # the in-memory path on the same images must agree with the streamed one
    expected = predict_array(model, images, InputSpec(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), torch.device("cpu"), progress=False)
    saved = tmp_path / "predictions.csv"
    report = score_file(path, comp, device="cpu", save_predictions=saved)
    solution = load_solution(comp)
    got = np.asarray([CLASSES.index(line.split(",")[1]) for line in saved.read_text().splitlines()[1:]])
    assert np.array_equal(got, expected)
    assert report.primary("all") == pytest.approx(float((expected == solution.labels).mean()))
    assert report.primary("all") > 0.9


def test_a_hidden_test_set_refuses_csvs_and_scores_checkpoints(images_comp, tmp_path):
    _, hidden = images_comp
    solution = load_solution(hidden)
    csv_path = write_submission(tmp_path / "sub.csv", solution.ids, np.asarray(CLASSES)[solution.labels])
    with pytest.raises(SubmissionError, match="test images are hidden.*checkpoint"):
        score_file(csv_path, hidden)
    with pytest.raises(SubmissionError, match="hidden"):  # the leaderboard's path, from the bytes
        parse_csv_submission(csv_path.read_bytes(), solution, hidden.classes)
    done = subprocess.run([*PODIUM, "score", str(csv_path), "--competition", str(hidden.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "hidden" in done.stderr and "Traceback" not in done.stderr
    model_path = tmp_path / "model.safetensors"
    colour_model_checkpoint(model_path, hidden)
    assert score_file(model_path, hidden, device="cpu").primary("all") > 0.9


def test_digits_with_a_hidden_test_set(tmp_path, digits_competition):
    comp = build_competition("digits", tmp_path, name="d", seed=2, hidden_test=True)
    assert comp.hidden_test and comp.test_path == comp.root / "private" / "test.npz"
    assert sorted(p.name for p in (comp.root / "public").iterdir()) == ["train.npz"]
    images, ids = load_test(comp)
    assert tuple(ids) == load_solution(comp).ids and images.shape[1:] == (32, 32, 3)
    assert "hidden" in (comp.root / "description.md").read_text()
    # Rebuilt without it, the test set moves back to public/ and private/ keeps no stale copy.
    comp = build_competition("digits", tmp_path, name="d", seed=2)
    assert not comp.hidden_test and (comp.root / "public" / "test.npz").is_file()
    assert not (comp.root / "private" / "test.npz").exists()
    comp = build_competition("digits", tmp_path, name="d", seed=2, hidden_test=True)
    assert not (comp.root / "public" / "test.npz").exists()  # and back: never public when hidden


def test_a_worker_copy_of_a_hidden_test_set_reads_public(tmp_path):
    """The scoring server sends a worker competition.toml and the test set as public/test.npz."""
    comp = build_competition("digits", tmp_path / "server", name="d", seed=2, hidden_test=True)
    copy = tmp_path / "worker"
    (copy / "public").mkdir(parents=True)
    (copy / "competition.toml").write_bytes((comp.root / "competition.toml").read_bytes())
    (copy / "public" / "test.npz").write_bytes(comp.test_path.read_bytes())
    from harness.competition import load_competition

    worker_comp = load_competition(copy)
    assert worker_comp.test_path == copy / "public" / "test.npz"
    assert np.array_equal(load_test(worker_comp)[0], load_test(comp)[0])


def test_a_worker_copy_of_a_hidden_image_folder_scores_the_same(images_comp, tmp_path):
    """The archive a scoring server would send a worker: settings and test images, never the answers."""
    import zipfile

    from harness.checkpoint import predict_checkpoint
    from harness.workerdata import extract_worker_data, write_worker_data_zip

    _, hidden = images_comp
    archive = write_worker_data_zip(hidden, tmp_path / "data.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "competition.toml" in names and "public/test.csv" in names and len(names) == 2 + len(load_solution(hidden))
    assert not any("solution" in n or "train" in n for n in names)
    copy = extract_worker_data(archive, tmp_path / "worker" / "v1")
    assert copy.test_path == copy.root / "public" / "test" and copy.hidden_test
    model_path = tmp_path / "model.safetensors"
    colour_model_checkpoint(model_path, hidden)
    assert np.array_equal(predict_checkpoint(model_path, copy, device="cpu"), predict_checkpoint(model_path, hidden, device="cpu"))
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("competition.toml", "")
        zf.writestr("../escape.txt", "x")
    from harness.errors import CompetitionError

    with pytest.raises(CompetitionError, match="unexpected"):
        extract_worker_data(evil, tmp_path / "worker" / "v2")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "worker" / "v2").exists()


def test_the_baseline_trains_on_an_images_competition(images_comp, tmp_path):
    """`podium baseline` reads the image folders; its CSV and checkpoint are scored on them."""
    comp, _ = images_comp
    out = tmp_path / "run"
    done = subprocess.run(
        [*PODIUM, "baseline", "--competition", str(comp.root), "--preset", "demo", "--epochs", "1", "--batch-size", "8",
         "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["data"]["train_images"] + report["data"]["val_images"] == 18 and report["data"]["test_images"] == 15
    for name in ("predictions.csv", "model.safetensors"):
        scored = subprocess.run([*PODIUM, "score", str(out / name), "--competition", str(comp.root), "--json", "--device", "cpu"],
                                capture_output=True, text=True, timeout=300)
        assert scored.returncode == 0, scored.stderr[-3000:]
        assert 0 <= json.loads(scored.stdout)["all"]["accuracy"] <= 1


def test_evaluate_ranks_a_folder_on_an_images_competition(images_comp, tmp_path):
    from harness.evaluate import evaluate_folder

    comp, _ = images_comp
    solution = load_solution(comp)
    names = np.asarray(CLASSES)
    (tmp_path / "subs" / "good").mkdir(parents=True)
    (tmp_path / "subs" / "bad").mkdir()
    write_submission(tmp_path / "subs" / "good" / "a.csv", solution.ids, names[solution.labels])
    write_submission(tmp_path / "subs" / "bad" / "a.csv", solution.ids, names[(solution.labels + 1) % 3])
    result = evaluate_folder(tmp_path / "subs", comp)
    assert [s.team for s in result.standings] == ["good", "bad"] and not result.refused


# ------------------------------------------------------------------ the baseline's other commands on image folders


TUNE_SPACE = """\
[lr]
low = 0.005
high = 0.05
log = true
"""


@pytest.fixture(scope="module")
def images_run(images_comp, tmp_path_factory):
    """`podium baseline` (1 epoch, demo preset) on the open images competition: a checkpoint and its report.json."""
    comp, _ = images_comp
    out = tmp_path_factory.mktemp("images-run") / "run"
    done = subprocess.run(
        [*PODIUM, "baseline", "--competition", str(comp.root), "--preset", "demo", "--epochs", "1", "--batch-size", "8",
         "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_lr_find_runs_on_an_images_competition(images_comp, tmp_path):
    import json

    comp, _ = images_comp
    out = tmp_path / "lr"
    done = subprocess.run([*PODIUM, "lr-find", "--competition", str(comp.root), "--preset", "demo", "--threads", "1",
                           "--steps", "10", "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "lr_find.json").read_text())
    assert report["competition"] == "open" and 0 < report["steps_run"] <= report["steps"] == 10
    assert len(report["lrs"]) == len(report["losses"]) == report["steps_run"] and np.isfinite(report["losses"][0])
    assert report["lrs"][0] == pytest.approx(1e-7) and report["lrs"] == sorted(report["lrs"])
    assert 0 < report["train_images"] < 18  # the image folders' 18 training images, less the validation rows
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["lr_find.json", "lr_find.png"]


def test_tune_runs_two_trials_on_an_images_competition(images_comp, tmp_path):
    import json

    comp, hidden = images_comp
    space = tmp_path / "space.toml"
    space.write_text(TUNE_SPACE)
    for competition in (comp, hidden):  # a hidden test set changes nothing: the search reads train/ only
        out = tmp_path / f"study-{competition.name}"
        done = subprocess.run(
            [*PODIUM, "tune", "--competition", str(competition.root), "--preset", "demo", "--image-size", "16",
             "--crop-padding", "2", "--threads", "1", "--quiet", "--epochs", "1", "--batch-size", "8", "--trials", "2",
             "--sampler", "random", "--sampler-seed", "3", "--space", str(space), "--out", str(out)],
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["trials"]["complete"] == 2 and summary["trials"]["fail"] == 0
        assert 0.005 <= summary["best"]["params"]["lr"] <= 0.05 and np.isfinite(summary["best"]["val_loss"])
        assert "lr = " in (out / "best.toml").read_text()
        rows = (out / "trials.csv").read_text().strip().splitlines()
        assert len(rows) == 3 and all(",COMPLETE," in r for r in rows[1:])


def test_explain_runs_on_an_images_competition(images_comp, images_run, tmp_path):
    import json

    comp, _ = images_comp
    out = tmp_path / "explain"
    done = subprocess.run([*PODIUM, "explain", str(images_run / "model.safetensors"), "--competition", str(comp.root),
                           "--out", str(out), "--images", "4", "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Grad-CAM on layer" in done.stdout
    summary = json.loads((out / "explain.json").read_text())
    assert summary["val_images"] >= 1 and "from report.json beside the checkpoint" in summary["validation split"]
    _, labels = load_train(comp)  # each item is a training image of the validation split, with its true class
    for item in summary["items"]:
        assert item["wrong"] and CLASSES[labels[item["train_index"]]] == item["true"] != item["predicted"]
        assert (out / item["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gradcam_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "layer" in (out / "index.html").read_text()
