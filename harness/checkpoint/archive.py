"""Zip archives (PyTorch's .pt format, TorchScript, torch.package), inspected without trusting them.

The entry count and the central directory size are read from the end-of-central-directory
record before Python's ``zipfile`` parses anything, so a forged archive with millions of entries
costs nothing; then the declared uncompressed sizes are summed and capped (zip bombs). TorchScript
(a ``code/`` folder or ``constants.pkl``) and ``torch.package`` (``.data/`` entries beyond the
``serialization_id`` every torch.save writes, or any ``.py``) are programs, not weights: refused.
"""
from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CheckpointError

MAX_ENTRIES = 20_000
MAX_CENTRAL_DIRECTORY_BYTES = 16 * 1024 * 1024
EOCD = b"PK\x05\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
EOCD64 = b"PK\x06\x06"


@dataclass(frozen=True)
class ZipSummary:
    entries: int
    uncompressed_bytes: int
    names: tuple[str, ...]


def _declared_directory(path: Path) -> tuple[int, int]:
    """(entry count, central directory bytes) as the archive's end records declare them."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        tail_len = min(size, 22 + 65535)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(EOCD)
        if at < 0 or len(tail) - at < 22:
            raise CheckpointError("this file starts like a zip archive but has no valid end record; it is damaged.")
        _, _, _, _, entries, cd_bytes, cd_offset, _ = struct.unpack("<IHHHHIIH", tail[at : at + 22])
        if entries == 0xFFFF or cd_bytes == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            locator = tail[at - 20 : at] if at >= 20 else b""
            if not locator.startswith(EOCD64_LOCATOR):
                raise CheckpointError("this zip archive's zip64 end record is missing; it is damaged.")
            (_, _, eocd64_offset, _) = struct.unpack("<IIQI", locator)
            if eocd64_offset + 56 > size:
                raise CheckpointError("this zip archive's zip64 end record points outside the file; it is damaged.")
            fh.seek(eocd64_offset)
            record = fh.read(56)
            if not record.startswith(EOCD64):
                raise CheckpointError("this zip archive's zip64 end record is damaged.")
            (_, _, _, _, _, _, _, entries, cd_bytes, _) = struct.unpack("<IQHHIIQQQQ", record)
    return entries, cd_bytes


def inspect_zip(path: str | Path, max_uncompressed_bytes: int, max_entries: int = MAX_ENTRIES) -> ZipSummary:
    """Check a zip archive's size claims and refuse programs; never extracts anything."""
    path = Path(path)
    entries, cd_bytes = _declared_directory(path)
    if entries > max_entries:
        raise CheckpointError(
            f"this archive declares {entries:,} entries, more than the {max_entries:,} allowed; refused unopened."
        )
    if cd_bytes > MAX_CENTRAL_DIRECTORY_BYTES:
        raise CheckpointError(f"this archive's directory claims {cd_bytes:,} bytes; refused unopened.")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"this zip archive is damaged ({exc}).") from None
    if len(infos) > max_entries:
        raise CheckpointError(f"this archive holds {len(infos):,} entries, more than the {max_entries:,} allowed.")
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed_bytes:
        raise CheckpointError(
            f"this archive declares {total:,} bytes once uncompressed, more than the {max_uncompressed_bytes:,} "
            "allowed (a zip bomb?); refused unopened."
        )
    names = tuple(i.filename for i in infos)
    _refuse_programs(names)
    return ZipSummary(len(infos), total, names)


def _refuse_programs(names: tuple[str, ...]) -> None:
    for name in names:
        parts = name.split("/")
        inner = parts[1:] if len(parts) > 1 else parts
        if (inner and inner[0] == "code") or inner[-1:] == ["constants.pkl"]:
            raise CheckpointError(
                "this is a TorchScript program, not weights; podium never runs submitted code. "
                "Save the model's state dict with safetensors (harness.checkpoint.save_checkpoint) or "
                "torch.save(model.state_dict(), 'model.pt') and convert it with `podium pack`."
            )
        if (".data" in inner[:-1] and inner[-1] != "serialization_id") or name.endswith(".py"):
            raise CheckpointError(
                "this is a torch.package archive (code bundled with weights); podium never runs submitted code. "
                "Submit the model's state dict as .safetensors instead (see `podium pack --help`)."
            )
