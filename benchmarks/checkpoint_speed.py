"""Checkpoint inference speed: podium's fast path against the naive per-image path, same run.

    .venv/bin/python benchmarks/checkpoint_speed.py                      # GPU: torchvision resnet50 at 224, 10,000 images
    .venv/bin/python benchmarks/checkpoint_speed.py --device cpu         # CPU preset: timm test_resnet at 64, 2,000 images
    .venv/bin/python benchmarks/checkpoint_speed.py --library timm --arch test_resnet --size 64 --images 2000

Both paths run the same model (random weights, fixed seed) on the same random uint8 32x32 RGB
images (CIFAR-sized), resized to SIZE and normalised with ImageNet statistics:

- naive: a torch Dataset applying torchvision ``transforms.v2`` per image (ToImage, Resize,
  ToDtype, Normalize) in a DataLoader (``--workers`` processes, pinned memory), float32 model;
- fast (``harness.checkpoint.infer.predict_array``, what checkpoint scoring runs): the uint8 array
  copied to the device once, resize + normalise on the device per batch, channels_last, bf16
  autocast and cuDNN autotuning on CUDA (float32 on CPU).

Each is warmed up on a few batches, then timed end to end from the uint8 numpy array to the
predicted class indices on the host, ``--repeats`` times interleaved (best and median reported:
on a shared machine other processes' load makes single runs vary several-fold). A third line runs the real isolated scoring path
(``run_inspected``: save a .safetensors checkpoint, start the child, import torch, build, load,
infer) and prints its wall clock with process start and the child's own inference rate.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# As in the scoring child (harness/checkpoint/isolate.py): idle OpenMP threads sleep rather than
# spin, which keeps CPU figures meaningful on a machine shared with other work. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GPU_PRESET = {"library": "torchvision", "arch": "resnet50", "size": 224, "images": 10_000, "batch": 512}
CPU_PRESET = {"library": "timm", "arch": "test_resnet", "size": 64, "images": 2_000, "batch": 128}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build(library: str, arch: str):
    import torch

    from harness.checkpoint.card import ModelCard
    from harness.checkpoint.registry import build_untrained

    torch.manual_seed(0)
    return build_untrained(ModelCard(library, arch, 10))


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_predict(model, images: np.ndarray, spec, device, batch: int, workers: int) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from tests.reference_impls import reference_transform

    transform = reference_transform(spec)

    class Images(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return transform(images[i])

    loader = DataLoader(Images(), batch_size=batch, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    out = []
    model = model.to(device).eval()
    with torch.inference_mode():
        for x in loader:
            out.append(model(x.to(device, non_blocking=True)).argmax(1))
    return torch.cat(out).cpu().numpy()


def timed(fn, n: int, device) -> tuple[float, np.ndarray]:
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return n / (time.perf_counter() - start), result


def main() -> int:
    import torch

    from harness.checkpoint import inspect_checkpoint, run_inspected, save_checkpoint
    from harness.checkpoint.infer import predict_array, resolve_device
    from harness.checkpoint.policy import InputSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--library", choices=["torchvision", "timm"], default=None)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="naive DataLoader workers (default: min(8, CPUs))")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path, interleaved; the best is reported")
    parser.add_argument("--no-isolated", action="store_true", help="skip the full child-process run")
    args = parser.parse_args()

    device = resolve_device(args.device)
    preset = GPU_PRESET if device.type == "cuda" else CPU_PRESET
    library = args.library or preset["library"]
    arch = args.arch or preset["arch"]
    size = args.size or preset["size"]
    n = args.images or preset["images"]
    batch = args.batch or preset["batch"]
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    spec = InputSpec(size, MEAN, STD)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    print(f"device: {name}; torch {torch.__version__}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"model: {library}/{arch} at {size}px, {n:,} random 32x32 images, batch {batch}, naive workers {workers}")

    naive_model = build(library, arch)
    fast_model = build(library, arch)  # its own copy: the fast path converts it to channels_last
    warm = images[: min(n, 2 * batch)]
    naive_predict(naive_model, warm, spec, device, batch, workers)
    predict_array(fast_model, warm, spec, device, batch_size=batch, progress=False)
    naive_rates, fast_rates = [], []
    for _ in range(args.repeats):  # interleaved, so a burst of load elsewhere hits both paths alike
        rate, naive = timed(lambda: naive_predict(naive_model, images, spec, device, batch, workers), n, device)
        naive_rates.append(rate)
        rate, fast = timed(lambda: predict_array(fast_model, images, spec, device, batch_size=batch, progress=False), n, device)
        fast_rates.append(rate)
    naive_rate, fast_rate = max(naive_rates), max(fast_rates)
    print(f"runs (images/s): naive {', '.join(f'{r:,.0f}' for r in naive_rates)}; fast {', '.join(f'{r:,.0f}' for r in fast_rates)}")
    print(f"median ratio fast/naive: {np.median(fast_rates) / np.median(naive_rates):.2f}x (below: best of {args.repeats} each)")

    rows = [("naive: per-image transforms v2 + DataLoader, fp32", naive_rate),
            (f"fast: on-device resize/normalise{', channels_last, bf16' if device.type == 'cuda' else ', fp32'}", fast_rate)]
    if not args.no_isolated:
        from harness.competition import Competition

        comp = Competition(root=Path("."), name="bench", title="bench", classes=tuple(str(i) for i in range(10)))
        with tempfile.TemporaryDirectory() as tmp:
            path = save_checkpoint(build(library, arch), Path(tmp) / "model.safetensors", library=library, arch=arch,
                                   num_classes=10, input_size=size, mean=MEAN, std=STD)
            start = time.perf_counter()
            result = run_inspected(inspect_checkpoint(path, comp), images, comp, device=str(device), batch_size=batch)
            wall = time.perf_counter() - start
        rows.append((f"isolated child, wall clock incl. process start + load ({wall:.1f} s)", n / wall))
        rows.append(("isolated child, its inference only (cold: no warm-up)", result.info["images_per_s"]))
        print(f"child: network {result.info['network']}; memory {result.info['memory']}")
    print()
    width = max(len(r[0]) for r in rows)
    for label, rate in rows:
        print(f"{label:<{width}}  {rate:>10,.0f} images/s  ({rate / naive_rate:5.2f}x naive)")
    agree = float((fast == naive).mean())
    print(f"\nfast vs naive predictions agree on {agree:.1%} of images (bf16 and resize rounding may flip near-ties)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
