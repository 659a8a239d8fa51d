"""What a viewer may see of a submission: rounded public scores always, private ones after reveal."""
from __future__ import annotations

from leaderboard.models import Submission
from leaderboard.ranking import ROUND


def _rounded(value):
    if isinstance(value, float):
        return round(value, ROUND)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def visible_result(submission: Submission, revealed: bool) -> dict | None:
    """The score report a participant may see: the public split (and private + all after reveal).

    Before reveal "all" is withheld too: with the public part known it would give the private one away.
    """
    if submission.result_json is None:
        return None
    splits = ("public", "private", "all") if revealed else ("public",)
    out = {"primary_metric": submission.result_json.get("primary_metric")}
    for split in splits:
        if split in submission.result_json:
            out[split] = _rounded(submission.result_json[split])
    return out


def submission_dict(submission: Submission, revealed: bool, owner_view: bool) -> dict:
    out = {
        "id": submission.id,
        "team": submission.team.slug,
        "kind": submission.kind,
        "status": submission.status,
        "messages": list(submission.messages or []),
        "created_at": submission.created_at.isoformat(),
        "late": submission.late,
        "selected": submission.selected,
        "public_score": None if submission.public_score is None else round(submission.public_score, ROUND),
        "public_ci": [
            None if v is None else round(v, ROUND) for v in (submission.public_ci_low, submission.public_ci_high)
        ],
        "counts_toward_limit": submission.counts_toward_limit,
        "result": visible_result(submission, revealed),
        "has_history": submission.history_csv is not None,
    }
    if owner_view:
        out["note"] = submission.note
        out["original_name"] = submission.original_name
        out["sha256"] = submission.sha256
    if revealed:
        out["private_score"] = None if submission.private_score is None else round(submission.private_score, ROUND)
    return out
