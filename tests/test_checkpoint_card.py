"""Checkpoints that podium writes are byte-deterministic, whatever process writes them."""
from __future__ import annotations

import hashlib
import subprocess
import sys

from harness.checkpoint.card import ModelCard
from harness.checkpoint.safefile import read_safetensors_header

WRITE = """
import sys, torch
from harness.checkpoint import save_checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
save_checkpoint(model, sys.argv[1], library="torchvision", arch="resnet18", num_classes=3,
                input_size=32, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                extra_metadata={"a": "1", "b": "2", "c": "3", "d": "4"})
"""


def test_same_weights_give_the_same_bytes_in_different_processes(tmp_path):
    # safetensors writes metadata from a Rust HashMap whose order changes per process.
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 1
    card = ModelCard.from_metadata(read_safetensors_header(paths[0]).metadata)
    assert (card.arch, card.num_classes, card.input_size) == ("resnet18", 3, 32)
