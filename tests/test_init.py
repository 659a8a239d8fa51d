"""`podium init`: the competition directory is deterministic, stratified and keeps answers private."""
from __future__ import annotations

import hashlib
import subprocess
import zipfile

import numpy as np
import pytest

from harness.build import build_competition
from harness.competition import IGNORED, PRIVATE, PUBLIC, load_competition, load_test, load_train
from harness.datasets import load_digits
from harness.errors import CompetitionError, DatasetError
from tests.conftest import PODIUM

FILES = ("competition.toml", "public/train.npz", "public/test.npz", "public/sample_submission.csv", "private/solution.csv")


def digests(directory) -> dict[str, str]:
    return {f: hashlib.sha256((directory / f).read_bytes()).hexdigest() for f in FILES}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = build_competition("digits", tmp_path / "a", decoys=25, seed=11)
    b = build_competition("digits", tmp_path / "b", decoys=25, seed=11)
    c = build_competition("digits", tmp_path / "c", decoys=25, seed=12)
    assert digests(a.root) == digests(b.root)
    differs = {f for f in FILES if digests(a.root)[f] != digests(c.root)[f]}
    assert {"public/test.npz", "private/solution.csv", "public/sample_submission.csv"} <= differs


def test_split_is_stratified_by_class(digits_competition, digits_solution):
    scored = digits_solution.usage != IGNORED
    labels = digits_solution.labels[scored]
    public = digits_solution.usage[scored] == PUBLIC
    for c in range(10):
        members = labels == c
        assert public[members].sum() == round(0.3 * members.sum())
    assert set(np.unique(digits_solution.usage)) == {PUBLIC, PRIVATE, IGNORED}


def test_test_set_is_shuffled_with_opaque_ids_and_decoys(digits_competition, digits_solution):
    images, ids = load_test(digits_competition)
    data = load_digits()
    assert len(ids) == len(data.test_labels) + 40 == len(digits_solution)
    assert list(ids) == list(digits_solution.ids)
    assert len(set(ids)) == len(ids) and all(len(i) == 10 and int(i, 16) >= 0 for i in ids)
    # The images are the dataset's test images (plus decoys), not in their original order.
    scored = digits_solution.usage != IGNORED
    assert (digits_solution.usage == IGNORED).sum() == 40
    assert not np.array_equal(images[scored], data.test_images)
    # Each scored row's label is the label of the identical original test image.
    originals = {img.tobytes(): lab for img, lab in zip(data.test_images, data.test_labels)}
    for img, lab in zip(images[scored][:50], digits_solution.labels[scored][:50]):
        assert originals[img.tobytes()] == lab


def test_files_load_without_pickle_and_have_the_documented_shapes(digits_competition):
    train_images, train_labels = load_train(digits_competition)
    test_images, ids = load_test(digits_competition)
    assert train_images.dtype == np.uint8 and train_images.shape[1:] == (32, 32, 3)
    assert train_labels.dtype == np.int64 and train_labels.shape == (len(train_images),)
    assert test_images.dtype == np.uint8 and ids.dtype.kind == "U"
    for name in ("train.npz", "test.npz"):
        with zipfile.ZipFile(digits_competition.root / "public" / name) as zf:
            assert all(info.date_time == (2020, 1, 1, 0, 0, 0) for info in zf.infolist())


def test_competition_toml_round_trips(digits_competition):
    comp = load_competition(digits_competition.root)
    assert comp.classes == tuple(str(i) for i in range(10))
    assert comp.primary_metric == "accuracy" and comp.public_fraction == 0.3
    assert comp.eval_transform.size == 32 and comp.daily_limit == 5 and comp.final_selections == 2


def test_sample_submission_is_a_valid_submission(digits_competition):
    out = subprocess.run(
        [*PODIUM, "score", str(digits_competition.sample_submission_path), "--competition", str(digits_competition.root)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "public" in out.stdout and "private" in out.stdout


def test_bad_settings_are_refused_with_a_message(tmp_path):
    with pytest.raises(CompetitionError, match="between 0 and 1"):
        build_competition("digits", tmp_path, public_fraction=1.5)
    with pytest.raises(DatasetError, match="cifar10, digits"):
        build_competition("mnist", tmp_path)
    with pytest.raises(CompetitionError, match="not a competition directory"):
        load_competition(tmp_path)
    out = subprocess.run([*PODIUM, "init", "mnist", "--root", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Unknown dataset 'mnist'" in out.stderr and "Traceback" not in out.stderr


def test_a_bad_name_is_refused_before_the_dataset_is_loaded(tmp_path, monkeypatch):
    """Regression: the name was checked only after loading (for cifar10: downloading) the dataset."""
    import harness.build

    def no_loading(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the name was checked")

    monkeypatch.setattr(harness.build, "load_dataset", no_loading)
    with pytest.raises(CompetitionError, match="use letters, digits"):
        build_competition("cifar10", tmp_path, name="../elsewhere")
    assert list(tmp_path.iterdir()) == []


def test_cifar10_offline_gives_one_paragraph_with_the_fix(tmp_path, monkeypatch):
    """A real download attempt against a closed local port: the error must say what to do."""
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DatasetError) as info:
        build_competition("cifar10", tmp_path / "comp", data_dir=tmp_path / "data")
    (message,) = info.value.messages
    assert "Could not download CIFAR-10" in message
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "data") in message
    assert "podium init digits" in message
    assert not (tmp_path / "comp").exists()


@pytest.mark.parametrize(
    "setting,expected",
    [
        ('classes = "abc"', "classes must be a list of names"),
        ('daily_limit = "five"', "daily_limit must be a whole number of 0 or more, got 'five'"),
        ("final_selections = 1.5", "final_selections must be a whole number of 0 or more"),
        ("public_fraction = true", "public_fraction must be a number above 0"),
        ('eval_transform = "224"', "[eval_transform] must be a table"),
        ('allowed_archs = "timm/*"', "allowed_archs must be a list of strings"),
        ('[eval_transform]\nsize = "big"', "eval_transform.size must be a whole number above 0"),
        ("[eval_transform]\nsize = 0", "eval_transform.size must be a whole number above 0"),
        ('[limits]\nmax_csv_mb = "20"', "limits.max_csv_mb must be a number above 0"),
        ("[limits]\ninference_timeout_s = -1", "limits.inference_timeout_s must be a number above 0"),
        ("[limits]\nmax_checkpoint_mb = inf", "limits.max_checkpoint_mb must be a number above 0"),
    ],
)
def test_a_mistyped_setting_is_refused_with_its_name(tmp_path, setting, expected):
    """Regression: a wrong type in competition.toml gave a ValueError/TypeError/AttributeError traceback."""
    classes = "" if setting.startswith("classes") else 'classes = ["a", "b"]\n'
    (tmp_path / "competition.toml").write_text(f'name = "c"\n{classes}{setting}\n', encoding="utf-8")
    with pytest.raises(CompetitionError) as info:
        load_competition(tmp_path)
    assert expected in str(info.value)
    out = subprocess.run([*PODIUM, "score", str(tmp_path / "x.csv"), "--competition", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr


def test_zero_daily_limit_and_finals_are_allowed(tmp_path):
    (tmp_path / "competition.toml").write_text('name = "c"\nclasses = ["a", "b"]\ndaily_limit = 0\nfinal_selections = 0\n', encoding="utf-8")
    competition = load_competition(tmp_path)
    assert (competition.daily_limit, competition.final_selections) == (0, 0)
