"""Reference implementations the tests and benchmarks hold podium's fast paths to (never used in production).

Each is the straightforward way a competent user would write the same thing: the naive board
(every submission loaded and ranked in Python), the per-image torchvision inference transform,
and the course notes' training transform with torchvision's own random classes. Importable by
``tests/`` and ``benchmarks/`` alike (both run with the repository root on ``sys.path``).
"""
from __future__ import annotations

from typing import Callable


def naive_board(revealed: bool = False):
    """The reference: every submission loaded as an object and ranked in Python."""
    import sqlalchemy as sa

    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team
    from leaderboard.protocol import SubmissionStatus
    from leaderboard.ranking import Board, BoardRow
    from leaderboard.state import current_competition

    competition = current_competition()
    teams = {t.id: t for t in db.session.scalars(sa.select(Team))}
    by_team: dict[int, list[Submission]] = {}
    for sub in db.session.scalars(sa.select(Submission)):
        by_team.setdefault(sub.team_id, []).append(sub)
    best = []
    for team_id, subs in by_team.items():
        ranked = [s for s in subs if s.status == SubmissionStatus.SCORED and not s.late]
        if not ranked:
            continue
        top = min(ranked, key=lambda s: (-s.public_score, s.created_at, s.id))
        best.append((top, team_id, len(subs), max(s.created_at for s in subs)))
    best.sort(key=lambda b: (-b[0].public_score, b[0].created_at, b[0].id))
    rows = tuple(
        BoardRow(rank=i + 1, team_id=t, team_name=teams[t].name, team_slug=teams[t].slug, submission_id=s.id,
                 score=s.public_score, ci_low=s.public_ci_low, ci_high=s.public_ci_high, submitted_at=s.created_at,
                 entries=n, last_at=last)
        for i, (s, t, n, last) in enumerate(best)
    )
    return Board(metric=competition.primary_metric, revealed=revealed, rows=rows)


def reference_transform(spec) -> Callable:
    """The naive per-image inference pipeline (for ``harness.checkpoint.policy.InputSpec``):
    torchvision transforms v2, as a data loader would apply it."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((spec.size, spec.size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        ]
    )


def course_train_transform(spec):
    """The course notes' training transform (for ``baseline.transforms.TransformSpec``) with
    torchvision's own random classes, for a CHW uint8 tensor."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((spec.size, spec.size), antialias=True),
            v2.RandomCrop(spec.size, padding=spec.padding),
            v2.RandomHorizontalFlip(spec.hflip),
            v2.Normalize(list(spec.mean), list(spec.std)),
        ]
    )
