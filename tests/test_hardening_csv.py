"""Issue 9: the CSV board ``podium evaluate --out`` writes neutralises a formula character also after
a leading space or line break (spreadsheets skip those), not only at the very start; a real run."""
from __future__ import annotations

import csv
import subprocess

from tests.conftest import PODIUM, noisy_predictions, write_submission

HOSTILE = [" =HYPERLINK(\"evil.example\",\"x\")", "\n=1+1", "\r\n+SUM(A1)", "  @cmd", "\u3000-2+3",
           "\uff1d1+1", "=plain"]
HARMLESS = ["Owls - the sequel", "team 2"]


def test_evaluate_csv_neutralises_formulas_after_leading_blanks(tmp_path, digits_competition, digits_solution):
    box = tmp_path / "box"
    for i, team in enumerate(HOSTILE + HARMLESS):
        folder = box / team
        folder.mkdir(parents=True)
        write_submission(folder / "s.csv", digits_solution.ids,
                         [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.5, seed=i)])
    out_csv = tmp_path / "board.csv"
    done = subprocess.run([*PODIUM, "evaluate", str(box), "--competition", str(digits_competition.root), "--out",
                           str(out_csv)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out_csv, newline="", encoding="utf-8") as fh:
        teams = [row["team"] for row in csv.DictReader(fh)]
    assert sorted(teams) == sorted(["'" + t for t in HOSTILE] + HARMLESS)
