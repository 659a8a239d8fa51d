"""Read a safetensors header ourselves, before any library sees the file.

Layout: an 8-byte little-endian header length N, N bytes of JSON, then the tensor data. The JSON
maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative
to the data region) plus an optional ``"__metadata__"`` map of strings (the model card).

Checked here, with nothing allocated from what the header claims: the header length is capped
and must fit in the file; every tensor's byte range must equal shape x dtype size, lie inside
the file, and the ranges must tile the data region exactly (no overlap, no gap, nothing after).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000
MAX_DIMS = 8
MAX_NAME_LENGTH = 1000

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str] | None
    header_bytes: int
    file_bytes: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}


def _refuse(problem: str) -> CheckpointError:
    return CheckpointError(f"this safetensors file is damaged or forged: {problem} It was refused before loading.")


def read_safetensors_header(path: str | Path, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Parse and check the header of ``path``; raises ``CheckpointError`` on any inconsistency."""
    path = Path(path)
    file_bytes = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _refuse("it is shorter than the 8-byte header length.")
        (n,) = struct.unpack("<Q", prefix)
        if n > max_header_bytes:
            raise _refuse(f"its header claims {n:,} bytes, more than the {max_header_bytes:,} allowed.")
        if 8 + n > file_bytes:
            raise _refuse(f"its header claims {n:,} bytes but the file holds only {file_bytes:,}.")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _refuse("its header is not valid UTF-8 JSON.") from None
    if not isinstance(header, dict):
        raise _refuse("its header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise _refuse("its __metadata__ is not a map of strings to strings.")
    if len(header) > MAX_TENSORS:
        raise _refuse(f"it lists {len(header):,} tensors, more than the {MAX_TENSORS:,} allowed.")
    data_bytes = file_bytes - 8 - n
    entries = [_entry(name, info, data_bytes) for name, info in header.items()]
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for e in entries:
        if e.begin != position:
            what = "overlaps the previous one" if e.begin < position else f"leaves a gap of {e.begin - position:,} bytes"
            raise _refuse(f"tensor {e.name!r} {what}.")
        position = e.end
    if position != data_bytes:
        raise _refuse(f"its tensors cover {position:,} bytes but the data region holds {data_bytes:,}.")
    return SafetensorsHeader(tuple(entries), metadata, n, file_bytes)


def _entry(name: str, info: object, data_bytes: int) -> TensorEntry:
    shown = name if len(name) <= 80 else name[:80] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise _refuse(f"tensor name {shown!r} is longer than {MAX_NAME_LENGTH} characters.")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise _refuse(f"tensor {shown!r} is not described by exactly dtype, shape and data_offsets.")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise _refuse(f"tensor {shown!r} has unsupported dtype {str(dtype)[:20]!r}.")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_count(d) for d in shape)):
        raise _refuse(f"tensor {shown!r} has an invalid shape.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise _refuse(f"tensor {shown!r} has invalid data_offsets.")
    begin, end = offsets
    claimed = math.prod(shape) * DTYPE_BYTES[dtype]  # Python ints: no overflow, nothing allocated
    if claimed > data_bytes:
        raise _refuse(
            f"tensor {shown!r} claims {claimed:,} bytes (shape {shape}, {dtype}) but the file holds only "
            f"{data_bytes:,} bytes of data."
        )
    if not begin <= end <= data_bytes:
        raise _refuse(f"tensor {shown!r} has data_offsets [{begin}, {end}] outside the {data_bytes:,}-byte data region.")
    if end - begin != claimed:
        raise _refuse(f"tensor {shown!r} spans {end - begin:,} bytes but shape {shape} of {dtype} needs {claimed:,}.")
    return TensorEntry(name, dtype, tuple(shape), begin, end)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62
