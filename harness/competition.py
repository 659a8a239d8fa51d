"""The competition directory and the one frozen ``Competition`` object read from it.

Layout (written by ``podium init``), ``data_format = "npz"`` (cifar10, digits)::

    <dir>/competition.toml
    <dir>/description.md                the Overview page (the organizer's Markdown)
    <dir>/public/train.npz              images uint8 [N,H,W,3], labels int64 [N]
    <dir>/public/test.npz               images uint8 [M,H,W,3], ids str [M]
    <dir>/public/sample_submission.csv
    <dir>/private/solution.csv          id,label,Usage (never served)

``data_format = "image-folders"`` (``podium init images``; see ``harness/imagefolder.py``)::

    <dir>/public/train/<class>/<file>   N x N RGB images, torchvision's ImageFolder layout
    <dir>/public/train.csv              file,label: every training image, in ImageFolder order
    <dir>/public/test/<id>.<ext>        N x N RGB test images named by opaque id
    <dir>/public/test.csv               id,file: the test images in solution row order

With ``hidden_test = true`` the test images (``test.npz``, or ``test/`` and ``test.csv``) live in
``private/`` instead of ``public/``: teams never get them, only the organizer's scoring does.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from harness.errors import CompetitionError
from harness.metrics import METRICS

DATA_FORMATS = ("npz", "image-folders")
USAGES = ("Public", "Private", "Ignored")
PUBLIC, PRIVATE, IGNORED = 0, 1, 2


@dataclass(frozen=True)
class EvalTransform:
    """What checkpoint scoring feeds a model by default: resize to ``size``, scale to [0,1], normalize."""

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Limits:
    """What a submission may cost. Sizes in bytes, times in seconds."""

    max_csv_bytes: int = 20 * 1024 * 1024
    max_checkpoint_bytes: int = 600 * 1024 * 1024
    inference_timeout_s: float = 900.0
    inference_memory_bytes: int = 12 * 1024**3
    min_input_size: int = 16
    max_input_size: int = 512


PUBLIC_BOARD_MODES = ("exact", "rounded", "ladder")
MEDALS = ("gold", "silver", "bronze")


@dataclass(frozen=True)
class PublicBoard:
    """How public scores are shown before the reveal (probing protection).

    ``"exact"``: as computed; ``"rounded"``: to ``decimals``; ``"ladder"`` (Blum & Hardt 2015):
    a team's shown score changes only when a submission beats the shown one by more than ``step``
    (``None``: 1/sqrt(public rows)), and is shown rounded to the step. See
    ``harness.honest.shown_scores``.
    """

    mode: str = "exact"
    decimals: int = 4
    step: float | None = None

    def step_for(self, public_rows: int) -> float:
        from harness.honest import ladder_step

        return self.step if self.step is not None else ladder_step(public_rows)

    def shown(self, scores_in_order, public_rows: int, higher_is_better: bool = True):
        """The shown value after each of one team's submissions (``harness.honest.shown_scores``)."""
        from harness.honest import shown_scores

        step = self.step_for(public_rows) if self.mode == "ladder" else None
        return shown_scores(scores_in_order, self.mode, decimals=self.decimals, step=step,
                            higher_is_better=higher_is_better)


@dataclass(frozen=True)
class Competition:
    root: Path
    name: str
    title: str
    classes: tuple[str, ...]
    primary_metric: str = "accuracy"
    public_fraction: float = 0.3
    daily_limit: int = 5
    final_selections: int = 2
    deadline: dt.datetime | None = None
    dataset: str = ""
    eval_transform: EvalTransform = field(default_factory=EvalTransform)
    limits: Limits = field(default_factory=Limits)
    # Architectures a checkpoint may name, as "library/arch" or "library/*"; empty means every
    # classification model of torchvision and timm.
    allowed_archs: tuple[str, ...] = ()
    public_board: PublicBoard = field(default_factory=PublicBoard)
    # Medals as (name, top fraction of ranked teams), best first, e.g. (("gold", 0.1), ...); empty: none.
    medals: tuple[tuple[str, float], ...] = ()

    @property
    def medal_fractions(self) -> dict[str, float]:
        return dict(self.medals)
    # "npz" (one archive per split) or "image-folders" (image files plus a CSV manifest).
    data_format: str = "npz"
    # The test images are in private/, never given to teams: checkpoints only, CSVs refused.
    hidden_test: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def folders(self) -> bool:
        return self.data_format == "image-folders"

    @property
    def train_path(self) -> Path:
        """``public/train.npz``, or the ImageFolder root ``public/train`` for image folders."""
        return self.root / "public" / ("train" if self.folders else "train.npz")

    @property
    def train_manifest_path(self) -> Path:
        return self.root / "public" / "train.csv"

    @property
    def test_dir(self) -> Path:
        """The folder holding the test data: ``private/`` for a hidden test set, else ``public/``.

        A scoring worker's copy of a hidden test set has no private/ (the server sends it the test
        data as public/), so ``public/`` is used when ``private/`` holds none.
        """
        if self.hidden_test:
            private = self.root / "private"
            marker = "test.csv" if self.folders else "test.npz"
            if (private / marker).exists() or not (self.root / "public" / marker).exists():
                return private
        return self.root / "public"

    @property
    def test_path(self) -> Path:
        """``test.npz``, or the folder of test images for image folders."""
        return self.test_dir / ("test" if self.folders else "test.npz")

    @property
    def test_manifest_path(self) -> Path:
        return self.test_dir / "test.csv"

    @property
    def description_path(self) -> Path:
        return self.root / "description.md"

    @property
    def sample_submission_path(self) -> Path:
        return self.root / "public" / "sample_submission.csv"

    @property
    def solution_path(self) -> Path:
        return self.root / "private" / "solution.csv"

    def is_late(self, when: dt.datetime) -> bool:
        return self.deadline is not None and when > self.deadline


@dataclass(frozen=True, eq=False)
class Solution:
    """The hidden answers, in the row order of ``public/test.npz``. Never leaves the server."""

    ids: tuple[str, ...]
    labels: np.ndarray  # int64 [M], -1 for Ignored rows
    usage: np.ndarray  # int8 [M]: PUBLIC, PRIVATE or IGNORED
    # A hidden test set: prediction CSVs are refused (the teams never saw the images).
    hidden_test: bool = False

    @cached_property
    def index(self) -> dict[str, int]:
        return {id_: row for row, id_ in enumerate(self.ids)}

    @cached_property
    def scored(self) -> np.ndarray:
        return self.usage != IGNORED

    def __len__(self) -> int:
        return len(self.ids)


def _float_triple(value, what: str) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)):
        raise CompetitionError(f"competition.toml: {what} must be a list of three numbers, got {value!r}.")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _table(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise CompetitionError(f"competition.toml: [{key}] must be a table of settings, got {value!r}.")
    return value


def _number(table: dict, key: str, default: float, what: str, whole: bool = False, zero_ok: bool = False) -> float:
    """``table[key]`` (or ``default``), checked: a number (a whole one when ``whole``), above 0 (or 0 when ``zero_ok``)."""
    value = table.get(key, default)
    if not _is_number(value) or (whole and not float(value).is_integer()) or not (value >= 0 if zero_ok else value > 0):
        kind = "a whole number" if whole else "a number"
        raise CompetitionError(f"competition.toml: {what} must be {kind} {'of 0 or more' if zero_ok else 'above 0'}, got {value!r}.")
    return value


def _public_board(data: dict, where: Path) -> PublicBoard:
    value = data.get("public_board", "exact")
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        raise CompetitionError(
            f'{where}: public_board must be "exact", "rounded" or "ladder" (or a table such as '
            f'{{ mode = "rounded", decimals = 3 }}), got {value!r}.'
        )
    mode = value.get("mode", "exact")
    if mode not in PUBLIC_BOARD_MODES:
        raise CompetitionError(f"{where}: public_board mode {mode!r} is not one of {', '.join(PUBLIC_BOARD_MODES)}.")
    allowed = {"exact": {"mode"}, "rounded": {"mode", "decimals"}, "ladder": {"mode", "step"}}[mode]
    extra = sorted(set(value) - allowed)
    if extra:
        raise CompetitionError(
            f"{where}: public_board {mode!r} takes {', '.join(sorted(allowed - {'mode'})) or 'no other setting'}, "
            f"not {', '.join(extra)}."
        )
    decimals = value.get("decimals", 4)
    if not (_is_number(decimals) and float(decimals).is_integer() and 0 <= decimals <= 10):
        raise CompetitionError(f"{where}: public_board.decimals must be a whole number from 0 to 10, got {decimals!r}.")
    step = value.get("step")
    if step is not None and not (_is_number(step) and 0 < step < 1):
        raise CompetitionError(f"{where}: public_board.step must be a number between 0 and 1 (a score step), got {step!r}.")
    return PublicBoard(mode=mode, decimals=int(decimals), step=None if step is None else float(step))


def _medals(data: dict, where: Path) -> tuple[tuple[str, float], ...]:
    value = data.get("medals")
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        raise CompetitionError(
            f"{where}: medals must be a table of top fractions such as "
            f"{{ gold = 0.1, silver = 0.2, bronze = 0.4 }}, got {value!r}."
        )
    unknown = sorted(set(value) - set(MEDALS))
    if unknown:
        raise CompetitionError(f"{where}: medals knows gold, silver and bronze, not {', '.join(unknown)}.")
    out = []
    for name in MEDALS:
        if name in value:
            fraction = value[name]
            if not (_is_number(fraction) and 0 < fraction <= 1):
                raise CompetitionError(
                    f"{where}: medals.{name} must be a fraction of ranked teams above 0 and at most 1, got {fraction!r}."
                )
            if out and fraction < out[-1][1]:
                raise CompetitionError(
                    f"{where}: medals.{name} ({fraction:g}) is below medals.{out[-1][0]} ({out[-1][1]:g}); each medal's "
                    "top fraction includes the better medals, so gold <= silver <= bronze."
                )
            out.append((name, float(fraction)))
    return tuple(out)


def load_competition(directory: str | Path) -> Competition:
    """Read ``<directory>/competition.toml`` into a ``Competition``; errors name the fix."""
    root = Path(directory)
    toml_path = root / "competition.toml"
    if not toml_path.is_file():
        raise CompetitionError(
            f"{root} is not a competition directory: {toml_path} does not exist. "
            "Build one with `podium init digits --root DIR` (or cifar10) and pass "
            "--competition DIR/<name>."
        )
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CompetitionError(f"{toml_path} is not valid TOML: {exc}") from None
    try:
        raw_classes = data["classes"]
        name = str(data["name"])
    except KeyError as exc:
        raise CompetitionError(f"{toml_path} lacks the required setting {exc.args[0]!r}.") from None
    if not isinstance(raw_classes, list):
        raise CompetitionError(f"{toml_path}: classes must be a list of names, got {raw_classes!r}.")
    classes = tuple(str(c) for c in raw_classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise CompetitionError(f"{toml_path}: classes must be at least two distinct names.")
    primary = data.get("primary_metric", "accuracy")
    if primary not in METRICS:
        raise CompetitionError(
            f"{toml_path}: primary_metric {primary!r} is not one of {', '.join(METRICS)}."
        )
    deadline = data.get("deadline")
    if deadline is not None:
        if not isinstance(deadline, dt.datetime):
            raise CompetitionError(
                f"{toml_path}: deadline must be a TOML date-time such as 2026-12-31T23:59:00Z."
            )
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=dt.timezone.utc)
    et = _table(data, "eval_transform")
    eval_transform = EvalTransform(
        size=int(_number(et, "size", 224, "eval_transform.size", whole=True)),
        mean=_float_triple(et.get("mean", [0.485, 0.456, 0.406]), "eval_transform.mean"),
        std=_float_triple(et.get("std", [0.229, 0.224, 0.225]), "eval_transform.std"),
    )
    lim = _table(data, "limits")
    defaults = Limits()
    limits = Limits(
        max_csv_bytes=int(_number(lim, "max_csv_mb", defaults.max_csv_bytes / 2**20, "limits.max_csv_mb") * 2**20),
        max_checkpoint_bytes=int(
            _number(lim, "max_checkpoint_mb", defaults.max_checkpoint_bytes / 2**20, "limits.max_checkpoint_mb") * 2**20
        ),
        inference_timeout_s=float(
            _number(lim, "inference_timeout_s", defaults.inference_timeout_s, "limits.inference_timeout_s")
        ),
        inference_memory_bytes=int(
            _number(lim, "inference_memory_gb", defaults.inference_memory_bytes / 2**30, "limits.inference_memory_gb")
            * 2**30
        ),
        min_input_size=int(_number(lim, "min_input_size", defaults.min_input_size, "limits.min_input_size", whole=True)),
        max_input_size=int(_number(lim, "max_input_size", defaults.max_input_size, "limits.max_input_size", whole=True)),
    )
    allowed_archs = data.get("allowed_archs", [])
    if not (isinstance(allowed_archs, list) and all(isinstance(a, str) for a in allowed_archs)):
        raise CompetitionError(
            f"{toml_path}: allowed_archs must be a list of strings such as \"torchvision/resnet50\", got {allowed_archs!r}."
        )
    data_format = data.get("data_format", "npz")
    if data_format not in DATA_FORMATS:
        raise CompetitionError(f"{toml_path}: data_format {data_format!r} is not one of {', '.join(DATA_FORMATS)}.")
    hidden_test = data.get("hidden_test", False)
    if not isinstance(hidden_test, bool):
        raise CompetitionError(f"{toml_path}: hidden_test must be true or false, got {hidden_test!r}.")
    return Competition(
        root=root,
        name=name,
        title=str(data.get("title", name)),
        classes=classes,
        primary_metric=primary,
        public_fraction=float(_number(data, "public_fraction", 0.3, "public_fraction")),
        daily_limit=int(_number(data, "daily_limit", 5, "daily_limit", whole=True, zero_ok=True)),
        final_selections=int(_number(data, "final_selections", 2, "final_selections", whole=True, zero_ok=True)),
        deadline=deadline,
        dataset=str(data.get("dataset", "")),
        eval_transform=eval_transform,
        limits=limits,
        allowed_archs=tuple(allowed_archs),
        public_board=_public_board(data, toml_path),
        medals=_medals(data, toml_path),
        data_format=data_format,
        hidden_test=hidden_test,
    )


def load_solution(competition: Competition) -> Solution:
    """Read ``private/solution.csv`` (Kaggle's id,label,Usage) in test.npz row order."""
    path = competition.solution_path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompetitionError(
            f"{path} is missing: this competition has no answers to score against."
        ) from None
    class_index = {name: i for i, name in enumerate(competition.classes)}
    usage_index = {name: i for i, name in enumerate(USAGES)}
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != ["id", "label", "Usage"]:
        raise CompetitionError(f"{path}: the header must be id,label,Usage.")
    ids: list[str] = []
    labels = np.empty(len(rows) - 1, dtype=np.int64)
    usage = np.empty(len(rows) - 1, dtype=np.int8)
    for row_no, row in enumerate(rows[1:]):
        try:
            id_, label, use = row
            usage[row_no] = usage_index[use]
            labels[row_no] = -1 if usage[row_no] == IGNORED else class_index[label]
        except (ValueError, KeyError):
            raise CompetitionError(f"{path}: line {row_no + 2} is not a valid solution row: {row!r}.") from None
        ids.append(id_)
    return Solution(ids=tuple(ids), labels=labels, usage=usage, hidden_test=competition.hidden_test)


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays from one of the competition's .npz files, never with pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys}
    except FileNotFoundError:
        raise CompetitionError(f"{path} is missing; rebuild the competition with `podium init`.") from None
    except KeyError as exc:
        raise CompetitionError(f"{path} lacks the array {exc.args[0]!r}.") from None


def load_train(competition: Competition) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,H,W,3], labels int64 [N]): the whole training set in memory."""
    if competition.folders:
        from harness.imagefolder import load_train_folder

        return load_train_folder(competition)
    arrays = load_npz(competition.train_path, ("images", "labels"))
    return arrays["images"], arrays["labels"]


def load_test_ids(competition: Competition) -> np.ndarray:
    """The test ids (str [M]) in solution row order, without the images: test.npz's ``ids``, or the
    image folders' ``test.csv``. Where the test set is hidden they are in private/."""
    if competition.folders:
        from harness.imagefolder import held_out_image_files

        return np.asarray(held_out_image_files(competition)[0])
    return load_npz(competition.test_path, ("ids",))["ids"]


def load_test(competition: Competition) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [M,H,W,3], ids str [M]) in solution row order: the whole test set in memory.

    Checkpoint scoring streams instead (``harness.imagefolder.iter_test_batches``).
    """
    if competition.folders:
        from harness.imagefolder import load_test_folder

        return load_test_folder(competition)
    arrays = load_npz(competition.test_path, ("images", "ids"))
    return arrays["images"], arrays["ids"]
