"""``podium init images``: a competition from the organizer's own image folders.

Input: ``--train DIR`` in torchvision's ImageFolder layout (``DIR/<class>/<file>``, classes = the
folder names in sorted order), ``--test DIR`` (a folder of images) and ``--labels FILE`` (a CSV
``file,label``: each test image's class, paths relative to the test folder). Files and folders whose
name starts with a dot are ignored (``.DS_Store``, ``.ipynb_checkpoints``); an image lying directly
in ``--train`` (in no class folder) is refused, any other loose file there is reported and ignored.

Every image goes through one rule (``prepare_image``): the first frame (GIF, WebP); a JPEG at least
twice the target size decoded by libjpeg at 1/2, 1/4 or 1/8 scale (the largest reduction that keeps
its shorter side at N or more; DCT scaling, as ``Image.draft``); the EXIF orientation applied;
converted to RGB (grayscale, palette and CMYK converted; transparency composited on white; 16-bit
channels scaled to 8 bits); the shorter side scaled to N and the centre N x N kept (Pillow's
antialiased bilinear filter, as torchvision's ``Resize``, over the exact centre box). N is
``--image-size``, default the median shorter side of all the images, capped at 224.

Output: the ``image-folders`` format (``harness/imagefolder.py``), JPEG quality 95 without chroma
subsampling by default (``--image-format png`` for lossless files; PNG encoding costs about ten
times as much as JPEG). The images are processed by a pool of processes (``--workers``, default one per CPU this
process may use), one image at a time each, and written straight to disk, so memory does not grow
with the dataset; the same inputs give the same bytes. The workers also return each written file's
SHA-256, size and modification time, which become the Data page's listing
(``harness.pages.write_listing``): the board never hashes the images again. Everything is built in
a hidden folder ``ROOT/.NAME.building-*`` beside the competition (with a note of the building
process) and renamed into place at the end: a refused or interrupted build leaves nothing under
ROOT, and one killed outright (SIGKILL, power cut) leaves a folder that the next ``podium init``
of the same name removes once its process is gone.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import multiprocessing
import os
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harness.errors import DatasetError, capped

READABLE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "GIF": "GIF", "WEBP": "WebP"}
OUTPUT_FORMATS = {
    "jpeg": ("JPEG", ".jpg", {"quality": 95, "subsampling": 0}),
    "png": ("PNG", ".png", {"compress_level": 1}),
}
MAX_DEFAULT_SIZE = 224
MIN_SIZE, MAX_SIZE = 8, 1024
SKIP_HINT = "replace or remove it, or pass --skip-bad to leave such images out"


# ---------------------------------------------------------------- one image


def to_rgb(img):
    """Any Pillow mode as RGB: transparency on white, 16-bit and float channels brought to 8 bits."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("RGB", "L") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        img = canvas
    return img if img.mode == "RGB" else img.convert("RGB")


def resize_center_crop(img, size: int):
    """Shorter side to ``size``, then the centre ``size`` x ``size`` (one resampling, exact box)."""
    from PIL import Image

    width, height = img.size
    if (width, height) == (size, size):
        return img
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    return img.resize((size, size), Image.BILINEAR, box=box)


def prepare_image(data: bytes, size: int):
    """The competition's rule for one image file's bytes: an RGB ``size`` x ``size`` Pillow image.

    Raises ``ValueError`` with a reason for a file that is not a readable image podium accepts.
    """
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.format not in READABLE_FORMATS:
                raise ValueError(f"it is a {img.format} image; podium reads PNG, JPEG, BMP, GIF and WebP")
            width, height = img.size
            short = min(width, height)
            if img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L") and short >= 2 * size:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the target size.
                img.draft(img.mode, (math.ceil(width * size / short), math.ceil(height * size / short)))
            img.seek(0)  # the first frame of an animation
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            if img.mode == "L" and "transparency" not in img.info:
                # Grey stays grey: resizing the one channel, then copying it to R, G and B, gives the
                # same bytes as converting first, for a third of the work.
                return resize_center_crop(img, size).convert("RGB")
            return resize_center_crop(to_rgb(img), size)
        except ValueError:
            raise
        except Exception as exc:  # Pillow's errors for damaged files are many: OSError, SyntaxError, EOFError...
            reason = str(exc).strip() or type(exc).__name__
            if isinstance(exc, Image.UnidentifiedImageError):
                reason = "not an image format Pillow recognises"
            raise ValueError(reason[:200]) from None


def probe(path: str) -> tuple[int, str | None]:
    """(shorter side, None) from the header alone, or (0, the reason it cannot be read)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format not in READABLE_FORMATS:
                    return 0, f"it is a {img.format} image; podium reads PNG, JPEG, BMP, GIF and WebP"
                return min(img.size), None
    except Exception as exc:
        return 0, (str(exc).strip() or type(exc).__name__)[:200]


class Done(NamedTuple):
    """What a worker reports for one image: the source's SHA-256 (the leak check), and either the
    reason it could not be used or the written file's SHA-256, size and modification time (the
    Data page's listing, so that the board never hashes the images again). A tuple: cheap to pickle."""

    source_sha256: str
    error: str | None = None
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0


def process(task: tuple[str, str, int, str]) -> Done:
    """Worker: read ``src``, apply the rule, write ``dst`` (a new file)."""
    src, dst, size, fmt = task
    with open(src, "rb") as fh:
        data = fh.read()
    source_sha256 = hashlib.sha256(data).hexdigest()
    try:
        img = prepare_image(data, size)
    except ValueError as exc:
        return Done(source_sha256, str(exc))
    pil_format, _, options = OUTPUT_FORMATS[fmt]
    buf = io.BytesIO()
    img.save(buf, pil_format, **options)
    out = buf.getbuffer()
    # Outside the try: a full disk is not a bad image. O_EXCL: every output name is new.
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        written = 0
        while written < len(out):
            written += os.write(fd, out[written:])
        stat = os.fstat(fd)
    finally:
        os.close(fd)
    return Done(source_sha256, None, hashlib.sha256(out).hexdigest(), stat.st_size, stat.st_mtime_ns)


# ---------------------------------------------------------------- the input folders


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp")


def _visible_files(folder: str) -> list[tuple[str, str]]:
    """(relative path with forward slashes, full path) of every file under ``folder``, recursively and
    following links to folders (like ImageFolder), none hidden, sorted by relative path. Anything that
    is not a folder counts as a file (a broken link is then reported as unreadable, not skipped)."""
    out: list[tuple[str, str]] = []
    todo = [("", folder)]
    while todo:
        prefix, path = todo.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    todo.append((f"{prefix}{entry.name}/", entry.path))
                else:
                    out.append((prefix + entry.name, entry.path))
    out.sort()
    return out


@dataclass
class Item:
    source: str  # the file's path, as found under --train or --test
    name: str  # the path shown to the organizer (relative to --train or --test)
    label: int
    out: str = ""  # relative to the competition directory
    digest: str = ""  # the source's SHA-256
    error: str | None = None
    done: Done | None = None


@dataclass
class ImagesReport:
    """What a build left out, let through or cleaned up, for the CLI to print."""

    skipped: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # loose non-image files directly in --train
    swept: list[str] = field(default_factory=list)  # stale build folders of killed builds, removed
    image_size: int = 0
    train_images: int = 0
    test_images: int = 0


def scan_train(train_dir: Path) -> tuple[tuple[str, ...], list[Item], list[str], list[str]]:
    """(classes, items, problems, loose files ignored)."""
    problems: list[str] = []
    folders, loose = [], []
    with os.scandir(train_dir) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            (folders if entry.is_dir() else loose).append(entry.name)
    classes = tuple(sorted(folders))
    loose.sort()
    images = [n for n in loose if n.lower().endswith(IMAGE_SUFFIXES)]
    if images:
        problems.append(
            f"{train_dir}: {len(images)} image(s) lie directly in the training folder, in no class folder: "
            f"{', '.join(images[:10])}{' ...' if len(images) > 10 else ''}; move each into its class's folder "
            "(DIR/<class>/<file>, torchvision's ImageFolder layout) or remove it."
        )
    ignored = [f"{train_dir / n}: not in a class folder, ignored" for n in loose if n not in images]
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        problems.append(
            f"{train_dir}: found {found} as class folder(s); a competition needs at least two classes, one "
            "folder per class holding its images (DIR/<class>/<file>, torchvision's ImageFolder layout)."
        )
    items: list[Item] = []
    for index, name in enumerate(classes):
        files = _visible_files(os.path.join(train_dir, name))
        if not files:
            problems.append(f"{train_dir / name}: the class folder {name!r} is empty; add its images or remove the folder.")
        items += [Item(full, f"{name}/{relative}", index) for relative, full in files]
    return classes, items, problems, ignored


def read_labels(labels_file: Path, classes: tuple[str, ...]) -> tuple[dict[str, int], set[str], list[str]]:
    """(file -> class index for the valid lines, every file named, problems)."""
    problems: list[str] = []
    try:
        text = labels_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return {}, set(), [f"{labels_file}: not a UTF-8 text file; save the labels as a UTF-8 CSV file,label."]
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    if not rows or [c.strip().lower() for c in rows[0]] != ["file", "label"]:
        return {}, set(), [f"{labels_file}: the first line must be the header file,label (then one test image per line)."]
    index = {name: i for i, name in enumerate(classes)}
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            problems.append(f"{labels_file}: line {line} must have two columns file,label, got {row!r}.")
            continue
        file, label = row[0].strip(), row[1].strip()
        if file in first_line:
            problems.append(
                f"{labels_file}: line {line}: duplicate file name {file!r} (first on line {first_line[file]}); "
                "give each test image one label."
            )
            continue
        first_line[file] = line
        if label not in index:
            problems.append(
                f"{labels_file}: line {line}: {label!r} (for {file!r}) is not a class; the classes are the training "
                f"folder names: {', '.join(classes)}."
            )
            continue
        labels[file] = index[label]
    return labels, set(first_line), problems


def scan_test(test_dir: Path, labels_file: Path, classes: tuple[str, ...]) -> tuple[list[Item], list[str]]:
    labels, named, problems = read_labels(labels_file, classes)
    names = dict(_visible_files(str(test_dir)))
    if not names:
        problems.append(f"{test_dir}: the test folder holds no images.")
    unlabelled = [n for n in names if n not in named]
    unmatched = [n for n in sorted(named) if n not in names]
    if unlabelled:
        problems.append(
            f"{len(unlabelled)} test image(s) have no label in {labels_file}: {', '.join(unlabelled[:10])}"
            f"{' ...' if len(unlabelled) > 10 else ''}; add a line file,label for each (or remove the image)."
        )
    if unmatched:
        problems.append(
            f"{len(unmatched)} label(s) in {labels_file} name no file in {test_dir}: {', '.join(unmatched[:10])}"
            f"{' ...' if len(unmatched) > 10 else ''}; file is the path relative to the test folder."
        )
    folded: dict[str, str] = {}
    for n in names:
        other = folded.setdefault(n.casefold(), n)
        if other != n:
            problems.append(
                f"{test_dir}: duplicate file names {other!r} and {n!r} (they differ only by letter case); rename one."
            )
    items = [Item(f, n, labels[n]) for n, f in names.items() if n in labels]
    return items, problems


def _with_suffix(relative: str, ext: str) -> str:
    """``PurePosixPath(relative).with_suffix(ext)`` for a relative path, without the objects."""
    head, slash, name = relative.rpartition("/")
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1:
        name = name[:dot]
    return f"{head}{slash}{name}{ext}"


def _output_names(items: list[Item], ext: str) -> list[str]:
    """Train outputs keep their name with the new extension; two that would collide are refused."""
    problems = []
    seen: dict[str, str] = {}
    for item in items:
        item.out = f"public/train/{_with_suffix(item.name, ext)}"
        other = seen.setdefault(item.out.casefold(), item.name)
        if other != item.name:
            problems.append(
                f"duplicate file names in the training folder: {other!r} and {item.name!r} would both be stored as "
                f"{item.out[len('public/'):]!r}; rename one of them."
            )
    return problems


# ---------------------------------------------------------------- the build


OWNER_FILE = ".podium-build-owner"  # in a build folder: host, pid and start time of the process building it


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _process_start(pid: int) -> str | None:
    """The process's start time since boot (Linux's /proc/PID/stat field 22), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _owner_gone(folder: Path) -> bool:
    """True when the process that made this build folder, on this host, no longer runs."""
    try:
        host, pid_text, start = (folder / OWNER_FILE).read_text(encoding="utf-8").split("\n")[:3]
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # not ours to judge: no readable note of its owner
    if host != socket.gethostname() or pid <= 0:
        return False  # another machine's build (a shared folder): its process cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    now = _process_start(pid)
    return bool(start) and now is not None and now != start  # the pid was reused by another process


def sweep_stale_builds(root: Path, name: str) -> list[str]:
    """Remove ``ROOT/.NAME.building-*`` folders left by builds of NAME whose process is gone."""
    swept = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return swept
    prefix = f".{name}.building-"  # names have no dots: no other competition's folder starts so
    for entry in entries:
        if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False) and _owner_gone(Path(entry.path)):
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                swept.append(entry.path)
    return swept


def _pool(workers: int):
    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers)


def _run(pool, workers: int, function, tasks: list, desc: str) -> list:
    """``function`` over ``tasks`` in order, a chunk per worker round trip, with a progress bar."""
    from tqdm import tqdm

    chunk = max(1, min(64, len(tasks) // (8 * workers)))
    results = pool.imap(function, tasks, chunksize=chunk)
    return list(tqdm(results, total=len(tasks), desc=desc, unit="img", disable=None))


def build_images_competition(
    train_dir: str | Path,
    test_dir: str | Path,
    labels_file: str | Path,
    root: str | Path,
    name: str,
    title: str | None = None,
    image_size: int | None = None,
    public_fraction: float = 0.3,
    seed: int = 0,
    hidden_test: bool = False,
    skip_bad: bool = False,
    allow_duplicates: bool = False,
    image_format: str = "jpeg",
    workers: int | None = None,
):
    """Write ``<root>/<name>/`` in the image-folders format; returns (Competition, ImagesReport)."""
    from harness.build import check_build_options, check_root, make_root, opaque_ids, stratified_public_mask, write_description
    from harness.competition import USAGES, load_competition
    from harness.pages import write_listing

    check_build_options(name, public_fraction)
    if image_size is not None and not MIN_SIZE <= image_size <= MAX_SIZE:
        raise DatasetError(f"--image-size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {image_size}.")
    if image_format not in OUTPUT_FORMATS:
        raise DatasetError(f"--image-format must be one of {', '.join(OUTPUT_FORMATS)}, got {image_format!r}.")
    train_dir, test_dir, labels_file, root = Path(train_dir), Path(test_dir), Path(labels_file), Path(root)
    for path, what, ok in ((train_dir, "--train", train_dir.is_dir()), (test_dir, "--test", test_dir.is_dir()),
                           (labels_file, "--labels", labels_file.is_file())):
        if not ok:
            kind = "a file (CSV file,label)" if what == "--labels" else "a folder"
            raise DatasetError(f"{what} {path}: no such {kind.split(' ')[1]}; {what} must be {kind}.")
    check_root(root)
    target = root / name
    if target.exists():
        raise DatasetError(f"{target} already exists; remove it or choose another --name.")

    report = ImagesReport()
    classes, train, problems, report.ignored = scan_train(train_dir)
    test, test_problems = scan_test(test_dir, labels_file, classes) if len(classes) >= 2 else ([], [])
    problems += test_problems
    _, ext, _ = OUTPUT_FORMATS[image_format]
    problems += _output_names(train, ext)
    if problems:
        raise DatasetError(capped(problems))

    rng = np.random.default_rng(seed)
    test = [test[i] for i in rng.permutation(len(test))]  # the scoring order: shuffled under the secret seed
    test_ids = opaque_ids(len(test), rng)
    test_base = "private" if hidden_test else "public"
    for item, id_ in zip(test, test_ids):
        item.out = f"{test_base}/test/{id_}{ext}"
    workers = max(1, workers or usable_cpus())
    everything = train + test

    root_existed = root.exists()
    make_root(root)
    report.swept = sweep_stale_builds(root, name)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.building-"))
    try:
        (staging / OWNER_FILE).write_text(
            f"{socket.gethostname()}\n{os.getpid()}\n{_process_start(os.getpid()) or ''}\n", encoding="utf-8")
        with _pool(workers) as pool:
            if image_size is None:
                probes = _run(pool, workers, probe, [i.source for i in everything], "reading image sizes")
                for item, (_, error) in zip(everything, probes):
                    item.error = error
                sides = [side for side, error in probes if error is None]
                image_size = min(MAX_DEFAULT_SIZE, int(np.median(sides))) if sides else MAX_DEFAULT_SIZE
                image_size = max(MIN_SIZE, image_size)
            todo = [i for i in everything if i.error is None]
            for folder in {os.path.dirname(i.out) for i in todo}:
                (staging / folder).mkdir(parents=True, exist_ok=True)
            base = str(staging) + os.sep
            tasks = [(i.source, base + i.out, image_size, image_format) for i in todo]
            for item, done in zip(todo, _run(pool, workers, process, tasks, f"preparing images ({image_size}px)")):
                item.digest, item.error, item.done = done.source_sha256, done.error, done
        report.image_size = image_size
        bad = [i for i in everything if i.error is not None]
        if bad and not skip_bad:
            raise DatasetError(capped(
                [f"{'--train' if i.out.startswith('public/train/') else '--test'} {i.source}: cannot be used as an image: {i.error}; {SKIP_HINT}."
                 for i in bad]
            ))
        report.skipped = [f"{i.source}: {i.error}" for i in bad]
        train = [i for i in train if i.error is None]
        test = [i for i in test if i.error is None]
        test_ids = np.asarray([os.path.splitext(os.path.basename(i.out))[0] for i in test])
        left = np.bincount([i.label for i in train], minlength=len(classes))
        empty = [c for c, n in zip(classes, left) if n == 0]
        if empty or not test:
            what = f"the class(es) {', '.join(empty)} have no readable training image" if empty else "no test image is readable"
            raise DatasetError(f"after leaving out {len(bad)} unreadable image(s), {what}; fix or replace those images.")

        by_digest = {i.digest: i for i in train}
        leaks = [f"{i.source} (test) is byte-identical to {by_digest[i.digest].source} (train)"
                 for i in test if i.digest in by_digest]
        if leaks and not allow_duplicates:
            raise DatasetError(capped(
                [f"leak: {leak}; remove it from one of the two folders, or pass --allow-duplicates to keep going."
                 for leak in leaks]
            ))
        report.duplicates = leaks

        _write_csv(staging / "public" / "train.csv", ("file", "label"),
                   ((i.out[len("public/"):], classes[i.label]) for i in train))
        _write_csv(staging / test_base / "test.csv", ("id", "file"),
                   ((id_, i.out[len(test_base) + 1:]) for id_, i in zip(test_ids, test)))
        labels = np.asarray([i.label for i in test], dtype=np.int64)
        public = stratified_public_mask(labels, public_fraction, np.random.default_rng([seed, 1]))
        if not hidden_test:  # a hidden test set takes no CSV: its ids stay private too
            _write_csv(staging / "public" / "sample_submission.csv", ("id", "label"), ((i, classes[0]) for i in test_ids))
        _write_csv(staging / "private" / "solution.csv", ("id", "label", "Usage"),
                   ((id_, classes[lab], USAGES[0 if pub else 1]) for id_, lab, pub in zip(test_ids, labels, public)))
        from harness.build import toml_text

        title = title or f"{name} image classification"
        (staging / "competition.toml").write_text(
            toml_text(name, title, "images", classes, public_fraction, image_size, "image-folders", hidden_test),
            encoding="utf-8",
        )
        report.train_images, report.test_images = len(train), len(test)
        facts = {"train_images": len(train), "test_images": len(test), "image_size": image_size, "hidden_test": hidden_test}
        write_description(staging, "images", title, classes, facts)
        write_listing(staging, {i.out[len("public/"):]: (i.done.size, i.done.mtime_ns, i.done.sha256)
                                for i in train + test if i.out.startswith("public/")})
        os.chmod(staging, 0o755)  # mkdtemp made it 0700
        (staging / "private").chmod(0o700)  # the answers (and a hidden test set): the organizer's only
        (staging / "private" / "solution.csv").chmod(0o600)
        (staging / OWNER_FILE).unlink()
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not root_existed:
            try:
                root.rmdir()  # only when empty: it was made for this build
            except OSError:
                pass
        raise
    return load_competition(target), report


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
