"""The organizer's audit page, ``/admin/audit``: the evidence and how each number was computed.

Organizer only (``admin_required``: a visitor or a team is sent to the organizer login; the JSON
form answers 401). The view parses the request and calls ``audit_evidence.gather``; it never writes.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from leaderboard.errors import error_response

from harness.errors import PodiumError
from leaderboard.audit_evidence import SECTIONS, gather
from leaderboard.auth import admin_required

bp = Blueprint("audit", __name__)


def _baseline() -> float | None:
    value = request.args.get("baseline", "").strip()
    if not value:
        return None
    try:
        baseline = float(value)
    except ValueError:
        raise PodiumError("The baseline must be a score such as 0.85.") from None
    if not 0.0 <= baseline <= 1.0:
        raise PodiumError("The baseline must be a score between 0 and 1.")
    return baseline


@bp.get("/admin/audit")
@admin_required
def audit_page():
    try:
        report = gather(_baseline())
    except PodiumError as exc:
        return error_response(400, exc.messages)
    return render_template("audit.html", report=report, sections=SECTIONS)


@bp.get("/api/admin/audit")
@admin_required
def audit_json():
    try:
        report = gather(_baseline())
    except PodiumError as exc:
        return error_response(400, exc.messages)
    return jsonify({
        "teams": report.teams, "rows": report.rows, "baseline": report.baseline, "baseline_how": report.baseline_how,
        "left_out": report.left_out,
        "evidence": {key: [e.to_dict() for e in items] for key, items in report.evidence.items()},
    })
