"""``podium kaggle export``: what a Kaggle Community competition needs, from a podium competition.

The bundle (a new folder)::

    BUNDLE/solution.csv             id,label,Usage: private/solution.csv unchanged (Public/Private/Ignored)
    BUNDLE/sample_submission.csv    id,label: the competition's own sample submission
    BUNDLE/data/                    every public data file, folders included: train.npz, test.npz and
                                    sample_submission.csv (npz), or train/<class>/..., train.csv,
                                    test/..., test.csv and sample_submission.csv (image-folders);
                                    and classes.csv (index,name), the label of each class index
    BUNDLE/description.md           overview, the data files as exported, submission format, evaluation

The meaning is unchanged: the same ids, labels and Usage split, so Kaggle scores a submission on
the same rows podium does, with the metric named in the evaluation section.

A hidden test set (``hidden_test = true``) is refused: a Kaggle Community competition scores
prediction CSVs, so its participants must have the test images, and exporting them would publish
what the organizer chose to hide. ``publish_hidden_test`` (``--publish-hidden-test``) exports them
anyway (test.npz, or test/ and test.csv, from private/) with a sample submission written from their
ids, for an organizer who runs the hidden competition on podium and a public one on Kaggle.
"""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np

from harness.competition import Competition, load_competition, load_test_ids
from harness.errors import PodiumError
from harness.metrics import get_metric
from harness.pages import scan_public


def _usage_counts(solution_csv: Path) -> dict[str, int]:
    counts = {"Public": 0, "Private": 0, "Ignored": 0}
    with open(solution_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            counts[row["Usage"]] = counts.get(row["Usage"], 0) + 1
    return counts


def _data_lines(competition: Competition) -> list[str]:
    """The Data section: the files as exported, in the competition's own format."""
    if competition.folders:
        size = competition.eval_transform.size
        return [
            f"- `train/<class>/<file>`: the training images ({size} x {size} RGB), one folder per class "
            "(torchvision's ImageFolder layout: the class folders in sorted order are the class indices).",
            "- `train.csv`: `file,label`, every training image (its path under the data folder) and its class.",
            "- `test/<id>.<ext>`: the test images, each named by its id.",
            "- `test.csv`: `id,file`, every test id and its image.",
            "- `sample_submission.csv`: a submission in the right format.",
            "- `classes.csv`: `index,name`, the class name of each label index.",
            "",
            "Load the training images with `torchvision.datasets.ImageFolder(\"train\")`; predict one label per "
            "row of `test.csv`.",
        ]
    return [
        "- `train.npz`: `images` (uint8, N x H x W x 3) and `labels` (int64, the class index).",
        "- `test.npz`: `images` and `ids` (the id of each test image).",
        "- `sample_submission.csv`: a submission in the right format.",
        "- `classes.csv`: `index,name`, the class name of each label index.",
        "",
        "Load them with `numpy.load(path)`.",
    ]


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
        *_data_lines(competition),
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


HIDDEN_TEST_REFUSED = (
    "{root} keeps its test set hidden (hidden_test = true), and a Kaggle Community competition scores prediction "
    "CSVs, so its participants would need the test images. Nothing was exported. To run it on Kaggle anyway, "
    "publishing the test images there, add --publish-hidden-test; or build a competition without --hidden-test."
)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)  # a copy, never a link: editing the bundle must not touch the competition


def _export_hidden_test(competition: Competition, data: Path, out: Path) -> None:
    """The test data from private/ into ``data`` (the worker archive's layout), and a sample submission."""
    from harness.submission import write_predictions_csv

    if competition.folders:
        from harness.imagefolder import held_out_image_files

        _copy(competition.test_manifest_path, data / "test.csv")
        for path in held_out_image_files(competition)[1]:
            _copy(path, data / path.relative_to(competition.test_dir))
    else:
        _copy(competition.test_path, data / "test.npz")
    ids = load_test_ids(competition)
    write_predictions_csv(data / "sample_submission.csv", ids, np.zeros(len(ids), dtype=np.int64), competition.classes)
    shutil.copyfile(data / "sample_submission.csv", out / "sample_submission.csv")


def export_competition(competition_dir: Path, out: Path, publish_hidden_test: bool = False) -> Path:
    """Write the bundle to ``out`` (which must not exist yet, or be an empty folder); returns ``out``."""
    competition = load_competition(competition_dir)
    if get_metric(competition.primary_metric).kaggle is None:
        raise PodiumError(f"Kaggle has no metric that matches {competition.primary_metric!r} (the primary_metric "
                          "of competition.toml); choose another primary_metric to export this competition.")
    solution = competition.solution_path
    if not solution.is_file():
        raise PodiumError(f"{solution} is missing: exporting needs the organizer's copy of the competition "
                          "(with private/solution.csv).")
    if competition.hidden_test and not publish_hidden_test:
        raise PodiumError(HIDDEN_TEST_REFUSED.format(root=competition.root))
    if publish_hidden_test and not competition.hidden_test:
        raise PodiumError(f"{competition.root} has no hidden test set: its test data is public already; "
                          "drop --publish-hidden-test.")
    if publish_hidden_test and not competition.test_manifest_path.is_file() and not competition.test_path.is_file():
        raise PodiumError(f"{competition.test_dir} holds no test data to publish; export from the organizer's copy.")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PodiumError(f"{out} already exists and is not an empty folder; choose a new --out.")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(solution, out / "solution.csv")
    public = competition.root / "public"
    for relative, _ in scan_public(public)[0]:
        _copy(public / relative, data / relative)
    if competition.hidden_test:
        _export_hidden_test(competition, data, out)
    else:
        shutil.copyfile(competition.sample_submission_path, out / "sample_submission.csv")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "name"])
    writer.writerows(enumerate(competition.classes))
    (data / "classes.csv").write_text(text.getvalue(), encoding="utf-8")
    (out / "description.md").write_text(description(competition, _usage_counts(solution)), encoding="utf-8")
    return out
