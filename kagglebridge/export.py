"""``podium kaggle export``: what a Kaggle Community competition needs, from a podium competition.

The bundle (a new folder)::

    BUNDLE/solution.csv             id,label,Usage: private/solution.csv unchanged (Public/Private/Ignored)
    BUNDLE/sample_submission.csv    id,label: the competition's own sample submission
    BUNDLE/data/                    the public data files (train.npz, test.npz, sample_submission.csv)
                                    and classes.csv (index,name), the label of each class index
    BUNDLE/description.md           overview, data, submission format and the evaluation section

The meaning is unchanged: the same ids, labels and Usage split, so Kaggle scores a submission on
the same rows podium does, with the metric named in the evaluation section.
"""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from harness.competition import Competition, load_competition
from harness.errors import PodiumError
from harness.metrics import get_metric


def _usage_counts(solution_csv: Path) -> dict[str, int]:
    counts = {"Public": 0, "Private": 0, "Ignored": 0}
    with open(solution_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            counts[row["Usage"]] = counts.get(row["Usage"], 0) + 1
    return counts


def description(competition: Competition, counts: dict[str, int]) -> str:
    metric = get_metric(competition.primary_metric)
    scored = counts["Public"] + counts["Private"]
    share = counts["Public"] / scored if scored else 0.0
    classes = ", ".join(f"`{c}`" for c in competition.classes)
    lines = [
        f"# {competition.title}",
        "",
        "## Overview",
        "",
        f"Classify each test image into one of {competition.num_classes} classes: {classes}.",
        "",
        "## Data",
        "",
        "- `train.npz`: `images` (uint8, N x H x W x 3) and `labels` (int64, the class index).",
        "- `test.npz`: `images` and `ids` (the id of each test image).",
        "- `sample_submission.csv`: a submission in the right format.",
        "- `classes.csv`: `index,name`, the class name of each label index.",
        "",
        "Load them with `numpy.load(path)`.",
        "",
        "## Submission format",
        "",
        "A CSV with the header `id,label` and one row per test id; `label` is the class name "
        "(as in `sample_submission.csv`).",
        "",
        "## Evaluation",
        "",
        f"Submissions are scored with **{metric.kaggle}**: {metric.description.replace('**', '')} "
        f"(scikit-learn's {metric.sklearn}).",
        "",
        f"The leaderboard is computed on {counts['Public']} of the {scored} scored test rows "
        f"({share:.0%}, the public leaderboard); the final standings use the other {counts['Private']} rows "
        "(the private leaderboard), shown when the competition ends.",
    ]
    if counts["Ignored"]:
        lines.append(f"{counts['Ignored']} test images are decoys that are not scored; predict them anyway.")
    lines += [
        "",
        f"Each team may submit {competition.daily_limit} times per day (UTC) and choose "
        f"{competition.final_selections} final submissions for the private leaderboard.",
        "",
        f"(Exported from the podium competition `{competition.name}`; `solution.csv` holds its answers "
        "with Kaggle's `Usage` column unchanged.)",
        "",
    ]
    return "\n".join(lines)


def export_competition(competition_dir: Path, out: Path) -> Path:
    """Write the bundle to ``out`` (which must not exist yet, or be an empty folder); returns ``out``."""
    competition = load_competition(competition_dir)
    if get_metric(competition.primary_metric).kaggle is None:
        raise PodiumError(f"Kaggle has no metric that matches {competition.primary_metric!r} (the primary_metric "
                          "of competition.toml); choose another primary_metric to export this competition.")
    solution = competition.solution_path
    if not solution.is_file():
        raise PodiumError(f"{solution} is missing: exporting needs the organizer's copy of the competition "
                          "(with private/solution.csv).")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PodiumError(f"{out} already exists and is not an empty folder; choose a new --out.")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(solution, out / "solution.csv")
    shutil.copyfile(competition.sample_submission_path, out / "sample_submission.csv")
    for path in sorted((competition.root / "public").iterdir()):
        if path.is_file() and not path.name.startswith("."):
            shutil.copyfile(path, data / path.name)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "name"])
    writer.writerows(enumerate(competition.classes))
    (data / "classes.csv").write_text(text.getvalue(), encoding="utf-8")
    (out / "description.md").write_text(description(competition, _usage_counts(solution)), encoding="utf-8")
    return out
