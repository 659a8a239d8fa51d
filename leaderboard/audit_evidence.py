"""The organizer's audit, gathered from the database and the stored files (read only).

Evidence, not verdicts (``harness.audit``): pairs of teams sharing wrong answers far beyond chance,
byte-identical files sent by different teams, a team's checkpoint and CSV that disagree, and
scores implausibly far above the reference with a public/private gap beyond the noise. Used by
``podium audit`` and the organizer's page ``/admin/audit``. The private rows are used (the
organizer sees everything); nothing here is ever shown to a team.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from harness import audit
from harness.competition import PRIVATE, PUBLIC
from harness.errors import PodiumError
from harness.scoring import score_predictions
from harness.submission import parse_csv_submission
from harness.metrics import get_metric
from leaderboard.extensions import db
from leaderboard.honest_board import ranked_predictions
from leaderboard.models import Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import public_best
from leaderboard.state import current_competition, current_solution

MAX_SHARE = 0.02  # a checkpoint and a CSV of one team that disagree on more of the rows are flagged

SECTIONS = (
    ("shared_errors", "Shared wrong answers"),
    ("duplicate_file", "Identical files from different teams"),
    ("checkpoint_csv", "Checkpoint against CSV"),
    ("implausible_score", "Implausible scores"),
)


@dataclass
class AuditReport:
    teams: int
    rows: int
    baseline: float
    baseline_how: str
    evidence: dict[str, list[audit.Evidence]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # teams whose predictions could not be read
    max_share: float = MAX_SHARE

    def flagged(self) -> int:
        return sum(e.flagged for items in self.evidence.values() for e in items)


def reference_score(path: str | Path) -> float:
    """The public score of a reference model's predictions CSV (``podium baseline``'s
    ``predictions.csv``), scored like any upload: the organizer's "reference baseline"."""
    path = Path(path)
    limit = current_competition().limits.max_csv_bytes
    try:
        size = path.stat().st_size
        if size > limit:
            raise PodiumError(f"{path} is {size} bytes, more than the competition's CSV limit ({limit} bytes).")
        data = path.read_bytes()
    except OSError as exc:
        raise PodiumError(f"{path}: cannot read the reference predictions ({exc.strerror}).") from None
    predictions = parse_csv_submission(data, current_solution(), current_competition().classes)
    return float(score_predictions(predictions, current_solution(), current_competition()).primary("public"))


def gather(baseline: float | None = None, alpha: float = audit.ALPHA, max_share: float = MAX_SHARE,
           baseline_how: str | None = None) -> AuditReport:
    """All the evidence for the current competition. ``baseline``: the reference score (default:
    the median of the teams' best public scores, a typical team); ``baseline_how`` says where a
    given one came from; ``max_share``: the checkpoint-against-CSV disagreement that is flagged."""
    competition = current_competition()
    solution = current_solution()
    scored = np.isin(solution.usage, (PUBLIC, PRIVATE))
    best = public_best()
    names = {r.team_id: r.name for r in best}
    preds = ranked_predictions([r.id for r in best])
    usable = [r for r in best if r.id in preds]
    left_out = [r.name for r in best if r.id not in preds]
    evidence: dict[str, list[audit.Evidence]] = {key: [] for key, _ in SECTIONS}
    if len(usable) >= 2:
        matrix = np.stack([preds[r.id][scored] for r in usable])
        evidence["shared_errors"] = audit.shared_errors(matrix, solution.labels[scored], [r.name for r in usable],
                                                        competition.num_classes, alpha=alpha)
    team_names = dict(db.session.execute(sa.select(Team.id, Team.name)).all())
    files = db.session.execute(sa.select(Submission.id, Submission.team_id, Submission.sha256)).all()
    evidence["duplicate_file"] = audit.duplicate_files(
        (team_names[team_id], f"submission {sub_id}", sha) for sub_id, team_id, sha in files)
    # each team's latest scored checkpoint against its latest scored CSV
    latest: dict[tuple[int, str], int] = {}
    for sub_id, team_id, kind in db.session.execute(
            sa.select(Submission.id, Submission.team_id, Submission.kind)
            .where(Submission.status == SubmissionStatus.SCORED).order_by(Submission.created_at, Submission.id)):
        latest[(team_id, kind)] = sub_id
    pairs = [(team_id, latest[(team_id, "checkpoint")], sub_id) for (team_id, kind), sub_id in latest.items()
             if kind == "csv" and (team_id, "checkpoint") in latest]
    pair_preds = ranked_predictions([i for _, a, b in pairs for i in (a, b)]) if pairs else {}
    for team_id, ckpt, csv in sorted(pairs):
        if ckpt in pair_preds and csv in pair_preds:
            evidence["checkpoint_csv"].append(audit.checkpoint_csv_mismatch(
                team_names[team_id], pair_preds[ckpt][scored], pair_preds[csv][scored], max_share=max_share))
    public_rows = int(np.count_nonzero(solution.usage == PUBLIC))
    private_rows = int(np.count_nonzero(solution.usage == PRIVATE))
    if baseline is None:
        baseline = float(np.median([r.public_score for r in best])) if best else 0.0
        baseline_how = "the median of the teams' best public scores (a typical team; set --baseline for your reference model)"
    else:
        baseline_how = baseline_how or "given by the organizer"
    private = dict(db.session.execute(
        sa.select(Submission.id, Submission.private_score).where(Submission.id.in_([r.id for r in best]))).all())
    with_private = [r for r in best if private.get(r.id) is not None]
    if with_private:
        evidence["implausible_score"] = audit.implausible_scores(
            [names[r.team_id] for r in with_private], [r.public_score for r in with_private],
            [private[r.id] for r in with_private], public_rows, private_rows, baseline,
            higher_is_better=get_metric(competition.primary_metric).higher_is_better)
    return AuditReport(teams=len(best), rows=int(scored.sum()), baseline=baseline, baseline_how=baseline_how,
                       evidence=evidence, left_out=left_out, max_share=max_share)


def format_evidence(e: audit.Evidence) -> str:
    """One line of numbers for the command line."""
    parts = []
    for key, value in e.numbers.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, list):
            parts.append(f"{key}=" + ",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value))
        else:
            parts.append(f"{key}={value}")
    p = "" if e.p_value is None else f"  p={e.p_value:.3g}"
    flag = "FLAGGED " if e.flagged else ""
    return f"{flag}{' / '.join(e.teams)}{p}  " + " ".join(parts)
