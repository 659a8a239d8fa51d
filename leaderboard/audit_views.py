"""The organizer's audit page, ``/admin/audit``: the evidence and how each number was computed.

Organizer only (``admin_required``: a visitor or a team is sent to the organizer login; the JSON
form answers 401). The view parses the request and calls ``audit_evidence.gather``; it never writes.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from leaderboard.errors import error_response

from harness.errors import PodiumError
from leaderboard.audit_evidence import MAX_SHARE, SECTIONS, gather
from leaderboard.auth import admin_required

bp = Blueprint("audit", __name__)


def _share(name: str, example: str) -> float | None:
    """A number between 0 and 1 from the query string (``?baseline=0.85``, ``?max_share=0.05``), or None."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise PodiumError(f"The {name.replace('_', ' ')} must be a number such as {example}.") from None
    if not 0.0 <= number <= 1.0:
        raise PodiumError(f"The {name.replace('_', ' ')} must be between 0 and 1.")
    return number


def _report():
    max_share = _share("max_share", "0.02")
    return gather(_share("baseline", "0.85"), max_share=MAX_SHARE if max_share is None else max_share)


@bp.get("/admin/audit")
@admin_required
def audit_page():
    try:
        report = _report()
    except PodiumError as exc:
        return error_response(400, exc.messages)
    return render_template("audit.html", report=report, sections=SECTIONS)


@bp.get("/api/admin/audit")
@admin_required
def audit_json():
    try:
        report = _report()
    except PodiumError as exc:
        return error_response(400, exc.messages)
    return jsonify({
        "teams": report.teams, "rows": report.rows, "baseline": report.baseline, "baseline_how": report.baseline_how,
        "max_share": report.max_share, "left_out": report.left_out,
        "evidence": {key: [e.to_dict() for e in items] for key, items in report.evidence.items()},
    })
