"""Learning curves -> a diagnosis in the words of the course notes.

A ``history.csv`` has one row per epoch with the columns::

    epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s

``epoch``, ``train_loss`` and ``train_acc`` are required in every row. ``val_loss`` and
``val_acc`` may be left empty in every row (a run without a validation split, such as the course notes'
full-train recipe); ``lr``, ``seconds`` and ``images_per_s`` may be empty or absent. Accuracies
are fractions in [0, 1]. ``podium baseline`` writes this file; the leaderboard reads the same file
when a team attaches one to a submission, so a malformed one raises ``SubmissionError`` with
messages for that team.

An optional ``val_rows`` column says how many validation rows ``val_loss``/``val_acc`` were
measured on (the baseline writes it); the rules use it to tell a trend from noise.

The rules are one table, ``RULES`` (name, test, headline, remedies, source, how it holds against
noise), tried in this order:

- ``diverging``: a loss is NaN/infinite, or the training loss ended clearly above where it
  started -> the learning rate is far too high (course notes 002 §4.6.1).
- ``no_validation``: without validation columns only ``diverging`` can be told apart.
- ``oscillating``: the validation loss goes up and down repeatedly (at least two rises and two
  changes of direction, counting only steps beyond noise) -> lower the learning rate (§4.6.2).
- ``overfitting``: the training error is far below the validation error (course notes 002 §4.4.1: 1 % vs
  10 %), or the validation loss rose while the training loss kept falling (§4.4.2, course notes 000 §2).
- ``still_improving``: the validation loss was still clearly falling in the last epoch -> train
  longer or raise the learning rate a little (course notes 002 §4.6.2).
- ``underfitting``: both errors are high and close (course notes 002 §4.4.1: 14 % vs 15 %) -> more
  capacity, more epochs, less regularization.
- ``healthy``: nothing above was found beyond noise.

Noise: a change of the validation loss counts only when it exceeds an absolute floor
(``min_loss_step``) and, with ``val_rows``, ``noise_z`` standard errors of the loss
(``val_loss_noise``); an error gap counts only beyond ``noise_z`` standard errors of the
validation error (``val_error_noise``). A rise within noise is not a verdict.

Pure Python and numpy: no torch, no matplotlib.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from harness.errors import SubmissionError, capped

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")
VAL_ROWS = "val_rows"  # optional column: how many validation rows val_loss/val_acc were measured on
REQUIRED = ("epoch", "train_loss", "train_acc")
VALIDATION = ("val_loss", "val_acc")
OPTIONAL = ("lr", "seconds", "images_per_s")
ACCURACIES = ("train_acc", "val_acc")
MAX_HISTORY_BYTES = 1024 * 1024
MAX_EPOCHS = 10_000


@dataclass(frozen=True)
class History:
    """The epochs of one run, in order. Iterating yields one dict per epoch (``COLUMNS`` as keys,
    plus ``val_rows`` when the history carries that column)."""

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

    @property
    def val_rows(self) -> int | None:
        """The number of validation rows (the last one given), or None when the history lacks it."""
        given = [row[VAL_ROWS] for row in self.rows if row.get(VAL_ROWS) is not None]
        return int(given[-1]) if given else None

    def column(self, name: str) -> np.ndarray:
        """One column as float64 (NaN where empty)."""
        return np.array([math.nan if row[name] is None else row[name] for row in self.rows], dtype=np.float64)

    def to_dicts(self) -> list[dict]:
        return [dict(row) for row in self.rows]

    def to_csv(self) -> str:
        return history_csv(self.rows)


def history_csv(rows: Iterable[Mapping]) -> str:
    """The ``history.csv`` text for rows holding ``COLUMNS`` (missing or None -> empty cell); a
    ``val_rows`` column is written when a row has that key."""
    rows = list(rows)
    columns = COLUMNS + ((VAL_ROWS,) if any(VAL_ROWS in row for row in rows) else ())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _cell(row[c]) for c in columns])
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
    unknown = [c for c in header if c not in COLUMNS + (VAL_ROWS,)]
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
            f"history line 1: the header must be {','.join(COLUMNS)} (and optionally {VAL_ROWS}) "
            f"({'; '.join(detail)})."
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
        for column in COLUMNS + ((VAL_ROWS,) if VAL_ROWS in header else ()):
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
        if row.get(VAL_ROWS) is not None:
            if not (math.isfinite(row[VAL_ROWS]) and row[VAL_ROWS].is_integer() and row[VAL_ROWS] >= 1):
                problems.append(f"history line {line}: {VAL_ROWS} {row[VAL_ROWS]:g} is not a whole number of rows (1 or more).")
            else:
                row[VAL_ROWS] = int(row[VAL_ROWS])
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
    noise_z: float = 2.0  # with val_rows known, a change must also exceed this many standard errors


def val_error_noise(val_error: float, val_rows: int | None) -> float:
    """Standard error of a validation error rate measured on ``val_rows`` rows (0 when unknown).

    The binomial ``sqrt(e(1-e)/N)``, never below one row (``1/N``): with no or one wrong row the
    binomial formula would claim a precision the validation set does not have.
    """
    if not val_rows:
        return 0.0
    e = min(max(float(val_error), 0.0), 1.0)
    return max(math.sqrt(e * (1.0 - e) / val_rows), 1.0 / val_rows)


def val_loss_noise(level: float, val_error: float, val_rows: int | None) -> float:
    """Standard error of a validation loss near ``level`` (0 when ``val_rows`` is unknown).

    A mean cross-entropy is dominated by the rows the model gets wrong (a few nats each, against
    almost 0 for confident right answers), so it behaves like a count of those rows: its relative
    noise is about ``1/sqrt(wrong rows)``, at least one row. With 126 validation rows and one
    wrong, the loss is known to within about 100 % of itself; with 750 wrong, to about 4 %.
    """
    if not val_rows:
        return 0.0
    wrong = max(1.0, float(val_error) * val_rows)
    return abs(float(level)) / math.sqrt(wrong)


@dataclass
class Curves:
    """The numbers every rule reads, computed once from a history (see ``Rule``)."""

    h: History
    t: Thresholds
    evidence: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, t = self.h, self.t
        self.n = len(h)
        self.train_loss, self.train_err = h.column("train_loss"), 1.0 - h.column("train_acc")
        self.has_validation = h.has_validation
        self.val_rows = h.val_rows
        self.evidence.update(
            epochs=self.n,
            train_error=float(self.train_err[-1]),
            train_loss=float(self.train_loss[-1]),
            first_train_loss=float(self.train_loss[0]),
        )
        losses = self.train_loss if not self.has_validation else np.concatenate([self.train_loss, h.column("val_loss")])
        self.finite = bool(np.all(np.isfinite(losses)))
        if not self.has_validation or not self.finite:
            return
        val_loss, val_err = h.column("val_loss"), 1.0 - h.column("val_acc")
        self.val_loss, self.val_err = val_loss, val_err
        n = self.n
        self.gap = float(val_err[-1] - self.train_err[-1])
        self.best = int(np.argmin(val_loss))
        self.rise = float((val_loss[-1] - val_loss[self.best]) / max(val_loss[self.best], 1e-12))
        self.rise_abs = float(val_loss[-1] - val_loss[self.best])
        self.last_drop = float((val_loss[-2] - val_loss[-1]) / max(val_loss[-2], 1e-12)) if n >= 2 else 0.0
        self.last_drop_abs = float(val_loss[-2] - val_loss[-1]) if n >= 2 else 0.0
        self.err_noise = val_error_noise(val_err[-1], self.val_rows)
        # the smallest loss change that is not noise: the absolute floor, and z standard errors of
        # the loss at the epoch the change is measured from
        prev = self.n - 2 if self.n >= 2 else self.n - 1
        self.loss_floor_best = max(
            t.min_loss_step, t.noise_z * val_loss_noise(val_loss[self.best], val_err[self.best], self.val_rows)
        )
        self.loss_floor_last = max(
            t.min_loss_step, t.noise_z * val_loss_noise(val_loss[prev], val_err[prev], self.val_rows)
        )
        self.turns, self.rises = _turns_and_rises(
            val_loss, t.oscillation_step, t.min_loss_step, t.noise_z, val_err, self.val_rows
        )
        self.evidence.update(
            val_error=float(val_err[-1]),
            val_loss=float(val_loss[-1]),
            gap=self.gap,
            best_val_loss=float(val_loss[self.best]),
            best_epoch=int(h[self.best]["epoch"]),
            val_loss_turns=self.turns,
            val_loss_rises=self.rises,
            last_val_loss_drop=self.last_drop,
            val_loss_rise=self.rise,
            val_loss_noise_floor=self.loss_floor_best,
        )
        if self.val_rows:
            self.evidence.update(val_rows=self.val_rows, val_error_noise=self.err_noise)

    @property
    def rise_is_real(self) -> bool:
        """The val loss ended above its minimum by more than ``loss_rise`` and beyond noise."""
        return self.best < self.n - 1 and self.rise >= self.t.loss_rise and self.rise_abs >= self.loss_floor_best

    @property
    def gap_is_real(self) -> bool:
        """Val error far above train error (the course notes' 1 % vs 10 %), beyond the val error's noise."""
        t = self.t
        return (
            self.gap >= t.overfit_gap
            and self.val_err[-1] >= t.overfit_ratio * self.train_err[-1]
            and self.gap >= t.noise_z * self.err_noise
        )

    def noise_words(self) -> str:
        if self.val_rows:
            return f"the noise of {self.val_rows} validation rows (±{self.loss_floor_best:.3g})"
        return f"the {self.t.min_loss_step:g} noise floor (the history does not say how many validation rows)"


@dataclass(frozen=True)
class Rule:
    """One verdict of the diagnosis: when it fires, what it says, what to do, where the seeds say so.

    ``test`` and ``headline`` read a ``Curves``. A ``gate`` rule (diverging, no_validation) ends
    the diagnosis when it fires; the other rules all run and every one that fires is a finding, the
    first in ``RULES`` order being the verdict. ``healthy`` is the fallback: it fires always and is
    a finding only when it is the verdict. ``noise`` says how the rule holds against the noise of
    the validation set.
    """

    name: str
    test: Callable[[Curves], bool]
    headline: Callable[[Curves], str]
    remedies: tuple[str, ...]
    source: str
    noise: str
    gate: bool = False
    needs_validation: bool = True


def _overfit_headline(c: Curves) -> str:
    if c.gap_is_real:
        return (
            f"Training error {c.train_err[-1]:.1%} is far below validation error {c.val_err[-1]:.1%}: "
            "the model memorizes the training data."
        )
    return (
        f"The validation loss rose {c.rise:.0%} after epoch {c.h[c.best]['epoch']} while the training loss kept "
        "falling: the model has started to memorize."
    )


def _healthy_headline(c: Curves) -> str:
    text = (
        f"Both losses improved and levelled off; training error {c.train_err[-1]:.1%}, "
        f"validation error {c.val_err[-1]:.1%}."
    )
    if c.best < c.n - 1 and c.rise_abs > 0 and c.rise >= c.t.loss_rise:
        text += (
            f" The validation loss ended {c.rise_abs:.3g} above its best (epoch {c.h[c.best]['epoch']}), "
            f"within {c.noise_words()}: not a trend."
        )
    return text


RULES: tuple[Rule, ...] = (
    Rule(
        name="diverging",
        test=lambda c: not c.finite
        or (c.n >= 2 and c.train_loss[-1] - c.train_loss[0] >= max(c.t.min_loss_step, c.t.loss_rise * abs(c.train_loss[0]))),
        headline=lambda c: "The loss grew or became NaN: the learning rate is far too high.",
        remedies=(
            "Lower the learning rate by 10x and train again: a rate far above the ideal one makes the loss grow (course notes 002 §4.6.1).",
            "Check the input normalization and the labels before anything else.",
        ),
        source="course notes 002 §4.6.1",
        noise="the training loss (averaged over every training row) must end above its start by the loss floor "
              "and 5 %; a NaN or infinite loss is never noise",
        gate=True,
        needs_validation=False,
    ),
    Rule(
        name="no_validation",
        test=lambda c: not c.has_validation,
        headline=lambda c: (
            f"No validation columns: final training error {c.train_err[-1]:.1%}; over- or underfitting cannot be told."
        ),
        remedies=("Hold out a validation split (for example --val-fraction 0.1) to see over- or underfitting.",),
        source="course notes 002 §4.4",
        noise="no validation numbers, nothing to judge",
        gate=True,
        needs_validation=False,
    ),
    Rule(
        name="oscillating",
        test=lambda c: c.turns >= c.t.oscillation_turns and c.rises >= c.t.oscillation_rises,
        headline=lambda c: f"The validation loss went up and down {c.turns} times: the learning rate is too high.",
        remedies=(
            "Lower the learning rate (for example by 3-10x) and train again (course notes 002 §4.6.2).",
            "Use learning-rate decay (step or exponential) so late steps are smaller (course notes 002 §4.6.3).",
        ),
        source="course notes 002 §4.6.2",
        noise="a step of the validation loss counts only above 2 % relative, the 0.01 floor and 2 standard "
              "errors of the loss (with val_rows)",
    ),
    Rule(
        name="overfitting",
        test=lambda c: c.gap_is_real or (c.rise_is_real and c.train_loss[-1] < c.train_loss[c.best]),
        headline=_overfit_headline,
        remedies=(
            "Add dropout (0.3-0.5) before the classifier (course notes 000 §2).",
            "Add weight decay / L2 regularization (for example weight_decay=1e-4).",
            "Use more data augmentation (random crops, flips) or collect more training data.",
            "Stop early: keep the epoch with the lowest validation loss.",
            "Try a smaller model (fewer layers or units).",
        ),
        source="course notes 002 §4.4.1-4.4.2, course notes 000 §2",
        noise="the error gap must exceed 2 standard errors of the validation error, and a rise of the "
              "validation loss must exceed 5 %, the 0.01 floor and 2 standard errors of the loss",
    ),
    Rule(
        name="still_improving",
        test=lambda c: c.n >= 2 and c.last_drop >= c.t.still_improving and c.last_drop_abs >= c.loss_floor_last,
        headline=lambda c: (
            f"The validation loss was still falling ({c.last_drop:.1%} in the last epoch): "
            "train longer or raise the learning rate."
        ),
        remedies=(
            "Train for more epochs with the same learning rate (course notes 002 §4.6.2).",
            "Or raise the learning rate a little and train again.",
        ),
        source="course notes 002 §4.6.2",
        noise="the last drop must exceed 2 %, the 0.01 floor and 2 standard errors of the loss",
    ),
    Rule(
        name="underfitting",
        test=lambda c: c.train_err[-1] >= c.t.underfit_error
        and c.gap < max(c.t.underfit_gap, c.t.noise_z * c.err_noise),
        headline=lambda c: (
            f"Training error {c.train_err[-1]:.1%} and validation error {c.val_err[-1]:.1%} are both high and close: "
            "the model is too weak for the data."
        ),
        remedies=(
            "Give the model more capacity: more layers or units, or a different architecture (course notes 002 §4.4.1).",
            "Train for more epochs.",
            "Reduce regularization (lower dropout or weight decay) and retune the learning rate.",
        ),
        source="course notes 002 §4.4.1, course notes 000 §2",
        noise="the training error is measured on every training row; the errors count as close when their gap "
              "is under 0.05 or within 2 standard errors of the validation error",
    ),
    Rule(
        name="healthy",
        test=lambda c: True,
        headline=_healthy_headline,
        remedies=(
            "Training and validation losses both improved and levelled off: keep this setting.",
            "To go further, tune the learning rate first (course notes 002 §4.6.1), then the regularization.",
        ),
        source="course notes 002 §4.4.2",
        noise="the fallback: what remains when no other rule found a change beyond noise",
    ),
)

RULE_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
VERDICTS = tuple(RULE_BY_NAME)
# Views of the one table, kept for callers that read them.
REMEDIES: dict[str, tuple[str, ...]] = {rule.name: rule.remedies for rule in RULES}
SOURCES: dict[str, str] = {rule.name: rule.source for rule in RULES}


@dataclass(frozen=True)
class Diagnosis:
    """One verdict (``VERDICTS``), a one-line headline, the numbers behind it and the course notes' remedies.

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
        row = {c: (None if r.get(c) is None else r[c]) for c in COLUMNS + ((VAL_ROWS,) if VAL_ROWS in r else ())}
        row["epoch"] = number if row["epoch"] is None else row["epoch"]
        rows.append(row)
    return History(rows=tuple(rows))


def _turns_and_rises(values: np.ndarray, step: float, floor: float, z: float = 0.0,
                     val_err: np.ndarray | None = None, val_rows: int | None = None) -> tuple[int, int]:
    """Direction changes and rises among the steps of ``values`` that are not noise: at least
    ``step`` relative to the level, at least ``floor``, and (with ``val_rows``) at least ``z``
    standard errors of the loss at that level (``val_loss_noise``)."""
    diffs = np.diff(values)
    level = np.maximum(np.abs(values[:-1]), 1e-12)
    noise = np.zeros_like(diffs)
    if val_rows and val_err is not None:
        wrong = np.maximum(1.0, val_err[:-1] * val_rows)
        noise = z * level / np.sqrt(wrong)
    counted = (np.abs(diffs) / level >= step) & (np.abs(diffs) >= np.maximum(floor, noise))
    signs = np.sign(diffs)[counted]
    return int(np.count_nonzero(signs[1:] != signs[:-1])), int(np.count_nonzero(signs > 0))


def diagnose(history: History | Sequence[Mapping], thresholds: Thresholds | None = None) -> Diagnosis:
    """Apply ``RULES`` to a history (a ``History`` or a list of dicts with ``COLUMNS``)."""
    # An uploaded history may hold any finite float: overflow in a ratio is a verdict, not a warning.
    with np.errstate(all="ignore"):
        return _diagnose(history, thresholds)


def _diagnose(history: History | Sequence[Mapping], thresholds: Thresholds | None) -> Diagnosis:
    h = _as_history(history)
    if len(h) == 0:
        raise SubmissionError("The history has no epochs to diagnose.")
    c = Curves(h, thresholds or Thresholds())
    fired: list[Rule] = []
    for rule in RULES:
        if rule.needs_validation and not (c.has_validation and c.finite):
            continue
        if rule.test(c):
            if rule.gate:
                return _finish(rule, c, [rule.name])
            fired.append(rule)
    findings = [rule.name for rule in fired if rule.name != "healthy"] or ["healthy"]
    return _finish(fired[0], c, findings)


def _finish(rule: Rule, c: Curves, findings: list[str]) -> Diagnosis:
    return Diagnosis(
        verdict=rule.name,
        headline=rule.headline(c),
        evidence=dict(c.evidence),
        remedies=list(rule.remedies),
        findings=findings,
        source=rule.source,
    )
