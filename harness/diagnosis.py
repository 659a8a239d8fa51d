"""Learning curves -> a diagnosis in the words of the course seeds.

A ``history.csv`` has one row per epoch with the columns::

    epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s

``epoch``, ``train_loss`` and ``train_acc`` are required in every row. ``val_loss`` and
``val_acc`` may be left empty in every row (a run without a validation split, such as the seed's
full-train recipe); ``lr``, ``seconds`` and ``images_per_s`` may be empty or absent. Accuracies
are fractions in [0, 1]. ``podium baseline`` writes this file; the leaderboard reads the same file
when a team attaches one to a submission, so a malformed one raises ``SubmissionError`` with
messages for that team.

The rules (``diagnose``), in the order they are tried:

- ``diverging``: a loss is NaN/infinite, or the training loss ended above where it started ->
  the learning rate is far too high (seed 002 §4.6.1: a much too large rate diverges).
- ``oscillating``: the validation loss goes up and down repeatedly (at least two rises and two
  changes of direction) -> the learning rate is too high; lower it (seed 002 §4.6.2).
- ``overfitting``: the training error is far below the validation error (seed 002 §4.4.1: 1 % vs
  10 %), or the validation loss rose while the training loss kept falling (§4.4.2, seed 000 §2).
- ``still_improving``: the validation loss was still clearly falling in the last epoch -> train
  longer or raise the learning rate a little (seed 002 §4.6.2).
- ``underfitting``: both errors are high and close (seed 002 §4.4.1: 14 % vs 15 %) -> more
  capacity, more epochs, less regularization.
- ``healthy``: both losses improved and levelled off, with a small gap.
- ``no_validation``: without validation columns only ``diverging`` can be told apart.

Pure Python and numpy: no torch, no matplotlib.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from harness.errors import SubmissionError, capped

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")
REQUIRED = ("epoch", "train_loss", "train_acc")
VALIDATION = ("val_loss", "val_acc")
OPTIONAL = ("lr", "seconds", "images_per_s")
ACCURACIES = ("train_acc", "val_acc")
MAX_HISTORY_BYTES = 1024 * 1024
MAX_EPOCHS = 10_000

VERDICTS = ("diverging", "oscillating", "overfitting", "still_improving", "underfitting", "healthy", "no_validation")


@dataclass(frozen=True)
class History:
    """The epochs of one run, in order. Iterating yields one dict per epoch (``COLUMNS`` as keys)."""

    rows: tuple[dict, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]

    @property
    def has_validation(self) -> bool:
        return bool(self.rows) and all(row["val_loss"] is not None for row in self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column as float64 (NaN where empty)."""
        return np.array([math.nan if row[name] is None else row[name] for row in self.rows], dtype=np.float64)

    def to_dicts(self) -> list[dict]:
        return [dict(row) for row in self.rows]

    def to_csv(self) -> str:
        return history_csv(self.rows)


def history_csv(rows: Iterable[Mapping]) -> str:
    """The ``history.csv`` text for rows holding ``COLUMNS`` (missing or None -> empty cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _cell(row[c]) for c in COLUMNS])
    return out.getvalue()


def write_history(path: str | Path, rows: Iterable[Mapping]) -> Path:
    path = Path(path)
    path.write_text(history_csv(rows), encoding="utf-8")
    return path


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))  # repr round-trips a float exactly


def _history_text(path_or_text: str | Path | bytes) -> str:
    """Text from a path, bytes, or the CSV text itself (a str with a newline or a comma)."""
    if isinstance(path_or_text, bytes):
        data = path_or_text
    elif isinstance(path_or_text, str) and ("\n" in path_or_text or "," in path_or_text):
        data = path_or_text.encode("utf-8")
    else:
        path = Path(path_or_text)
        try:
            size = path.stat().st_size
            if size > MAX_HISTORY_BYTES:
                raise SubmissionError(
                    f"The history file is {size / 2**20:.1f} MiB; a history.csv is at most "
                    f"{MAX_HISTORY_BYTES // 2**20} MiB (one short row per epoch)."
                )
            data = path.read_bytes()
        except OSError:  # missing, a folder, no permission
            raise SubmissionError(f"The history file {path} does not exist or cannot be read.") from None
    if len(data) > MAX_HISTORY_BYTES:
        raise SubmissionError(
            f"The history is {len(data) / 2**20:.1f} MiB; a history.csv is at most {MAX_HISTORY_BYTES // 2**20} MiB."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("The history file is not UTF-8 text; it must be a CSV file (history.csv).") from None


def _number(text: str, line: int, column: str, problems: list[str]) -> float | None:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"history line {line}: {column} {text[:30]!r} is not a number.")
        return None
    return value


def read_history(path_or_text: str | Path | bytes) -> History:
    """Parse a ``history.csv`` (path, bytes or text); every problem is a message in ``SubmissionError``."""
    text = _history_text(path_or_text)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip().lower() for c in next(reader)]
        body = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except StopIteration:
        raise SubmissionError("The history file is empty; it needs a header and one row per epoch.") from None
    except csv.Error as exc:
        raise SubmissionError(f"The history file is not a valid CSV: {exc}.") from None
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in REQUIRED + VALIDATION if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if unknown:
            detail.append(f"unknown {', '.join(repr(u[:30]) for u in unknown[:5])}")
        if len(set(header)) != len(header):
            detail.append("a column appears twice")
        raise SubmissionError(
            f"history line 1: the header must be {','.join(COLUMNS)} ({'; '.join(detail)})."
        )
    if not body:
        raise SubmissionError("The history has a header but no epochs.")
    if len(body) > MAX_EPOCHS:
        raise SubmissionError(f"The history has {len(body)} rows; at most {MAX_EPOCHS} epochs are accepted.")
    problems: list[str] = []
    rows: list[dict] = []
    for line, cells in body:
        if len(cells) != len(header):
            problems.append(f"history line {line}: {len(cells)} cells, expected {len(header)} (one per column).")
            continue
        raw = dict(zip(header, cells))
        row: dict = {}
        for column in COLUMNS:
            value = _number(raw.get(column, ""), line, column, problems)
            if value is not None and not math.isfinite(value) and column not in ("train_loss", "val_loss"):
                problems.append(f"history line {line}: {column} must be finite, got {raw[column].strip()!r}.")
            row[column] = value
        for column in REQUIRED:
            if raw.get(column, "").strip() == "":
                problems.append(f"history line {line}: {column} is empty.")
        for column in ACCURACIES:
            value = row[column]
            if value is not None and math.isfinite(value) and not 0.0 <= value <= 1.0:
                hint = " (it looks like a percentage: divide by 100)" if 1.0 < value <= 100.0 else ""
                problems.append(f"history line {line}: {column} {value:g} is not a fraction between 0 and 1{hint}.")
        if row["epoch"] is not None:
            if not float(row["epoch"]).is_integer():
                problems.append(f"history line {line}: epoch {row['epoch']:g} is not a whole number.")
            else:
                row["epoch"] = int(row["epoch"])
        if (row["val_loss"] is None) != (row["val_acc"] is None):
            problems.append(f"history line {line}: give both val_loss and val_acc, or leave both empty.")
        rows.append(row)
    if not problems:
        with_val = [r["val_loss"] is not None for r in rows]
        if any(with_val) and not all(with_val):
            problems.append("history: val_loss/val_acc must be filled on every epoch or on none.")
        epochs = [r["epoch"] for r in rows]
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            problems.append("history: epochs must be listed in increasing order, each once.")
    if problems:
        raise SubmissionError(capped(problems))
    return History(rows=tuple(rows))


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind the rules; errors are 1 - accuracy, as fractions."""

    overfit_gap: float = 0.05  # val error - train error at least this ...
    overfit_ratio: float = 2.0  # ... and val error at least this many times the train error (1 % vs 10 %)
    loss_rise: float = 0.05  # val loss this much (relative) above its minimum, train loss still falling
    underfit_error: float = 0.10  # train error at least this (14 % vs 15 %) ...
    underfit_gap: float = 0.05  # ... and the gap below this
    still_improving: float = 0.02  # last-epoch relative drop of the val loss that counts as "still falling"
    min_loss_step: float = 0.01  # and a loss change smaller than this (absolute) is noise, not a trend
    oscillation_step: float = 0.02  # a val-loss step counts when its relative size is at least this
    oscillation_turns: int = 2  # direction changes among counted steps ...
    oscillation_rises: int = 2  # ... with at least this many rises: one blip is not "repeatedly up and down"


REMEDIES: dict[str, tuple[str, ...]] = {
    "diverging": (
        "Lower the learning rate by 10x and train again: a rate far above the ideal one makes the loss grow (seed 002 §4.6.1).",
        "Check the input normalization and the labels before anything else.",
    ),
    "oscillating": (
        "Lower the learning rate (for example by 3-10x) and train again (seed 002 §4.6.2).",
        "Use learning-rate decay (step or exponential) so late steps are smaller (seed 002 §4.6.3).",
    ),
    "overfitting": (
        "Add dropout (0.3-0.5) before the classifier (seed 000 §2).",
        "Add weight decay / L2 regularization (for example weight_decay=1e-4).",
        "Use more data augmentation (random crops, flips) or collect more training data.",
        "Stop early: keep the epoch with the lowest validation loss.",
        "Try a smaller model (fewer layers or units).",
    ),
    "still_improving": (
        "Train for more epochs with the same learning rate (seed 002 §4.6.2).",
        "Or raise the learning rate a little and train again.",
    ),
    "underfitting": (
        "Give the model more capacity: more layers or units, or a different architecture (seed 002 §4.4.1).",
        "Train for more epochs.",
        "Reduce regularization (lower dropout or weight decay) and retune the learning rate.",
    ),
    "healthy": (
        "Training and validation losses both improved and levelled off: keep this setting.",
        "To go further, tune the learning rate first (seed 002 §4.6.1), then the regularization.",
    ),
    "no_validation": (
        "Hold out a validation split (for example --val-fraction 0.1) to see over- or underfitting.",
    ),
}

SOURCES = {
    "diverging": "seed 002 §4.6.1",
    "oscillating": "seed 002 §4.6.2",
    "overfitting": "seed 002 §4.4.1-4.4.2, seed 000 §2",
    "still_improving": "seed 002 §4.6.2",
    "underfitting": "seed 002 §4.4.1, seed 000 §2",
    "healthy": "seed 002 §4.4.2",
    "no_validation": "seed 002 §4.4",
}


@dataclass(frozen=True)
class Diagnosis:
    """One verdict (``VERDICTS``), a one-line headline, the numbers behind it and the seeds' remedies.

    ``findings`` lists every rule that fired, the verdict first (e.g. still improving *and*
    underfitting); ``remedies`` are the verdict's.
    """

    verdict: str
    headline: str
    evidence: dict = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict:
        """The diagnosis as plain data for JSON: a NaN or infinite number (a diverged loss) is None."""
        return json_safe(asdict(self))

    def to_text(self) -> str:
        lines = [f"{self.verdict}: {self.headline}"]
        if len(self.findings) > 1:
            lines.append("also: " + ", ".join(self.findings[1:]))
        lines += [f"  {k} = {_show_number(v)}" for k, v in self.evidence.items()]
        lines.append(f"remedies ({self.source}):")
        lines += [f"  - {r}" for r in self.remedies]
        return "\n".join(lines)


def json_safe(value):
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) replaced by None.

    ``json.dumps`` would write them as ``NaN``/``Infinity``, which is not JSON: strict parsers
    (a browser's ``JSON.parse``, ``jq``) refuse the whole document.
    """
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _show_number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _as_history(history: History | Sequence[Mapping]) -> History:
    if isinstance(history, History):
        return history
    rows = []
    for number, r in enumerate(history, start=1):
        row = {c: (None if r.get(c) is None else r[c]) for c in COLUMNS}
        row["epoch"] = number if row["epoch"] is None else row["epoch"]
        rows.append(row)
    return History(rows=tuple(rows))


def _turns_and_rises(values: np.ndarray, step: float, floor: float) -> tuple[int, int]:
    """Direction changes and rises among the steps at least ``step`` relative to the level and ``floor``."""
    diffs = np.diff(values)
    level = np.maximum(np.abs(values[:-1]), 1e-12)
    signs = np.sign(diffs)[(np.abs(diffs) / level >= step) & (np.abs(diffs) >= floor)]
    return int(np.count_nonzero(signs[1:] != signs[:-1])), int(np.count_nonzero(signs > 0))


def _finish(verdict: str, headline: str, evidence: dict, findings: list[str]) -> Diagnosis:
    ordered = [verdict] + [f for f in findings if f != verdict]
    return Diagnosis(
        verdict=verdict,
        headline=headline,
        evidence=evidence,
        remedies=list(REMEDIES[verdict]),
        findings=ordered,
        source=SOURCES[verdict],
    )


def diagnose(history: History | Sequence[Mapping], thresholds: Thresholds | None = None) -> Diagnosis:
    """Apply the seeds' rules to a history (a ``History`` or a list of dicts with ``COLUMNS``)."""
    # An uploaded history may hold any finite float: overflow in a ratio is a verdict, not a warning.
    with np.errstate(all="ignore"):
        return _diagnose(history, thresholds)


def _diagnose(history: History | Sequence[Mapping], thresholds: Thresholds | None) -> Diagnosis:
    t = thresholds or Thresholds()
    h = _as_history(history)
    if len(h) == 0:
        raise SubmissionError("The history has no epochs to diagnose.")
    train_loss, train_err = h.column("train_loss"), 1.0 - h.column("train_acc")
    n = len(h)
    evidence: dict = {"epochs": n, "train_error": float(train_err[-1]), "train_loss": float(train_loss[-1])}
    findings: list[str] = []

    losses = train_loss if not h.has_validation else np.concatenate([train_loss, h.column("val_loss")])
    if not np.all(np.isfinite(losses)) or (n >= 2 and train_loss[-1] > train_loss[0]):
        evidence["first_train_loss"] = float(train_loss[0])
        return _finish(
            "diverging",
            "The loss grew or became NaN: the learning rate is far too high.",
            evidence,
            ["diverging"],
        )
    if not h.has_validation:
        return _finish(
            "no_validation",
            f"No validation columns: final training error {train_err[-1]:.1%}; over- or underfitting cannot be told.",
            evidence,
            [],
        )

    val_loss, val_err = h.column("val_loss"), 1.0 - h.column("val_acc")
    gap = float(val_err[-1] - train_err[-1])
    best = int(np.argmin(val_loss))
    evidence.update(
        val_error=float(val_err[-1]),
        val_loss=float(val_loss[-1]),
        gap=gap,
        best_val_loss=float(val_loss[best]),
        best_epoch=int(h[best]["epoch"]),
    )
    turns, rises = _turns_and_rises(val_loss, t.oscillation_step, t.min_loss_step)
    evidence["val_loss_turns"], evidence["val_loss_rises"] = turns, rises
    last_drop = float((val_loss[-2] - val_loss[-1]) / max(val_loss[-2], 1e-12)) if n >= 2 else 0.0
    evidence["last_val_loss_drop"] = last_drop
    rise = float((val_loss[-1] - val_loss[best]) / max(val_loss[best], 1e-12))

    oscillating = turns >= t.oscillation_turns and rises >= t.oscillation_rises
    gap_overfit = gap >= t.overfit_gap and val_err[-1] >= t.overfit_ratio * train_err[-1]
    loss_overfit = best < n - 1 and rise >= t.loss_rise and train_loss[-1] < train_loss[best]
    still = n >= 2 and last_drop >= t.still_improving and val_loss[-2] - val_loss[-1] >= t.min_loss_step
    underfit = train_err[-1] >= t.underfit_error and gap < t.underfit_gap
    for name, fired in (
        ("oscillating", oscillating),
        ("overfitting", gap_overfit or loss_overfit),
        ("still_improving", still),
        ("underfitting", underfit),
    ):
        if fired:
            findings.append(name)

    if oscillating:
        return _finish(
            "oscillating",
            f"The validation loss went up and down {turns} times: the learning rate is too high.",
            evidence,
            findings,
        )
    if gap_overfit:
        return _finish(
            "overfitting",
            f"Training error {train_err[-1]:.1%} is far below validation error {val_err[-1]:.1%}: "
            "the model memorizes the training data.",
            evidence,
            findings,
        )
    if loss_overfit:
        evidence["val_loss_rise"] = rise
        return _finish(
            "overfitting",
            f"The validation loss rose {rise:.0%} after epoch {h[best]['epoch']} while the training loss kept "
            "falling: the model has started to memorize.",
            evidence,
            findings,
        )
    if still:
        return _finish(
            "still_improving",
            f"The validation loss was still falling ({last_drop:.1%} in the last epoch): "
            "train longer or raise the learning rate.",
            evidence,
            findings,
        )
    if underfit:
        return _finish(
            "underfitting",
            f"Training error {train_err[-1]:.1%} and validation error {val_err[-1]:.1%} are both high and close: "
            "the model is too weak for the data.",
            evidence,
            findings,
        )
    return _finish(
        "healthy",
        f"Both losses improved and levelled off; training error {train_err[-1]:.1%}, "
        f"validation error {val_err[-1]:.1%}.",
        evidence,
        ["healthy"],
    )
