"""`podium evaluate`: a drop-box folder is scored, ranked (ties: earlier file wins) and bad files listed."""
from __future__ import annotations

import csv
import os
import subprocess

import pytest

from harness.evaluate import evaluate_folder
from tests.conftest import PODIUM, noisy_predictions, write_submission


@pytest.fixture()
def dropbox(tmp_path, digits_solution):
    box = tmp_path / "submissions"
    ids = digits_solution.ids

    def put(team: str, name: str, accuracy: float | None, mtime: float, seed: int = 0, raw: bytes | None = None):
        (box / team).mkdir(parents=True, exist_ok=True)
        path = box / team / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            write_submission(path, ids, [str(p) for p in noisy_predictions(digits_solution, accuracy, seed)])
        os.utime(path, (mtime, mtime))
        return path

    put("alpha", "first.csv", 0.60, 1000, seed=1)
    put("alpha", "second.csv", 0.95, 2000, seed=2)
    put("bravo", "only.csv", 0.50, 1500, seed=3)
    # charlie and delta submit byte-identical files: same score; charlie's came first.
    put("delta", "same.csv", 0.75, 3000, seed=4)
    put("charlie", "same.csv", 0.75, 2500, seed=4)
    put("echo", "broken.csv", None, 1000, raw=b"id,label\nnope,3\n")
    put("echo", "notes.txt", None, 1000, raw=b"\x00\x01binary")
    (box / "README.md").write_text("drop-box")
    (box / "alpha" / ".DS_Store").write_bytes(b"\x00")
    return box


def test_ranking_ties_and_refusals(dropbox, digits_competition):
    result = evaluate_folder(dropbox, digits_competition, progress=False)
    teams = [s.team for s in result.standings]
    assert teams[0] == "alpha" and teams[-1] == "bravo"
    assert teams.index("charlie") == teams.index("delta") - 1
    scores = [s.best.report.primary("public") for s in result.standings]
    assert scores == sorted(scores, reverse=True)
    charlie, delta = (next(s for s in result.standings if s.team == t) for t in ("charlie", "delta"))
    assert charlie.best.report.public.accuracy == delta.best.report.public.accuracy
    alpha = result.standings[0]
    assert alpha.entries == 2 and alpha.best.path.name == "second.csv"
    assert [r.rank for r in result.standings] == [1, 2, 3, 4]
    refused = {(r.team, r.path.name): r.messages for r in result.refused}
    assert set(refused) == {("echo", "broken.csv"), ("echo", "notes.txt")}
    assert any('id "nope" is not a test image id' in m for m in refused[("echo", "broken.csv")])
    assert "echo" not in teams


def test_cli_prints_board_writes_csv_and_lists_refusals(dropbox, digits_competition, tmp_path):
    out_csv = tmp_path / "board.csv"
    out = subprocess.run(
        [*PODIUM, "evaluate", str(dropbox), "--competition", str(digits_competition.root), "--out", str(out_csv)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "2 file(s) refused" in out.stdout and "echo/broken.csv" in out.stdout
    lines = out.stdout.splitlines()
    assert lines[2].split()[:2] == ["1", "alpha"]
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["team"] for r in rows] == ["alpha", "charlie", "delta", "bravo"]
    assert float(rows[0]["ci_low"]) <= float(rows[0]["public_accuracy"]) <= float(rows[0]["ci_high"])


def test_formula_injection_is_escaped_in_the_csv(tmp_path, digits_competition, digits_solution):
    box = tmp_path / "box"
    (box / "=HYPERLINK(1)").mkdir(parents=True)
    write_submission(box / "=HYPERLINK(1)" / "@sum.csv", digits_solution.ids, ["1"] * len(digits_solution))
    out_csv = tmp_path / "board.csv"
    out = subprocess.run(
        [*PODIUM, "evaluate", str(box), "--competition", str(digits_competition.root), "--out", str(out_csv)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    with out_csv.open() as fh:
        (row,) = csv.DictReader(fh)
    assert row["team"] == "'=HYPERLINK(1)" and row["file"] == "'@sum.csv"


def test_missing_folder_is_a_user_error(tmp_path, digits_competition):
    out = subprocess.run(
        [*PODIUM, "evaluate", str(tmp_path / "nope"), "--competition", str(digits_competition.root)],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "is not a folder" in out.stderr
