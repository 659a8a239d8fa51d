"""`podium init images` at scale, beside the naive way, and checkpoint scoring memory on the result.

    .venv/bin/python benchmarks/init_images.py                       # 50,000 train + 10,000 test images
    .venv/bin/python benchmarks/init_images.py --train 5000 --test 1000 --naive 2000
    .venv/bin/python benchmarks/init_images.py --compare-src ../old-checkout   # before/after, same sources

1. Generates the source images once (cached in --work): mixed sizes around 300 px (each side
   drawn from 240..400), half JPEG (quality 90) half PNG, 10 classes, smooth shapes and gradients
   with a little noise, and a labels CSV.
2. The file system: how much CPU creating a 12 KB file costs where the competition is written
   (on a disk shared with busy neighbours it varies tenfold, and podium creates a file per image).
3. podium: ``podium init images --hidden-test`` as a real process (default --workers: one per
   CPU). Wall time, CPU time (user and system, over the whole process tree) and peak memory: the
   sum of the proportional set size (PSS, so pages shared between the parent and its forked
   workers count once) over the process tree, sampled every 0.1 s. CPU seconds / cores is the
   wall time on otherwise idle cores, which a loaded machine's wall clock cannot show.
   ``--compare-src DIR`` first builds the same sources with the podium checkout in DIR (another
   commit), so both are measured in one run on the same files.
4. naive, in the same run: what a competent user writes first: for each file PIL open, EXIF
   transpose, RGB, the same resize + centre crop, ``np.asarray`` appended to a Python list, then
   ``np.stack`` into one array and ``np.save``. It holds every image twice at the end (list and
   array), so at full size it needs ~2 x 60,000 x 224 x 224 x 3 bytes = 18 GB: it runs on the first
   --naive images only and its figures are also shown scaled linearly to the full set.
5. checkpoint scoring on the built competition (a torchvision resnet18 with random weights, fed
   the competition's own size unless --score-size says otherwise, on --score-device): wall time,
   CPU time and the scoring child's peak RSS, beside the bytes the test set takes as one array
   (what holding it in memory would cost).
"""
from __future__ import annotations

import argparse
import csv
import tomllib
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLASSES = tuple(f"class{i}" for i in range(10))


# ------------------------------------------------------------------ source images


_NOISE: list = []


def _make(task: tuple[int, str, int]) -> None:
    from PIL import Image, ImageDraw

    seed, path, label = task
    rng = np.random.default_rng(seed)
    if not _NOISE:  # one noise field per process, cropped at random offsets: cheap to generate
        _NOISE.append(np.random.default_rng(os.getpid()).integers(-6, 7, (440, 440, 3), dtype=np.int16))
    w, h = (int(v) for v in rng.integers(240, 401, size=2))
    base = np.asarray([(label * 25) % 256, (label * 70 + 40) % 256, (label * 110 + 90) % 256], dtype=np.int16)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * np.arange(w)[None, :] + np.sin(angle) * np.arange(h)[:, None]) / max(w, h) * 80
    dy, dx = (int(v) for v in rng.integers(0, 40, size=2))
    img = base + ramp.astype(np.int16)[..., None] + _NOISE[0][dy : dy + h, dx : dx + w]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        size = int(rng.integers(20, 120))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + size, y0 + size), fill=colour)
    if path.endswith(".jpg"):
        pil.save(path, "JPEG", quality=90)
    else:
        pil.save(path, "PNG", compress_level=1)


def generate(work: Path, n_train: int, n_test: int) -> dict[str, Path]:
    src = work / f"src-{n_train}-{n_test}"
    tree = {"train": src / "train", "test": src / "test", "labels": src / "labels.csv"}
    if (src / "done").is_file():
        return tree
    shutil.rmtree(src, ignore_errors=True)
    for c in CLASSES:
        (tree["train"] / c).mkdir(parents=True)
    tree["test"].mkdir(parents=True)
    tasks, rows = [], []
    for i in range(n_train):
        label = i % len(CLASSES)
        ext = ".jpg" if i % 2 else ".png"
        tasks.append((i, str(tree["train"] / CLASSES[label] / f"img{i:06d}{ext}"), label))
    for j in range(n_test):
        label = j % len(CLASSES)
        ext = ".jpg" if j % 2 else ".png"
        name = f"test{j:06d}{ext}"
        tasks.append((10**7 + j, str(tree["test"] / name), label))
        rows.append((name, CLASSES[label]))
    from tqdm import tqdm

    with multiprocessing.get_context("fork").Pool() as pool:
        for _ in tqdm(pool.imap_unordered(_make, tasks, chunksize=64), total=len(tasks), desc="generating sources", disable=None):
            pass
    with tree["labels"].open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "label"])
        out.writerows(rows)
    (src / "done").write_text("ok")
    return tree


# ------------------------------------------------------------------ measuring a process tree


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def tree_memory_bytes(pid: int) -> tuple[int, int]:
    """(PSS, RSS) summed over ``pid`` and its descendants: PSS counts a page shared by forked
    workers once; RSS counts it in each process (an upper bound)."""
    pss = rss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        one = _memory_kb(p)
        pss, rss = pss + one[0], rss + one[1]
        todo += _children(p)
    return pss * 1024, rss * 1024


@dataclass
class Measured:
    """One measured process tree: wall seconds, CPU seconds (user, system) of the whole tree, peak
    PSS and peak RSS of the tree (sums over its processes, sampled every 0.1 s)."""

    wall: float
    user: float
    sys: float
    peak: int
    peak_rss: int
    done: subprocess.CompletedProcess

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def run_measured(args: list[str], env: dict | None = None, cwd: str | None = None) -> Measured:
    """Run ``args``; its wall time, the CPU its whole tree used (children it waited for included:
    multiprocessing joins its workers) and the peak PSS of the tree sampled every 0.1 s."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = peak_rss = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    finished = threading.Event()

    def sample():
        nonlocal peak, peak_rss
        while not finished.is_set():
            pss, rss = tree_memory_bytes(proc.pid)
            peak, peak_rss = max(peak, pss), max(peak_rss, rss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    finished.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Measured(seconds, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, peak, peak_rss,
                    subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))


def file_creation_cost(folder: Path, count: int = 2000, size: int = 12_000) -> tuple[float, float]:
    """(CPU ms, wall ms) per new file of ``size`` bytes created in ``folder`` (then removed)."""
    probe = folder / f".fs-probe-{os.getpid()}"
    probe.mkdir(parents=True)
    data = b"\0" * size
    t0, c0 = time.perf_counter(), os.times()
    for i in range(count):
        fd = os.open(probe / f"{i}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, data)
        os.close(fd)
    c1 = os.times()
    wall = time.perf_counter() - t0
    shutil.rmtree(probe)
    return ((c1.user - c0.user) + (c1.system - c0.system)) / count * 1000, wall / count * 1000


# ------------------------------------------------------------------ the naive way


NAIVE = r"""
import sys, time, resource, numpy as np
from pathlib import Path
from PIL import Image, ImageOps
files, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
paths = Path(files).read_text().splitlines()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the interpreter, numpy and PIL
t0 = time.perf_counter()
images = []
for p in paths:
    img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.resize((size, size), Image.BILINEAR, box=((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2))
    images.append(np.asarray(img))
array = np.stack(images)
np.save(out, array)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, base)
"""

SCORE = r"""
import sys, time, resource
from harness.competition import load_competition
from harness.checkpoint import predict_checkpoint
comp = load_competition(sys.argv[1])
t0 = time.perf_counter()
pred = predict_checkpoint(sys.argv[2], comp, device=sys.argv[3])
print(time.perf_counter() - t0, len(pred), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f} GiB"


def build(label: str, src: Path, tree: dict, out_root: Path, summary: list, cores: int, total: int) -> Measured:
    """``podium init images --hidden-test`` of ``tree`` with the podium checkout in ``src``."""
    shutil.rmtree(out_root, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "podium_cli", "init", "images", "--train", str(tree["train"]), "--test", str(tree["test"]),
           "--labels", str(tree["labels"]), "--root", str(out_root), "--name", "bench", "--hidden-test"]
    m = run_measured(cmd, env, cwd=str(src))
    if m.done.returncode != 0:
        sys.exit(f"podium init images ({label}) failed:\n{m.done.stderr[-3000:]}")
    load = os.getloadavg()
    print(f"{label}: {m.wall:6.1f} s wall ({total / m.wall:,.0f} images/s), CPU {m.cpu:.1f} s = user {m.user:.1f} + "
          f"system {m.sys:.1f} ({m.cpu / total * 1000:.2f} ms per image), peak {gib(m.peak)} PSS / {gib(m.peak_rss)} RSS "
          f"(sums over the process tree)")
    print(f"  on {cores} otherwise idle cores that CPU is ~{m.cpu / cores:.0f} s of wall time; "
          f"load average after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}   [{m.done.stdout.strip().splitlines()[0]}]")
    summary.append((label, f"{m.wall:.1f} s", f"{m.cpu:.1f} s ({m.cpu / total * 1000:.2f} ms/img; ~{m.cpu / cores:.0f} s on "
                    f"{cores} idle cores)", f"{gib(m.peak)} PSS, {gib(m.peak_rss)} RSS"))
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=5_000, help="images the naive way processes (it holds them all twice)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/podium-bench-images"))
    parser.add_argument("--compare-src", type=Path, default=None,
                        help="another podium checkout: build the same sources with it first (before/after in one run)")
    parser.add_argument("--score-size", type=int, default=None,
                        help="the checkpoint's input size for the scoring run (default: the competition's size)")
    parser.add_argument("--score-device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--keep", action="store_true", help="keep the built competition")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()
    print(f"machine: {cores} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start")

    t0 = time.perf_counter()
    tree = generate(args.work, args.train, args.test)
    total = args.train + args.test
    print(f"sources: {args.train:,} train + {args.test:,} test images in {tree['train'].parent} "
          f"({time.perf_counter() - t0:.0f} s to generate or find)")
    out_root = args.work / "competitions"
    out_root.mkdir(parents=True, exist_ok=True)
    cpu_ms, wall_ms = file_creation_cost(out_root)
    print(f"file system: creating a 12 KB file under {out_root} costs {cpu_ms:.3f} ms of CPU ({wall_ms:.3f} ms wall); "
          f"{total:,} files: ~{cpu_ms * total / 1000:.1f} CPU s of the build below")
    summary: list[tuple[str, str, str, str]] = []

    if args.compare_src is not None:
        build(f"podium init images, {args.compare_src}", args.compare_src.resolve(), tree, out_root, summary, cores, total)
    m = build("podium init images (this checkout)", ROOT, tree, out_root, summary, cores, total)

    comp_dir = out_root / "bench"
    size = tomllib.loads((comp_dir / "competition.toml").read_text())["eval_transform"]["size"]
    n = min(args.naive, total)
    files = sorted(str(p) for p in tree["train"].rglob("*") if p.is_file())
    files = (files + sorted(str(p) for p in tree["test"].iterdir()))[:: max(1, total // n)][:n]
    listing = args.work / "naive-files.txt"
    listing.write_text("\n".join(files))
    naive_out = args.work / "naive.npy"
    naive = run_measured([sys.executable, "-c", NAIVE, str(listing), str(size), str(naive_out)], env)
    naive_out.unlink(missing_ok=True)
    if naive.done.returncode != 0:
        sys.exit(f"naive run failed:\n{naive.done.stderr[-3000:]}")
    scale = total / n
    print(f"naive (PIL list -> array, 1 process): {naive.wall:6.1f} s wall on {n:,} images ({n / naive.wall:,.0f} images/s), "
          f"CPU {naive.cpu:.1f} s ({naive.cpu / n * 1000:.2f} ms per image, no file written), peak {gib(naive.peak_rss)} RSS")
    _, naive_rss, naive_base = (float(v) for v in naive.done.stdout.split())
    naive_peak = naive_base + (naive_rss - naive_base) * scale  # what the images add grows with their number
    print(f"  scaled to {total:,} images: ~{naive.wall * scale:.0f} s and ~{gib(naive_peak)}; podium: "
          f"{naive.wall * scale / m.wall:.2f}x the naive speed, memory {gib(m.peak)} flat vs growing "
          f"{(naive_rss - naive_base) / n / 2**10:.0f} KiB per image")
    summary.append((f"naive, {n:,} images (1 process)", f"{naive.wall:.1f} s", f"{naive.cpu:.1f} s "
                    f"({naive.cpu / n * 1000:.2f} ms/img)", f"{gib(naive.peak_rss)} RSS"))
    summary.append((f"naive scaled to {total:,}", f"~{naive.wall * scale:.0f} s", f"~{naive.cpu * scale:.0f} s", f"~{gib(naive_peak)} RSS"))

    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    score_size = args.score_size or size
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    ckpt = args.work / "resnet18.safetensors"
    save_checkpoint(model, ckpt, library="torchvision", arch="resnet18", num_classes=len(CLASSES), input_size=score_size)
    scored = run_measured([sys.executable, "-c", SCORE, str(comp_dir), str(ckpt), args.score_device], env)
    if scored.done.returncode != 0:
        sys.exit(f"scoring failed:\n{scored.done.stderr[-3000:]}")
    seconds_in, count, child_rss, _ = scored.done.stdout.split()
    array_bytes = args.test * size * size * 3
    fed = f"{score_size} px, the competition's size" if score_size == size else f"{score_size} px, not the competition's {size} px"
    print(f"checkpoint scoring (resnet18 fed {fed}, {args.score_device}, hidden test set streamed from private/test/): "
          f"{float(seconds_in):.1f} s for {int(count):,} images, CPU {scored.cpu:.0f} s; child peak RSS "
          f"{gib(int(child_rss))}, process tree peak {gib(scored.peak)} (PSS); the test set as one array would be "
          f"{gib(array_bytes)} (and {gib(array_bytes * 4 * (score_size / size) ** 2)} as float32 at the model's size)")
    summary.append((f"checkpoint scoring, {int(count):,} test images (resnet18 at {score_size} px, {args.score_device})",
                    f"{scored.wall:.1f} s", f"{scored.cpu:.0f} s", f"child {gib(int(child_rss))} RSS"))

    print("\nsummary (wall clock; CPU = user + system over the process tree; peak memory, PSS counting a page shared "
          "by forked workers once, RSS in each):")
    widths = [max(len(row[i]) for row in summary) for i in range(4)]
    for row in [("", "wall", "CPU", "peak memory")] + summary:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    if not args.keep:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
