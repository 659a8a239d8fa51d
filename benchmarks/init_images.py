"""`podium init images` at scale, beside the naive way, and checkpoint scoring memory on the result.

    .venv/bin/python benchmarks/init_images.py                       # 50,000 train + 10,000 test images
    .venv/bin/python benchmarks/init_images.py --train 5000 --test 1000 --naive 2000

1. Generates the source images once (cached in --work): mixed sizes around 300 px (each side
   drawn from 240..400), half JPEG (quality 90) half PNG, 10 classes, smooth shapes and gradients
   with a little noise, and a labels CSV.
2. podium: ``podium init images`` as a real process (default --workers, one per CPU). Wall time and
   peak memory: the sum of the proportional set size (PSS, so pages shared between the parent
   and its forked workers count once) over the whole process tree, sampled every 0.1 s.
3. naive, in the same run: what a competent user writes first: for each file PIL open, EXIF
   transpose, RGB, the same resize + centre crop, ``np.asarray`` appended to a Python list, then
   ``np.stack`` into one array and ``np.save``. It holds every image twice at the end (list and
   array), so at full size it needs ~2 x 60,000 x 224 x 224 x 3 bytes = 18 GB: it runs on the first
   --naive images only and its figures are also shown scaled linearly to the full set.
4. checkpoint scoring on the built competition (a torchvision resnet18 with random weights, input
   size --score-size, CPU): wall time and the scoring child's peak RSS, beside the bytes the test
   set takes as one array (what holding it in memory would cost).
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


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_bytes(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_kb(p)
        todo += _children(p)
    return total * 1024


def run_measured(args: list[str], env: dict | None = None) -> tuple[float, int, subprocess.CompletedProcess]:
    """(wall seconds, peak PSS of the process tree in bytes, the finished process).

    Also sets ``LAST_CPU_S``: the CPU seconds (user + system) the process tree used, which on a
    machine shared with other work says what the run would take alone: CPU seconds / cores.
    """
    global LAST_CPU_S
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_bytes(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, peak, subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


LAST_CPU_S = 0.0
LAST_CPU_S_INIT = 0.0


# ------------------------------------------------------------------ the naive way


NAIVE = r"""
import sys, time, resource, numpy as np
from pathlib import Path
from PIL import Image, ImageOps
files, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
paths = Path(files).read_text().splitlines()
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
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

SCORE = r"""
import sys, time, resource
from harness.competition import load_competition
from harness.checkpoint import predict_checkpoint
comp = load_competition(sys.argv[1])
t0 = time.perf_counter()
pred = predict_checkpoint(sys.argv[2], comp, device="cpu")
print(time.perf_counter() - t0, len(pred), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=5_000, help="images the naive way processes (it holds them all twice)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/podium-bench-images"))
    parser.add_argument("--score-size", type=int, default=64, help="the checkpoint's input size for the scoring run")
    parser.add_argument("--keep", action="store_true", help="keep the built competition")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start")

    t0 = time.perf_counter()
    tree = generate(args.work, args.train, args.test)
    print(f"sources: {args.train:,} train + {args.test:,} test images in {tree['train'].parent} "
          f"({time.perf_counter() - t0:.0f} s to generate or find)")

    out_root = args.work / "competitions"
    shutil.rmtree(out_root, ignore_errors=True)
    cmd = [sys.executable, "-m", "podium_cli", "init", "images", "--train", str(tree["train"]), "--test", str(tree["test"]),
           "--labels", str(tree["labels"]), "--root", str(out_root), "--name", "bench", "--hidden-test"]
    seconds, peak, done = run_measured(cmd, env)
    if done.returncode != 0:
        sys.exit(f"podium init images failed:\n{done.stderr[-3000:]}")
    total = args.train + args.test
    print(f"podium init images: {seconds:6.1f} s  peak {peak / 2**30:.2f} GiB (PSS, whole process tree)  "
          f"{total / seconds:,.0f} images/s   [{done.stdout.strip().splitlines()[0]}]")
    cores = os.cpu_count() or 1
    global LAST_CPU_S_INIT
    LAST_CPU_S_INIT = LAST_CPU_S
    print(f"  CPU time {LAST_CPU_S:.0f} s (user + system, all processes): {LAST_CPU_S / cores:.0f} s of wall time on "
          f"{cores} otherwise idle cores")
    load = os.getloadavg()
    print(f"  load average after: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")

    comp_dir = out_root / "bench"
    size = tomllib.loads((comp_dir / "competition.toml").read_text())["eval_transform"]["size"]
    n = min(args.naive, total)
    files = sorted(str(p) for p in tree["train"].rglob("*") if p.is_file())
    files = (files + sorted(str(p) for p in tree["test"].iterdir()))[:: max(1, total // n)][:n]
    listing = args.work / "naive-files.txt"
    listing.write_text("\n".join(files))
    naive_out = args.work / "naive.npy"
    wall, peak_naive, done = run_measured([sys.executable, "-c", NAIVE, str(listing), str(size), str(naive_out)], env)
    naive_out.unlink(missing_ok=True)
    if done.returncode != 0:
        sys.exit(f"naive run failed:\n{done.stderr[-3000:]}")
    inner, rss = (float(v) for v in done.stdout.split())
    scale = total / n
    print(f"naive (PIL list -> array): {wall:6.1f} s  peak {peak_naive / 2**30:.2f} GiB on {n:,} images  "
          f"{n / wall:,.0f} images/s, CPU time {LAST_CPU_S:.1f} s ({LAST_CPU_S / n * 1000:.2f} ms per image; "
          f"podium {LAST_CPU_S_INIT / total * 1000:.2f} ms per image over all its processes)")
    print(f"  scaled to {total:,} images: ~{wall * scale:.0f} s and ~{(peak_naive - 60 * 2**20) * scale / 2**30 + 0.06:.1f} GiB")
    print(f"  ratio: podium {wall * scale / seconds:.2f}x faster (per image), memory {peak / 2**30:.2f} GiB flat vs growing "
          f"{(peak_naive / n) / 2**10:.0f} KiB per image")

    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    ckpt = args.work / "resnet18.safetensors"
    save_checkpoint(model, ckpt, library="torchvision", arch="resnet18", num_classes=len(CLASSES), input_size=args.score_size)
    wall, peak_score, done = run_measured([sys.executable, "-c", SCORE, str(comp_dir), str(ckpt)], env)
    if done.returncode != 0:
        sys.exit(f"scoring failed:\n{done.stderr[-3000:]}")
    seconds_in, count, child_rss, parent_rss = done.stdout.split()
    array_bytes = args.test * size * size * 3
    print(f"checkpoint scoring (resnet18 at {args.score_size} px, CPU, hidden test set streamed from private/test/): "
          f"{float(seconds_in):.1f} s for {int(count):,} images; child peak RSS {int(child_rss) / 2**30:.2f} GiB, "
          f"process tree peak {peak_score / 2**30:.2f} GiB (PSS); the test set as one array would be {array_bytes / 2**30:.2f} GiB")
    if not args.keep:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
