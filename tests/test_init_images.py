"""`podium init images`: the organizer's own folders, every format and mode, every bad input."""
from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.competition import PRIVATE, PUBLIC, load_competition, load_solution, load_test, load_train
from harness.errors import DatasetError
from harness.images import build_images_competition
from harness.imagefolder import iter_image_batches, held_out_image_files, train_image_files
from tests.conftest import PODIUM

CLASSES = ("ant", "bee", "cow")
COLOURS = {"ant": (220, 30, 30), "bee": (30, 200, 40), "cow": (30, 40, 210)}


def solid(colour, size=(48, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def make_tree(base: Path, per_class: int = 4, test_per_class: int = 3, fmt: str = "PNG") -> dict[str, Path]:
    """train/<class>/<i>.png, test/t<i>.png and labels.csv; each class one solid colour plus a little noise."""
    rng = np.random.default_rng(0)
    train, test = base / "train", base / "test"
    rows = []
    for c in CLASSES:
        (train / c).mkdir(parents=True)
        for i in range(per_class):
            noisy = np.clip(np.asarray(solid(COLOURS[c]), dtype=np.int16) + rng.integers(-9, 10, (40, 48, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(train / c / f"{i}.{fmt.lower()}", fmt)
    test.mkdir()
    for c in CLASSES:
        for i in range(test_per_class):
            name = f"{c}-t{i}.png"
            noisy = np.clip(np.asarray(solid(COLOURS[c]), dtype=np.int16) + rng.integers(-9, 10, (40, 48, 3)), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(test / name)
            rows.append((name, c))
    labels = base / "labels.csv"
    write_labels(labels, rows)
    return {"train": train, "test": test, "labels": labels}


def write_labels(path: Path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "label"])
        out.writerows(rows)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.reader(fh) if r][1:]


def build(tree, root, **kwargs):
    kwargs.setdefault("workers", 1)
    return build_images_competition(tree["train"], tree["test"], tree["labels"], root, kwargs.pop("name", "mine"), **kwargs)


def refused(tree, root, *fragments, **kwargs) -> str:
    """Build, expect a DatasetError naming every fragment, and nothing left under root."""
    with pytest.raises(DatasetError) as info:
        build(tree, root, **kwargs)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, text
    assert not root.exists() or list(root.iterdir()) == [], list(root.rglob("*"))
    return text


# ------------------------------------------------------------------ a working build


def test_the_format_is_an_image_folder_with_manifests(tmp_path):
    tree = make_tree(tmp_path / "src")
    comp, report = build(tree, tmp_path / "out", seed=3, image_size=32)
    assert comp.folders and comp.classes == CLASSES and not comp.hidden_test
    assert (report.train_images, report.test_images, report.image_size) == (12, 9, 32)
    # ImageFolder over public/train gives the same classes, order and labels as train.csv.
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(comp.root / "public" / "train"))
    paths, labels = train_image_files(comp)
    assert tuple(folder.classes) == CLASSES
    assert [Path(p) for p, _ in folder.samples] == paths and [t for _, t in folder.samples] == labels.tolist()
    images, train_labels = load_train(comp)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    for image, label in zip(images, train_labels):  # each class keeps its colour through JPEG
        assert np.abs(image.reshape(-1, 3).mean(0) - COLOURS[CLASSES[label]]).max() < 8
    test_images, ids = load_test(comp)
    solution = load_solution(comp)
    assert tuple(ids) == solution.ids and test_images.shape == (9, 32, 32, 3)
    for image, label in zip(test_images, solution.labels):  # the answer key follows the shuffle
        assert np.abs(image.reshape(-1, 3).mean(0) - COLOURS[CLASSES[label]]).max() < 8
    assert set(solution.usage) == {PUBLIC, PRIVATE}
    names = {p.name for p in (comp.root / "public" / "test").iterdir()}
    assert names == {f"{i}.jpg" for i in ids}  # opaque ids: no original name, no label in public/
    public_text = "".join(p.read_text() for p in (comp.root / "public").glob("*.csv"))
    assert "ant-t0" not in public_text and "labels" not in {p.name for p in (comp.root / "public").iterdir()}
    assert (comp.root / "description.md").read_text().count("<") >= 3  # a skeleton to fill in
    assert "`ant`" in (comp.root / "description.md").read_text()


def test_same_inputs_and_seed_give_identical_files(tmp_path):
    tree = make_tree(tmp_path / "src")
    a, _ = build(tree, tmp_path / "a", seed=5, image_size=24, workers=2)
    b, _ = build(tree, tmp_path / "b", seed=5, image_size=24, workers=1)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files if f.name != "competition.toml")


def test_default_size_is_the_median_shorter_side_capped_at_224(tmp_path):
    tree = make_tree(tmp_path / "src")  # every image 48x40: median shorter side 40
    comp, report = build(tree, tmp_path / "out")
    assert report.image_size == 40 and comp.eval_transform.size == 40
    big = tmp_path / "big"
    tree = make_tree(big)
    for p in tree["train"].rglob("*.png"):
        Image.new("RGB", (400, 300), COLOURS[p.parent.name]).save(p)
    _, report = build(tree, tmp_path / "out2")
    assert report.image_size == 224  # 12 shorter sides of 300 and 9 of 40: median 300, capped at 224


def test_every_format_and_mode_becomes_rgb(tmp_path):
    tree = make_tree(tmp_path / "src")
    bee = tree["train"] / "bee"
    green = COLOURS["bee"]
    solid(green).save(bee / "jpeg.jpg", "JPEG", quality=95)
    solid(green).save(bee / "bmp.bmp", "BMP")
    solid(green).save(bee / "webp.webp", "WEBP", lossless=True)
    frames = [solid(green), solid((0, 0, 0))]
    frames[0].save(bee / "anim.gif", save_all=True, append_images=frames[1:], duration=50)  # first frame counts
    solid(green).convert("CMYK").save(bee / "cmyk.jpg", "JPEG", quality=95)
    grey = Image.new("L", (48, 40), 150)
    grey.save(bee / "grey.png")
    Image.fromarray(np.full((40, 48), 150 * 257, dtype=np.uint16)).save(bee / "grey16.png")
    rgba = Image.new("RGBA", (48, 40), (*green, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 48, 20))  # top half fully transparent: becomes white
    rgba.save(bee / "rgba.png")
    palette = solid(green).convert("P")
    palette.save(bee / "palette.png")
    comp, _ = build(tree, tmp_path / "out", image_size=40, image_format="png")
    out = comp.root / "public" / "train" / "bee"
    for name in ("jpeg", "bmp", "webp", "anim", "cmyk", "palette"):
        pixels = np.asarray(Image.open(out / f"{name}.png"))
        assert pixels.shape == (40, 40, 3), name
        assert np.abs(pixels.reshape(-1, 3).mean(0) - green).max() < 6, (name, pixels.reshape(-1, 3).mean(0))
    for name in ("grey", "grey16"):
        pixels = np.asarray(Image.open(out / f"{name}.png"))
        assert pixels.shape == (40, 40, 3) and np.abs(pixels.astype(int) - 150).max() <= 1, name
    rgba_out = np.asarray(Image.open(out / "rgba.png")).astype(int)
    assert (rgba_out[:18] == 255).all() and np.abs(rgba_out[22:] - green).max() <= 1


def test_exif_orientation_is_applied_and_the_centre_is_kept(tmp_path):
    tree = make_tree(tmp_path / "src")
    # Stored 80 wide x 40 high: left half red, right half blue. EXIF 6 = display rotated 90 degrees
    # clockwise, i.e. 40 wide x 80 high with red on top and blue below.
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    img.paste((0, 0, 255), (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tree["train"] / "ant" / "rotated.jpg", "JPEG", quality=98, exif=exif.tobytes())
    # 40 wide x 120 high: green top and bottom thirds, red middle third: the centre crop is red.
    tall = Image.new("RGB", (40, 120), (0, 255, 0))
    tall.paste((255, 0, 0), (0, 40, 40, 80))
    tall.save(tree["train"] / "ant" / "tall.png")
    comp, _ = build(tree, tmp_path / "out", image_size=20, image_format="png")
    rotated = np.asarray(Image.open(comp.root / "public" / "train" / "ant" / "rotated.png")).astype(int)
    assert rotated.shape == (20, 20, 3)
    assert rotated[:8, :, 0].mean() > 200 and rotated[:8, :, 2].mean() < 50  # red on top
    assert rotated[12:, :, 2].mean() > 200 and rotated[12:, :, 0].mean() < 50  # blue below
    centre = np.asarray(Image.open(comp.root / "public" / "train" / "ant" / "tall.png")).astype(int)
    assert np.abs(centre[1:-1] - (255, 0, 0)).max() <= 2  # no green left


def test_hidden_test_keeps_the_test_images_out_of_public(tmp_path):
    tree = make_tree(tmp_path / "src")
    comp, _ = build(tree, tmp_path / "out", hidden_test=True, image_size=24)
    assert comp.hidden_test and load_competition(comp.root).hidden_test
    public = {p.relative_to(comp.root / "public").as_posix() for p in (comp.root / "public").rglob("*")}
    assert not any(p.startswith("test") for p in public) and "sample_submission.csv" not in public
    assert comp.test_path == comp.root / "private" / "test" and len(list(comp.test_path.iterdir())) == 9
    ids, paths = held_out_image_files(comp)
    assert tuple(ids) == load_solution(comp).ids and all(p.is_relative_to(comp.root / "private") for p in paths)
    assert (comp.root / "private").stat().st_mode & 0o077 == 0
    from harness.pages import public_files

    listed = [f.path for f in public_files(comp)]  # the Data page: training images and train.csv only
    assert len(listed) == 13 and "train.csv" in listed and not any(p.startswith("test") for p in listed)


def test_batches_are_streamed_in_order(tmp_path):
    tree = make_tree(tmp_path / "src")
    comp, _ = build(tree, tmp_path / "out", image_size=16)
    whole, _ = load_test(comp)
    _, paths = held_out_image_files(comp)
    batches = list(iter_image_batches(paths, 4))
    assert [len(b) for b in batches] == [4, 4, 1]
    assert np.array_equal(np.concatenate(batches), whole)


# ------------------------------------------------------------------ bad input


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_image_is_named_and_nothing_is_written(tmp_path):
    tree = make_tree(tmp_path / "src")
    truncated(tree["train"] / "cow" / "2.png")
    root = tmp_path / "out"
    text = refused(tree, root, "cow/2.png", "--skip-bad")
    assert "--train" in text
    truncated(tree["test"] / "ant-t1.png")
    refused(tree, root, "ant-t1.png", "cow/2.png", image_size=16)  # every bad file, also with a given size


def test_skip_bad_leaves_them_out_and_lists_them(tmp_path):
    tree = make_tree(tmp_path / "src")
    truncated(tree["train"] / "cow" / "2.png")
    (tree["test"] / "bee-t0.png").write_bytes(b"not an image at all")
    (tree["train"] / "ant" / "tiff.tif").write_bytes(_tiff())
    comp, report = build(tree, tmp_path / "out", skip_bad=True)
    assert len(report.skipped) == 3 and any("TIFF" in s for s in report.skipped)
    assert report.train_images == 11 and report.test_images == 8
    assert len(load_solution(comp)) == 8 and len(train_image_files(comp)[0]) == 11


def _tiff() -> bytes:
    buf = io.BytesIO()
    solid((1, 2, 3)).save(buf, "TIFF")
    return buf.getvalue()


def test_an_unsupported_format_is_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    (tree["train"] / "ant" / "scan.tif").write_bytes(_tiff())
    refused(tree, tmp_path / "out", "scan.tif", "TIFF", "PNG, JPEG, BMP, GIF and WebP")


def test_labels_and_files_must_match(tmp_path):
    tree = make_tree(tmp_path / "src")
    solid((1, 1, 1)).save(tree["test"] / "extra.png")
    rows = read_rows(tree["labels"])
    rows = [r for r in rows if r[0] != "bee-t2.png"]
    (tree["test"] / "bee-t2.png").unlink()
    rows.append(["ghost.png", "ant"])
    write_labels(tree["labels"], rows)
    refused(tree, tmp_path / "out", "have no label", "extra.png", "name no file", "ghost.png")


def test_a_label_that_is_not_a_class_is_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    rows = read_rows(tree["labels"])
    rows[0][1] = "wasp"
    write_labels(tree["labels"], rows)
    text = refused(tree, tmp_path / "out", "'wasp'", "not a class", "ant, bee, cow", "line 2")
    assert "have no label" not in text  # one message for one mistake


def test_an_empty_class_folder_is_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    (tree["train"] / "dog").mkdir()
    (tree["train"] / "dog" / ".DS_Store").write_bytes(b"x")  # hidden files do not count
    refused(tree, tmp_path / "out", "dog", "empty")


def test_fewer_than_two_classes_is_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    for c in ("bee", "cow"):
        for p in (tree["train"] / c).iterdir():
            p.unlink()
        (tree["train"] / c).rmdir()
    refused(tree, tmp_path / "out", "at least two classes", "'ant'")


def test_duplicate_file_names_are_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    solid(COLOURS["ant"]).save(tree["train"] / "ant" / "0.jpg")  # 0.png is there: both would be 0.jpg
    refused(tree, tmp_path / "out", "duplicate file names", "ant/0.jpg", "ant/0.png")
    (tree["train"] / "ant" / "0.jpg").unlink()
    rows = read_rows(tree["labels"])
    write_labels(tree["labels"], rows + [rows[0]])
    refused(tree, tmp_path / "out", "duplicate file name", rows[0][0])


def test_a_test_image_identical_to_a_training_image_is_a_leak(tmp_path):
    tree = make_tree(tmp_path / "src")
    (tree["test"] / "bee-t1.png").write_bytes((tree["train"] / "bee" / "3.png").read_bytes())
    refused(tree, tmp_path / "out", "leak", "bee-t1.png", "bee/3.png", "--allow-duplicates")
    comp, report = build(tree, tmp_path / "out", allow_duplicates=True)
    assert len(report.duplicates) == 1 and len(load_solution(comp)) == 9


def test_an_existing_competition_is_not_overwritten(tmp_path):
    tree = make_tree(tmp_path / "src")
    build(tree, tmp_path / "out", image_size=16)
    (tmp_path / "out" / "mine" / "description.md").write_text("mine", encoding="utf-8")
    with pytest.raises(DatasetError, match="already exists"):
        build(tree, tmp_path / "out", image_size=16)
    assert (tmp_path / "out" / "mine" / "description.md").read_text() == "mine"


def test_the_cli_exits_2_with_the_message_and_writes_nothing(tmp_path):
    tree = make_tree(tmp_path / "src")
    truncated(tree["train"] / "bee" / "1.png")
    root = tmp_path / "out"
    args = [*PODIUM, "init", "images", "--train", str(tree["train"]), "--test", str(tree["test"]),
            "--labels", str(tree["labels"]), "--root", str(root), "--name", "mine", "--workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "bee/1.png" in done.stderr and "Traceback" not in done.stderr
    assert not root.exists()
    done = subprocess.run([*args, "--skip-bad", "--hidden-test"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped (unreadable)" in done.stderr and "bee/1.png" in done.stderr
    assert load_competition(root / "mine").hidden_test


def test_the_readme_loading_snippet_runs(tmp_path, monkeypatch):
    """The README's plain-torchvision snippet, run as written in a built competition."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Teams load it with plain torchvision"):]
    snippet = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python\n") + 10)]
    tree = make_tree(tmp_path / "src")
    comp, _ = build(tree, tmp_path / "out", image_size=24)
    monkeypatch.chdir(comp.root)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["train"].classes == list(CLASSES) and len(namespace["train"]) == 12
    images, labels = next(iter(namespace["loader"]))
    assert images.shape[1:] == (3, 24, 24)
    assert [i for i, _ in namespace["test"]] == list(load_solution(comp).ids)


def test_the_cli_builds_digits_with_a_hidden_test_set_and_refuses_misplaced_options(tmp_path):
    done = subprocess.run([*PODIUM, "init", "digits", "--root", str(tmp_path), "--hidden-test"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the hidden test images" in done.stdout and "test.npz" not in done.stdout.split("keep private")[0]
    comp = load_competition(tmp_path / "digits")
    assert comp.hidden_test and (tmp_path / "digits" / "private" / "test.npz").is_file()
    done = subprocess.run([*PODIUM, "init", "digits", "--root", str(tmp_path / "x"), "--skip-bad", "--image-size", "32"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--image-size, --skip-bad only apply to `podium init images`" in done.stderr
    done = subprocess.run([*PODIUM, "init", "images", "--root", str(tmp_path / "y")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs --train, --test, --labels, --name" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_test_names_differing_only_by_letter_case_are_refused(tmp_path):
    tree = make_tree(tmp_path / "src")
    solid(COLOURS["ant"]).save(tree["test"] / "ANT-t0.png")  # beside ant-t0.png
    write_labels(tree["labels"], read_rows(tree["labels"]) + [["ANT-t0.png", "ant"]])
    refused(tree, tmp_path / "out", "differ only by letter case", "'ANT-t0.png'", "'ant-t0.png'")
    (tree["test"] / "ANT-t0.png").unlink()
    write_labels(tree["labels"], [r for r in read_rows(tree["labels"]) if r[0] != "ANT-t0.png"])
    solid(COLOURS["bee"]).save(tree["train"] / "bee" / "Shot.png")
    solid(COLOURS["bee"]).save(tree["train"] / "bee" / "shot.PNG")  # both would be stored as bee/shot.jpg
    refused(tree, tmp_path / "out", "duplicate file names in the training folder", "bee/Shot.png", "bee/shot.PNG")


def test_an_image_outside_the_class_folders_is_refused_and_other_loose_files_are_reported(tmp_path):
    tree = make_tree(tmp_path / "src")
    solid(COLOURS["ant"]).save(tree["train"] / "stray.jpg")  # lost from its class folder: ImageFolder ignores it
    refused(tree, tmp_path / "out", "lie directly in the training folder", "stray.jpg", "move each into its class")
    (tree["train"] / "stray.jpg").unlink()
    (tree["train"] / "README.txt").write_text("photos from the 2026 field trip")
    comp, report = build(tree, tmp_path / "out", image_size=16)
    assert report.ignored == [f"{tree['train'] / 'README.txt'}: not in a class folder, ignored"]
    assert report.train_images == 12 and "README" not in (comp.root / "public" / "train.csv").read_text()
    args = [*PODIUM, "init", "images", "--train", str(tree["train"]), "--test", str(tree["test"]),
            "--labels", str(tree["labels"]), "--root", str(tmp_path / "cli"), "--name", "mine", "--workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "warning:" in done.stderr and "README.txt: not in a class folder" in done.stderr


def test_a_root_that_is_a_file_is_refused_with_exit_2(tmp_path):
    tree = make_tree(tmp_path / "src")
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    for dataset, root in (("images", afile), ("images", afile / "sub"), ("digits", afile)):
        args = [*PODIUM, "init", dataset, "--root", str(root)]
        if dataset == "images":
            args += ["--train", str(tree["train"]), "--test", str(tree["test"]), "--labels", str(tree["labels"]),
                     "--name", "mine", "--workers", "1"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (args, done.stderr)
        assert "is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    assert afile.read_text() == "not a folder"


def test_a_build_killed_with_sigkill_is_swept_by_the_next_init_of_that_name(tmp_path):
    import os
    import signal
    import time

    from harness.images import OWNER_FILE, _process_start

    tree = make_tree(tmp_path / "src", per_class=150, test_per_class=40)  # 570 images: a build of a few seconds
    root = tmp_path / "out"
    root.mkdir()
    args = [*PODIUM, "init", "images", "--train", str(tree["train"]), "--test", str(tree["test"]),
            "--labels", str(tree["labels"]), "--root", str(root), "--name", "mine", "--workers", "1",
            "--image-format", "png", "--image-size", "256"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(root.glob(".mine.building-*/public/train/*/*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pool: nothing runs a cleanup
    proc.wait()
    (stale,) = root.glob(".mine.building-*")
    assert (stale / OWNER_FILE).read_text().split("\n")[1] == str(proc.pid)
    # A build folder whose owner still runs (this test's process) is another build in progress: kept.
    alive = root / ".mine.building-alive"
    alive.mkdir()
    host = (stale / OWNER_FILE).read_text().split("\n")[0]
    (alive / OWNER_FILE).write_text(f"{host}\n{os.getpid()}\n{_process_start(os.getpid())}\n")
    reused = root / ".mine.building-reused"  # its pid runs, but it is another process (started later): stale
    reused.mkdir()
    (reused / OWNER_FILE).write_text(f"{host}\n{os.getpid()}\n1\n")
    other = root / ".other.building-x"  # another competition's: never touched
    other.mkdir()
    comp, report = build(tree, root, image_size=16)
    assert sorted(report.swept) == sorted([str(stale), str(reused)]) and not stale.exists() and not reused.exists()
    assert alive.is_dir() and other.is_dir() and comp.root == root / "mine"
    assert not (comp.root / OWNER_FILE).exists()


def test_grey_images_are_resized_before_becoming_rgb_with_the_same_bytes(tmp_path):
    from harness.images import prepare_image, resize_center_crop, to_rgb

    rng = np.random.default_rng(4)
    grey = Image.fromarray(rng.integers(0, 256, (91, 137), dtype=np.uint8), "L")
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        grey.save(buf, fmt)
        decoded = Image.open(io.BytesIO(buf.getvalue()))
        decoded.load()
        reference = np.asarray(resize_center_crop(to_rgb(decoded), 50))  # convert first, then resize
        assert np.array_equal(np.asarray(prepare_image(buf.getvalue(), 50)), reference), fmt


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_never_below_the_size(tmp_path):
    from harness.images import prepare_image, resize_center_crop

    rng = np.random.default_rng(5)
    big = Image.fromarray(rng.integers(0, 256, (900, 1300, 3), dtype=np.uint8))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    for size, scaled in ((100, (163, 113)), (200, (325, 225)), (400, (650, 450)), (460, (1300, 900))):
        opened = Image.open(io.BytesIO(buf.getvalue()))
        opened.draft("RGB", (-(-1300 * size // 900), size))  # libjpeg's 1/8, 1/4, 1/2 or full scale
        assert opened.size == scaled and min(opened.size) >= size
        opened.load()
        expected = np.asarray(resize_center_crop(opened, size))
        assert np.array_equal(np.asarray(prepare_image(buf.getvalue(), size)), expected), size


def _cifar10_archive(folder: Path, per_batch: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A small cifar-10-python.tar.gz in CIFAR-10's own python format: five training batches and a
    test batch, each a pickled dict (protocol 2) of uint8 rows of 3,072 bytes (R, G, B planes) and labels."""
    import pickle
    import tarfile

    rng = np.random.default_rng(6)
    inner = folder / "cifar-10-batches-py"
    inner.mkdir(parents=True)
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        with (inner / name).open("wb") as fh:
            pickle.dump({"batch_label": f"{name} of 6", "labels": y, "data": data,
                         "filenames": [f"img_{i}.png" for i in range(per_batch)]}, fh, protocol=2)
        rows.append(data)
        labels.append(y)
    with (inner / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072}, fh, protocol=2)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname="cifar-10-batches-py")
    import shutil

    shutil.rmtree(inner)
    images = np.concatenate(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return archive, images, np.concatenate(labels)


def test_init_cifar10_hidden_test_from_a_local_archive_in_the_python_format(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _, images, labels = _cifar10_archive(data, per_batch=20)
    env = {**__import__("os").environ, "PODIUM_DATA": str(data)}  # the documented place for the archive
    done = subprocess.run([*PODIUM, "init", "cifar10", "--root", str(tmp_path / "comps"), "--hidden-test", "--seed", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert (data / "cifar-10-batches-py" / "test_batch").is_file()  # extracted once, beside the archive
    comp = load_competition(tmp_path / "comps" / "cifar10")
    assert comp.hidden_test and comp.classes[0] == "airplane"
    assert not (comp.root / "public" / "test.npz").exists() and not (comp.root / "public" / "sample_submission.csv").exists()
    assert (comp.root / "private" / "test.npz").is_file()
    train_images, train_labels = load_train(comp)
    assert np.array_equal(train_images, images[:100]) and np.array_equal(train_labels, labels[:100])
    test_images, ids = load_test(comp)
    solution = load_solution(comp)
    assert solution.hidden_test and len(ids) == 20 and tuple(ids) == solution.ids
    # The shuffled, renamed test set is the archive's test batch, each image with its own label.
    originals = {images[100 + i].tobytes(): labels[100 + i] for i in range(20)}
    assert sorted(originals) == sorted(img.tobytes() for img in test_images)
    assert [originals[img.tobytes()] for img in test_images] == list(solution.labels)
    # A prediction CSV is refused on it; the files say why.
    csv_path = tmp_path / "guess.csv"
    csv_path.write_text("id,label\n" + "".join(f"{i},cat\n" for i in ids))
    scored = subprocess.run([*PODIUM, "score", str(csv_path), "--competition", str(comp.root)],
                            capture_output=True, text=True, timeout=120)
    assert scored.returncode == 2 and "hidden" in scored.stderr
    # A damaged batch is named, not a traceback.
    (data / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02}q\x00")
    again = subprocess.run([*PODIUM, "init", "cifar10", "--root", str(tmp_path / "c2")], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 2 and "data_batch_3" in again.stderr and "Traceback" not in again.stderr
