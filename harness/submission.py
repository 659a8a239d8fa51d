"""Prediction CSVs: validation with messages a participant can act on, and writing.

A submission has the header ``id,label`` and one row per test image (every id of
``public/test.npz`` exactly once, in any order). ``label`` is a class name or its index.
A UTF-8 BOM, CRLF line ends and blank lines are fine. Every problem is reported by line,
capped at the first 20 with a count of the rest.

Every id is required, decoys included: if decoys could be left out, the error for a missing
id would tell a team which images are decoys.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from harness.competition import Competition, Solution
from harness.errors import SubmissionError, capped

HELP = "A submission is a CSV file with the header id,label and one row per test image; sample_submission.csv shows the format."


def _show(value: str, limit: int = 40) -> str:
    """A user's string quoted for a message, shortened, with control characters made visible."""
    value = value if len(value) <= limit else value[:limit] + "..."
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


HIDDEN_TEST_CSV = (
    "This competition's test images are hidden: teams never get them, so a prediction CSV cannot be "
    "scored here. Submit a model checkpoint (.safetensors, see `podium pack`): the organizer's "
    "scoring machines run it on the hidden test images."
)


def read_csv_submission(path: str | Path, solution: Solution, competition: Competition) -> np.ndarray:
    """Validate the CSV at ``path``; the size is checked before anything is read into memory."""
    path = Path(path)
    if competition.hidden_test:
        raise SubmissionError(HIDDEN_TEST_CSV)
    size = path.stat().st_size
    limit = competition.limits.max_csv_bytes
    if size > limit:
        raise SubmissionError(
            f"The file is {size / 2**20:.1f} MiB; the limit for a CSV submission is "
            f"{limit / 2**20:.0f} MiB. A valid submission for this competition is far smaller: "
            "check that you are uploading the predictions file."
        )
    return parse_csv_submission(path.read_bytes(), solution, competition.classes)


def _looks_like_utf16(head: bytes) -> bool:
    """ASCII text in UTF-16 without a BOM: every other byte is zero."""
    half = len(head) // 2
    if half < 4:
        return False
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return max(even, odd) > 0.8 * half and min(even, odd) < 0.1 * half


def _decode(data: bytes) -> str:
    if not data.strip():
        raise SubmissionError(f"The file is empty. {HELP}")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_like_utf16(data[:512]):
        raise SubmissionError(
            "The file is encoded as UTF-16, not UTF-8. Save it again as UTF-8 "
            "(in Excel: File > Save As > 'CSV UTF-8'; in pandas: to_csv(..., encoding='utf-8'))."
        )
    if data.startswith(b"\x1f\x8b"):
        raise SubmissionError("The file is gzip-compressed. Decompress it and submit the plain CSV.")
    if b"\x00" in data[:4096] or sum(b < 9 or 13 < b < 32 for b in data[:512]) > 8:
        raise SubmissionError(f"The file is binary data, not a CSV text file. {HELP}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
        line = data[:at].count(b"\n") + 1
        raise SubmissionError(
            f"line {line}: byte 0x{data[at]:02x} is not valid UTF-8. Save the file as UTF-8 "
            "(class names and ids are plain ASCII, so this is usually a stray character or another encoding)."
        ) from None


def _label_lookup(classes: tuple[str, ...]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for i, name in enumerate(classes):
        lookup[name.lower()] = i
        lookup[str(i)] = i
    for i, name in enumerate(classes):
        lookup[name] = i
    return lookup


def _label_error(line: int, id_: str, label: str, classes: tuple[str, ...]) -> str:
    k = len(classes)
    if label == "":
        return f"line {line}: the label for id {_show(id_)} is empty; give a class name or index."
    try:
        number = float(label)
    except ValueError:
        number = None
    if number is not None:
        if number.is_integer() and 0 <= number < k:
            return f"line {line}: label {_show(label)} is not written as a class index; write it as {int(number)}."
        if number.is_integer():
            return f"line {line}: label {_show(label)} is out of range; class indices run from 0 to {k - 1}."
        return f"line {line}: label {_show(label)} is not a whole number; class indices run from 0 to {k - 1}."
    return (
        f"line {line}: {_show(label)} is not a class; valid labels are {', '.join(classes)} "
        f"(or their indices 0-{k - 1})."
    )


def _check_header(header: list[str], solution: Solution) -> tuple[int, int]:
    """Column positions of id and label, or an error that says how to fix the first line."""
    cells = [c.strip().lower() for c in header]
    if cells in (["id", "label"], ["label", "id"]):
        return cells.index("id"), cells.index("label")
    shown = ",".join(header) if header else "(an empty line)"
    if header and header[0].strip() in solution.index:
        raise SubmissionError(f"line 1: the header is missing; the first line must be id,label, found the data row {_show(shown)}.")
    if "id" in cells and "label" in cells:
        extra = [h for h, c in zip(header, cells) if c not in ("id", "label")]
        raise SubmissionError(
            f"line 1: the header has extra column(s) {', '.join(_show(e) for e in extra)}; keep only id,label."
        )
    missing = [c for c in ("id", "label") if c not in cells]
    raise SubmissionError(
        f"line 1: the header must be id,label; found {_show(shown, 80)} "
        f"(missing {' and '.join(missing)})."
    )


# A row with no quotes, spaces or extra fields: what nearly every valid submission looks like.
PLAIN_ROW = re.compile(r"^([^,\s]+),([^,\s]+)\r?$", re.MULTILINE)


def _valid_fast(text: str, solution: Solution, lookup: dict[str, int]) -> np.ndarray | None:
    """Predictions when the file is plainly valid, found with a regex and C-speed maps; else None.

    Most submissions are valid, so this path decides them; any doubt (quotes, spaces, blank
    lines, a bad row) falls through to the csv-module pass that explains each problem.
    """
    if '"' in text:
        return None
    header, _, body = text.partition("\n")
    if "\r" in header[:-1]:  # a bare carriage return ends a line for the csv module: not a plain file
        return None
    columns = [c.strip().lower() for c in header.split(",")]
    if columns not in (["id", "label"], ["label", "id"]):
        return None
    expected = len(solution)
    lines = body.count("\n") + (1 if body and not body.endswith("\n") else 0)
    pairs = PLAIN_ROW.findall(body)
    if not len(pairs) == lines == expected:
        return None
    ids, labels = zip(*pairs)
    if columns[0] == "label":
        ids, labels = labels, ids
    positions = list(map(solution.index.get, ids))
    values = list(map(lookup.get, labels))
    if None in positions or None in values:
        return None
    predictions = np.full(expected, -1, dtype=np.int64)
    predictions[np.fromiter(positions, dtype=np.int64, count=expected)] = np.fromiter(values, dtype=np.int64, count=expected)
    # Every id known and as many rows as ids: valid exactly when no id repeats.
    return predictions if (predictions >= 0).all() else None


def parse_csv_submission(data: bytes, solution: Solution, classes: tuple[str, ...]) -> np.ndarray:
    """Class indices in solution row order, or ``SubmissionError`` listing every problem."""
    if solution.hidden_test:
        raise SubmissionError(HIDDEN_TEST_CSV)
    text = _decode(data)
    lookup = _label_lookup(classes)
    fast = _valid_fast(text, solution, lookup)
    if fast is not None:
        return fast
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise SubmissionError(f"The file is empty. {HELP}")
        id_col, label_col = _check_header(header, solution)
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise SubmissionError(f"line {reader.line_num}: this is not valid CSV ({exc}).") from None
    if not rows:
        raise SubmissionError(
            f"The file has a header but no rows; expected {len(solution)} rows, one per test image."
        )
    index = solution.index
    predictions = np.full(len(solution), -1, dtype=np.int64)
    first_line = np.zeros(len(solution), dtype=np.int64)
    errors: list[str] = []
    for line, row in rows:
        if len(row) != 2:
            what = "only one field" if len(row) == 1 else f"{len(row)} fields"
            errors.append(f"line {line}: the row has {what}; expected 2 (id,label).")
            continue
        id_, label = row[id_col].strip(), row[label_col].strip()
        at = index.get(id_)
        if at is None:
            errors.append(f"line {line}: id {_show(id_)} is not a test image id (the ids are in sample_submission.csv).")
            continue
        if first_line[at]:
            errors.append(f"line {line}: id {_show(id_)} appears twice (first on line {first_line[at]}).")
            continue
        first_line[at] = line
        value = lookup.get(label)
        if value is None:
            value = lookup.get(label.lower())
        if value is None:
            errors.append(_label_error(line, id_, label, classes))
            continue
        predictions[at] = value
    missing = np.flatnonzero(first_line == 0)
    if missing.size:
        examples = ", ".join(_show(solution.ids[i]) for i in missing[:3])
        errors.append(
            f"{missing.size} of the {len(solution)} test ids {'is' if missing.size == 1 else 'are'} missing "
            f"(for example {examples}); every test image needs one row."
        )
    if errors:
        raise SubmissionError(capped(errors))
    return predictions


def write_predictions_csv(
    path: str | Path, ids, predictions: np.ndarray, classes: tuple[str, ...]
) -> None:
    """Write ``id,label`` with class names: a valid submission."""
    names = np.asarray(classes, dtype=object)[np.asarray(predictions, dtype=np.int64)]
    lines = ["id,label"] + [f"{i},{n}" for i, n in zip(ids, names)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
