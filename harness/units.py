"""Sizes for people: the one way podium's messages write a number of bytes."""
from __future__ import annotations


def size_text(num_bytes: int) -> str:
    """``"600 MiB"`` from a mebibyte up, ``"256 KiB"`` below (whole units: a limit, not a measurement)."""
    return f"{num_bytes / 2**20:.0f} MiB" if num_bytes >= 2**20 else f"{num_bytes / 2**10:.0f} KiB"
