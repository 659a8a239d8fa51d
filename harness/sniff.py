"""Decide what a submitted file is from its first bytes, never from its name."""
from __future__ import annotations

import struct

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # the PROTO opcode that starts every pickle of protocol 2 or later


def looks_like_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON object."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length < 2**32 and head[8:9] == b"{"


def sniff(head: bytes) -> str:
    """'checkpoint' for anything model-like (safetensors, a zip, a pickle), else 'csv'.

    Checkpoint validation then accepts safetensors and refuses the rest with a clear message;
    text goes to CSV validation, which explains what is wrong with it.
    """
    if looks_like_safetensors(head) or head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO):
        return "checkpoint"
    return "csv"
