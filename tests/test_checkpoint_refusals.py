"""Checkpoint refusals decided before any model runs, and `podium pack`.

Every hostile file is built inside the test. None of these tests starts an inference child: the
trusted parent refuses them from the file's bytes alone (or `pack` refuses them through
torch.load(weights_only=True)).
"""
from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from harness.checkpoint import ModelCard, inspect_checkpoint, pack_checkpoint, predict_checkpoint, save_checkpoint  # noqa: E402
from harness.checkpoint.archive import MAX_ENTRIES  # noqa: E402
from harness.checkpoint.infer import prepare_batch  # noqa: E402
from tests.reference_impls import reference_transform  # noqa: E402
from harness.checkpoint.policy import InputSpec  # noqa: E402
from harness.checkpoint.safefile import read_safetensors_header  # noqa: E402
from harness.errors import CheckpointError  # noqa: E402
from tests.conftest import PODIUM  # noqa: E402

ARCH = "test_resnet"  # timm's tiny test network: 0.37 M parameters


class Payload:
    """A pickle that, when loaded unsafely, creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def state_dict():
    torch.manual_seed(0)
    return timm.create_model(ARCH, pretrained=False, num_classes=10).state_dict()


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, state_dict) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    return save_checkpoint(state_dict, path, library="timm", arch=ARCH, num_classes=10, input_size=32, mean=[0.5] * 3, std=[0.25] * 3)


def limited(comp, **limits):
    return dataclasses.replace(comp, limits=dataclasses.replace(comp.limits, **limits))


def refusal(path: Path, comp) -> str:
    with pytest.raises(CheckpointError) as info:
        predict_checkpoint(path, comp)
    return "\n".join(info.value.messages)


def write_safetensors(path: Path, header: dict, data: bytes = b"", header_length: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_length is None else header_length) + raw + data)
    return path


# --- the card ---------------------------------------------------------------------------------


def test_card_round_trips_through_safetensors_metadata(good_checkpoint):
    header = read_safetensors_header(good_checkpoint)
    assert header.metadata == {
        "library": "timm", "arch": ARCH, "num_classes": "10", "input_size": "32", "mean": "[0.5, 0.5, 0.5]", "std": "[0.25, 0.25, 0.25]"
    }
    assert ModelCard.from_metadata(header.metadata) == ModelCard("timm", ARCH, 10, 32, (0.5,) * 3, (0.25,) * 3)


def test_inspect_accepts_an_honest_checkpoint_and_applies_its_card(good_checkpoint, digits_competition):
    checked = inspect_checkpoint(good_checkpoint, digits_competition)
    assert checked.input == InputSpec(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert len(checked.header.tensors) == len(timm.create_model(ARCH, num_classes=10).state_dict())


@pytest.mark.parametrize(
    "metadata, expected",
    [
        (None, "no model card"),
        ({"format": "pt"}, "no model card"),
        ({"library": "keras", "arch": "resnet50", "num_classes": "10"}, "library 'keras' is not supported"),
        ({"library": "timm", "num_classes": "10"}, "arch is missing"),
        ({"library": "timm", "arch": "resnet50; rm -rf /", "num_classes": "10"}, "not a registry model name"),
        ({"library": "timm", "arch": "resnet50", "num_classes": "ten"}, "num_classes must be a positive whole number"),
        ({"library": "timm", "arch": "resnet50", "num_classes": "10", "mean": "[0.5, 0.5]"}, "mean must be a JSON list of three numbers"),
        ({"library": "timm", "arch": "resnet50", "num_classes": "10", "std": "NaN"}, "std must be a JSON list"),
    ],
)
def test_bad_cards_are_refused_with_the_fix(tmp_path, digits_competition, metadata, expected):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    assert expected in refusal(path, digits_competition)


def test_competition_rules_on_the_card(tmp_path, state_dict, digits_competition):
    wrong_classes = save_checkpoint(state_dict, tmp_path / "a.safetensors", library="timm", arch=ARCH, num_classes=7)
    assert "num_classes=7 but this competition has 10 classes" in refusal(wrong_classes, digits_competition)
    too_big = save_checkpoint(state_dict, tmp_path / "b.safetensors", library="timm", arch=ARCH, num_classes=10, input_size=4096)
    assert "input_size 4096" in refusal(too_big, digits_competition)
    ok = save_checkpoint(state_dict, tmp_path / "c.safetensors", library="timm", arch=ARCH, num_classes=10)
    only_torchvision = dataclasses.replace(digits_competition, allowed_archs=("torchvision/resnet*",))
    assert f"timm/{ARCH} is not allowed" in refusal(ok, only_torchvision)
    any_timm = dataclasses.replace(digits_competition, allowed_archs=("torchvision/resnet*", "timm/*"))
    assert inspect_checkpoint(ok, any_timm).card.arch == ARCH


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(good_checkpoint, digits_competition):
    small = limited(digits_competition, max_checkpoint_bytes=good_checkpoint.stat().st_size - 1)
    assert "over this competition's limit" in refusal(good_checkpoint, small)


# --- forged safetensors headers ------------------------------------------------------------------


def test_a_header_claiming_tensors_far_larger_than_the_file_is_refused(tmp_path, digits_competition):
    huge = 100_000 * 100_000 * 4
    path = write_safetensors(
        tmp_path / "huge.safetensors",
        {"__metadata__": {"library": "timm", "arch": ARCH, "num_classes": "10"},
         "w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, huge]}},
        b"\0" * 64,
    )
    message = refusal(path, digits_competition)
    assert "claims 40,000,000,000 bytes" in message and "refused before loading" in message


@pytest.mark.parametrize(
    "tensors, data, expected",
    [
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16, "needs 16"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 64, "cover 8 bytes"),
        ({"a": {"dtype": "PICKLE", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported dtype"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
    ],
)
def test_inconsistent_headers_are_refused(tmp_path, digits_competition, tensors, data, expected):
    header = {"__metadata__": {"library": "timm", "arch": ARCH, "num_classes": "10"}, **tensors}
    path = write_safetensors(tmp_path / "bad.safetensors", header, data)
    assert expected in refusal(path, digits_competition)


def test_a_header_length_larger_than_the_cap_or_the_file_is_refused(tmp_path, digits_competition):
    path = write_safetensors(tmp_path / "long.safetensors", {"a": {}}, b"", header_length=2**31)
    assert "more than the" in refusal(path, digits_competition)
    path = write_safetensors(tmp_path / "short.safetensors", {"a": {}}, b"", header_length=4096)
    assert "the file holds only" in refusal(path, digits_competition)


# --- pickles: no payload ever runs ---------------------------------------------------------------


@pytest.fixture
def payloads(tmp_path):
    """Three hostile files and the marker their payload would create, plus proof that it works."""
    marker = tmp_path / "PWNED"
    raw = pickle.dumps(Payload(marker), protocol=4)
    files = {
        "raw.pkl": tmp_path / "raw.pkl",
        "renamed.safetensors": tmp_path / "renamed.safetensors",
        "model.pt": tmp_path / "model.pt",
    }
    files["raw.pkl"].write_bytes(raw)
    files["renamed.safetensors"].write_bytes(raw)
    torch.save({"weight": torch.zeros(2), "evil": Payload(marker)}, files["model.pt"])
    # The payload is live: loading it unsafely in another process creates a control marker.
    control = tmp_path / "CNTRL"  # same length as PWNED: the pickle's string sizes stay right
    subprocess.run(
        [sys.executable, "-c", "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read().replace(sys.argv[2].encode(), sys.argv[3].encode()))",
         str(files["raw.pkl"]), str(marker), str(control)],
        check=True,
    )
    assert control.read_text() == "pwned"
    return marker, files


def test_pickles_are_refused_for_scoring_and_never_run(payloads, digits_competition):
    marker, files = payloads
    for name, path in files.items():
        message = refusal(path, digits_competition)
        assert "never loads pickles" in message and "podium pack" in message, name
    assert not marker.exists()


def test_pack_refuses_pickles_through_weights_only_and_never_runs_them(payloads, tmp_path):
    marker, files = payloads
    for name in ("raw.pkl", "model.pt"):
        with pytest.raises(CheckpointError) as info:
            pack_checkpoint(files[name], tmp_path / "out.safetensors", library="timm", arch=ARCH)
        assert "weights_only=True" in info.value.messages[0], name
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_the_cli_refuses_a_pickle_renamed_to_safetensors_with_exit_2(payloads, digits_competition):
    marker, files = payloads
    done = subprocess.run(
        [*PODIUM, "score", str(files["renamed.safetensors"]), "--competition", str(digits_competition.root)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "never loads pickles" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


def test_pack_refuses_a_whole_pickled_module(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(timm.create_model(ARCH, num_classes=10), path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        pack_checkpoint(path, tmp_path / "out.safetensors", library="timm", arch=ARCH)


# --- archives: bombs, too many entries, programs ---------------------------------------------------


def test_a_zip_bomb_is_refused_unopened(tmp_path, digits_competition):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            for _ in range(64):
                fh.write(bytes(2**20))  # 64 MiB of zeros, about 64 KiB on disk
    assert path.stat().st_size < 2**20
    message = refusal(path, limited(digits_competition, max_checkpoint_bytes=8 * 2**20))
    assert "zip bomb" in message
    with pytest.raises(CheckpointError, match="zip bomb"):
        pack_checkpoint(path, tmp_path / "out.safetensors", library="timm", arch=ARCH, max_bytes=8 * 2**20)


def test_an_archive_with_too_many_entries_is_refused(tmp_path, digits_competition):
    path = tmp_path / "many.pt"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(MAX_ENTRIES + 1):
            zf.writestr(f"archive/data/{i}", b"")
    assert f"declares {MAX_ENTRIES + 1:,} entries" in refusal(path, digits_competition)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_and_torch_package_are_refused_as_programs(tmp_path, digits_competition):
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    assert "TorchScript program" in refusal(scripted, digits_competition)
    from torch.package import PackageExporter

    packaged = tmp_path / "packaged.pt"
    with PackageExporter(str(packaged)) as exporter:
        exporter.save_pickle("model", "weights.pkl", {"w": torch.zeros(2)})
    assert "torch.package" in refusal(packaged, digits_competition)
    for path in (scripted, packaged):
        with pytest.raises(CheckpointError, match="TorchScript|torch.package"):
            pack_checkpoint(path, tmp_path / "out.safetensors", library="timm", arch=ARCH)


def test_a_plain_pt_state_dict_is_refused_for_scoring_with_the_pack_command(tmp_path, state_dict, digits_competition):
    path = tmp_path / "model.pt"
    torch.save(state_dict, path)
    assert "podium pack model.pt" in refusal(path, digits_competition)


# --- podium pack ---------------------------------------------------------------------------------


def test_podium_pack_round_trips_a_ddp_training_checkpoint(tmp_path, state_dict):
    from safetensors import safe_open

    src, dst = tmp_path / "train.pth", tmp_path / "model.safetensors"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, src)
    done = subprocess.run(
        [*PODIUM, "pack", str(src), "--library", "timm", "--arch", ARCH, "-o", str(dst), "--mean", "0.5,0.5,0.5"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with safe_open(str(dst), "pt") as fh:
        assert ModelCard.from_metadata(fh.metadata()) == ModelCard("timm", ARCH, 10, None, (0.5, 0.5, 0.5), None)
        assert set(fh.keys()) == set(state_dict)
        for key in state_dict:
            assert torch.equal(fh.get_tensor(key), state_dict[key]), key


def test_pack_names_wrong_keys_and_shapes(tmp_path, state_dict):
    src = tmp_path / "model.pt"
    damaged = dict(state_dict)
    damaged.pop("stem.conv1.weight" if "stem.conv1.weight" in damaged else next(iter(damaged)))
    damaged["extra.weight"] = torch.zeros(3)
    torch.save(damaged, src)
    with pytest.raises(CheckpointError) as info:
        pack_checkpoint(src, tmp_path / "out.safetensors", library="timm", arch=ARCH, num_classes=10)
    text = "\n".join(info.value.messages)
    assert "missing from the checkpoint" in text and "extra.weight" in text
    with pytest.raises(CheckpointError, match="wrong shape: fc.weight is"):
        pack_checkpoint(src, tmp_path / "out.safetensors", library="timm", arch=ARCH, num_classes=5)


# --- the fast input path agrees with torchvision's per-image transforms ----------------------------


@pytest.mark.parametrize("size", [32, 48, 20])
def test_fast_batch_transform_matches_per_image_torchvision(digits_competition, size):
    from harness.competition import load_test

    images = load_test(digits_competition)[0][:16]
    spec = InputSpec(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    fast = prepare_batch(torch.from_numpy(images), spec, mean, std)
    naive = torch.stack([reference_transform(spec)(img) for img in images])
    assert fast.shape == naive.shape == (16, 3, size, size)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    # In grey levels: torchvision's fixed-point uint8 kernel may round a pixel the other way.
    levels = (fast - naive).abs() * std * 255
    assert levels.max().item() <= 1.001
    assert levels.mean().item() < 0.3


def test_padding_the_last_batch_changes_no_prediction(digits_competition, state_dict):
    from harness.checkpoint.infer import predict_array
    from harness.competition import load_test

    images = load_test(digits_competition)[0][:150]
    model = timm.create_model(ARCH, num_classes=10)
    model.load_state_dict(state_dict)
    torch.manual_seed(1)
    with torch.no_grad():
        model.get_classifier().weight.normal_()  # a random head: the untrained one scores every class alike
    spec = InputSpec(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    cpu = torch.device("cpu")
    whole = predict_array(model, images, spec, cpu, batch_size=150, progress=False)
    padded = predict_array(model, images, spec, cpu, batch_size=64, progress=False, pad_last=True)  # 64 + 64 + 22 padded
    assert padded.shape == (150,) and padded.dtype == np.int64
    assert (padded == whole).mean() > 0.99
    assert len(np.unique(whole)) > 1  # the comparison means something
