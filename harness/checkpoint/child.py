"""The inference child: ``python -m harness.checkpoint.child JOB.json``, started by ``isolate.py``.

It gets a job file naming the checkpoint, the test images (a ``.npy``, the competition's
``test.npz``, or a list of image files it decodes a batch at a time; never labels or the solution)
and an output folder. In order it: leaves the network (a fresh network namespace via
``unshare``, where the kernel allows it), imports torch, picks the device, caps its own memory,
re-reads and re-checks the checkpoint header, builds the model from the registry, loads it
strictly, runs inference and writes ``predictions.npy`` + ``info.json``. A refusal is written to
``error.json`` as messages for the team (exit 3). Anything worse (a crash, a hang, the kernel's
OOM killer) is seen by the parent as a signal or a timeout.

Memory cap: on CPU, ``RLIMIT_AS`` is set to the address space in use after the imports plus the
competition's ``inference_memory_bytes`` (torch's libraries alone map ~3.6 GB of address space,
which a plain cap would count). On CUDA no ``RLIMIT_AS`` is set (the driver reserves huge virtual
ranges); the GPU memory fraction is capped instead.

Test hook: ``PODIUM_CHECKPOINT_TEST_FAULT`` = ``hang`` | ``crash`` | ``exit`` makes the child
really sleep, segfault or exit without a result before it imports torch, so tests can check that
the parent reports each cleanly. Nothing else reads it.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
import time
from pathlib import Path

FAULT_ENV = "PODIUM_CHECKPOINT_TEST_FAULT"
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
EXIT_REFUSED = 3


def leave_network() -> str:
    """Move into an empty network namespace (loopback down, no routes). Returns what happened."""
    if not sys.platform.startswith("linux"):
        return f"not isolated: network namespaces need Linux ({sys.platform})"
    libc = ctypes.CDLL(None, use_errno=True)
    for flags, how in ((CLONE_NEWNET, "network namespace"), (CLONE_NEWUSER | CLONE_NEWNET, "user+network namespace")):
        if libc.unshare(flags) == 0:
            return f"isolated ({how})"
    return f"not isolated: unshare refused ({os.strerror(ctypes.get_errno())})"


def address_space_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cap_memory(device, memory_bytes: int) -> str:
    import torch

    if device.type == "cpu":
        limit = address_space_bytes() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        return f"RLIMIT_AS {limit / 2**30:.2f} GiB ({memory_bytes / 2**30:.2f} GiB beyond the libraries)"
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_bytes / total), index)
        return f"GPU memory fraction {min(1.0, memory_bytes / total):.2f} of {total / 2**30:.0f} GiB"
    return "not capped"


def inject_fault(fault: str) -> None:
    if fault == "hang":
        time.sleep(3600)
    elif fault == "crash":
        ctypes.string_at(0)  # a real segmentation fault
    elif fault == "exit":
        os._exit(1)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def run(job: dict, out: Path, network: str) -> dict:
    import numpy as np
    import torch

    from harness.checkpoint.card import ModelCard
    from harness.checkpoint.infer import CPU_BATCH, CUDA_BATCH, predict_array, predict_batches, resolve_device
    from harness.checkpoint.policy import InputSpec
    from harness.checkpoint.registry import build_untrained, load_strict
    from harness.checkpoint.safefile import read_safetensors_header
    from harness.errors import CheckpointError

    try:
        device = resolve_device(job["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is available")
        torch.empty(0, device=device)
    except RuntimeError as exc:
        return {"environment": f"device {job['device']!r} cannot be used here: {str(exc)[:200]}"}
    memory = cap_memory(device, int(job["memory_bytes"]))
    t0 = time.perf_counter()
    header = read_safetensors_header(job["checkpoint"])  # again: the file is read by this process
    card = ModelCard.from_metadata(header.metadata)
    if card.to_metadata() != job["card"]:
        raise CheckpointError("the checkpoint changed while it was being scored; submit it again.")
    spec = InputSpec(size=int(job["size"]), mean=tuple(job["mean"]), std=tuple(job["std"]))
    model = build_untrained(card)
    load_strict(model, header, job["checkpoint"], card)
    if "image_files" in job:  # an image-folder test set: decoded a batch at a time, never all at once
        from harness.imagefolder import iter_image_batches

        files = [Path(f) for f in json.loads(Path(job["image_files"]).read_text(encoding="utf-8"))]
        count = len(files)
        batch_size = job.get("batch_size") or (CUDA_BATCH if device.type == "cuda" else CPU_BATCH)
        t1 = time.perf_counter()
        predictions = predict_batches(model, iter_image_batches(files, batch_size), count, spec, device, progress=True)
    else:
        if "npz" in job:
            with np.load(job["npz"], allow_pickle=False) as archive:
                images = archive["images"]  # only this member: test.npz holds images and ids, never labels
        else:
            images = np.load(job["images"], allow_pickle=False)
        count = len(images)
        t1 = time.perf_counter()
        predictions = predict_array(model, images, spec, device, batch_size=job.get("batch_size"), progress=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    np.save(out / "predictions.tmp.npy", predictions.astype(np.int64))
    (out / "predictions.tmp.npy").replace(out / "predictions.npy")
    return {
        "device": str(device),
        "network": network,
        "memory": memory,
        "load_s": t1 - t0,
        "inference_s": t2 - t1,
        "images_per_s": count / max(t2 - t1, 1e-9),
    }


def main(argv: list[str]) -> int:
    job_path = Path(argv[0])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    out = Path(job["out_dir"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core dump of the model behind
    network = leave_network() if job.get("isolate_network", True) else "not isolated: disabled by the caller"
    fault = os.environ.get(FAULT_ENV)
    if fault:
        inject_fault(fault)
    from harness.errors import CompetitionError, PodiumError

    try:
        info = run(job, out, network)
    except CompetitionError as exc:  # the test images themselves (missing, damaged): the organizer's problem
        write_json(out / "error.json", {"environment": " ".join(exc.messages)})
        return EXIT_REFUSED
    except PodiumError as exc:
        write_json(out / "error.json", {"messages": exc.messages})
        return EXIT_REFUSED
    except MemoryError:
        write_json(out / "error.json", {"out_of_memory": True})
        return EXIT_REFUSED
    except RuntimeError as exc:
        text = str(exc).lower()
        if "out of memory" in text or "can't allocate memory" in text:
            write_json(out / "error.json", {"out_of_memory": True})
            return EXIT_REFUSED
        raise
    if "environment" in info:
        write_json(out / "error.json", info)
        return EXIT_REFUSED
    write_json(out / "info.json", info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
