"""``podium evaluate``: score a drop-box folder ``DIR/<team>/<file>`` with no server.

Teams are ranked by their best public primary score; a tie goes to the team whose best file
came first (modification time, then file name). Refused files are listed with their messages
and never stop the run.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from harness.competition import Competition, load_solution
from harness.errors import PodiumError
from harness.metrics import get_metric
from harness.scoring import ScoreReport, score_file


@dataclass
class Scored:
    team: str
    path: Path
    mtime: float
    report: ScoreReport


@dataclass
class Refused:
    team: str
    path: Path
    messages: list[str]


@dataclass
class Standing:
    rank: int
    team: str
    best: Scored
    entries: int


@dataclass
class Evaluation:
    primary_metric: str
    standings: list[Standing] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def submission_files(directory: Path) -> list[tuple[str, Path]]:
    """(team, file) for every regular file one level below each team folder; hidden files and
    README files are skipped."""
    found = []
    for team_dir in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(team_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and not path.name.lower().startswith("readme"):
                found.append((team_dir.name, path))
    return found


def evaluate_folder(
    directory: str | Path, competition: Competition, device: str | None = None, progress: bool = True
) -> Evaluation:
    directory = Path(directory)
    if not directory.is_dir():
        raise PodiumError(f"{directory} is not a folder; expected DIR/<team>/<submission file>.")
    solution = load_solution(competition)
    result = Evaluation(primary_metric=competition.primary_metric)
    scored: dict[str, list[Scored]] = {}
    files = submission_files(directory)
    for team, path in tqdm(files, desc="scoring", unit="file", disable=not progress or len(files) < 20):
        try:
            report = score_file(path, competition, solution=solution, device=device)
        except PodiumError as exc:
            result.refused.append(Refused(team, path, exc.messages))
            continue
        scored.setdefault(team, []).append(Scored(team, path, path.stat().st_mtime, report))

    better = 1 if get_metric(competition.primary_metric).higher_is_better else -1

    def sort_key(s: Scored):
        return (-better * s.report.primary("public"), s.mtime, s.path.name)

    bests = [(min(entries, key=sort_key), len(entries)) for entries in scored.values()]
    bests.sort(key=lambda pair: sort_key(pair[0]))
    result.standings = [Standing(i + 1, best.team, best, n) for i, (best, n) in enumerate(bests)]
    return result


FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and their full-width forms
LEADING_BLANKS = " \t\r\n\x0b\x0c\u00a0\u3000"


def formula_safe(cell: str) -> str:
    """A CSV cell that spreadsheets will not run as a formula: one starting with a formula character,
    also after leading spaces or line breaks (spreadsheets skip them), or with a tab or line break."""
    if cell[:1] in ("\t", "\r", "\n") or cell.lstrip(LEADING_BLANKS)[:1] in FORMULA_STARTS:
        return "'" + cell
    return cell


def write_leaderboard_csv(evaluation: Evaluation, path: str | Path) -> None:
    metric = evaluation.primary_metric
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["rank", "team", f"public_{metric}", "ci_low", "ci_high", f"private_{metric}", "entries", "file"])
        for s in evaluation.standings:
            pub = s.best.report.public
            out.writerow(
                [
                    s.rank,
                    formula_safe(s.team),
                    f"{pub.metric(metric):.5f}",
                    f"{pub.ci_low:.5f}",
                    f"{pub.ci_high:.5f}",
                    f"{s.best.report.private.metric(metric):.5f}",
                    s.entries,
                    formula_safe(s.best.path.name),
                ]
            )
