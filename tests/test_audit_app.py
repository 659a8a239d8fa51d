"""The organizer's audit through the real app and the real `podium audit` command: a planted copied
pair among 30 independent synthetic teams is found, the independent ones are not flagged, and only
the organizer sees the page."""
from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest

from leaderboard.services import create_team
from tests.conftest import PODIUM
from tests.live import make_test_app

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL

ADMIN = "admin-token"


def csv_bytes(solution, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, predictions))).encode()


def independent(solution, accuracy: float, rng) -> np.ndarray:
    truth = np.where(solution.labels < 0, 0, solution.labels)
    wrong = rng.random(len(truth)) > accuracy
    return np.where(wrong, (truth + rng.integers(1, 10, len(truth))) % 10, truth)


def test_audit_finds_a_planted_copied_pair_among_30_teams(tmp_path, digits_competition, digits_solution):
    app = make_test_app(tmp_path, digits_competition.root, TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    rng = np.random.default_rng(12)
    tokens = {}
    with app.app_context():
        for k in range(30):
            team, token = create_team(f"Team {k:02d}")
            tokens[team.name] = token
    preds = {name: independent(digits_solution, float(rng.uniform(0.6, 0.9)), rng) for name in tokens}
    copied = preds["Team 07"].copy()
    own = rng.random(len(copied)) < 0.15  # the copier changes 15 % of the rows on its own
    copied[own] = independent(digits_solution, 0.75, rng)[own]
    preds["Team 23"] = copied
    for name, token in tokens.items():
        response = client.post("/api/submissions", data={"file": (io.BytesIO(csv_bytes(digits_solution, preds[name])), "p.csv")},
                               headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data")
        assert response.status_code == 201, response.get_data(as_text=True)

    # visitors and teams never see it
    assert client.get("/admin/audit").status_code in (302, 303, 401, 403)
    team_client = app.test_client()
    assert team_client.post("/login", data={"name": "Team 07", "token": tokens["Team 07"]}).status_code in (302, 303)
    assert "Log out" in team_client.get("/").get_data(as_text=True)
    page = team_client.get("/admin/audit")
    assert page.status_code in (302, 303, 401, 403) and "Shared wrong answers" not in page.get_data(as_text=True)
    assert client.get("/api/admin/audit", headers={"Authorization": f"Bearer {tokens['Team 07']}"}).status_code in (401, 403)

    admin = app.test_client()
    assert admin.post("/admin/login", data={"token": ADMIN}).status_code in (302, 303)
    html = admin.get("/admin/audit").get_data(as_text=True)
    assert "Shared wrong answers" in html and "How computed: Rows where both teams gave the same wrong label" in html
    body = admin.get("/api/admin/audit").get_json()
    pairs = body["evidence"]["shared_errors"]
    assert len(pairs) == 30 * 29 // 2
    assert sorted(pairs[0]["teams"]) == ["Team 07", "Team 23"] and pairs[0]["flagged"]
    assert pairs[0]["numbers"]["shared_wrong"] > 5 * pairs[0]["numbers"]["expected"]
    assert sum(p["flagged"] for p in pairs) == 1, [p["teams"] for p in pairs if p["flagged"]]
    assert body["evidence"]["duplicate_file"] == []

    # the command line prints the same evidence from the same instance and database
    result = subprocess.run(
        PODIUM + ["audit", "--competition", str(digits_competition.root), "--instance", str(tmp_path / "instance"),
                  "--db", app.config["SQLALCHEMY_DATABASE_URI"]],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "30 ranked teams" in lines[0] and "1 flagged" in lines[0]
    first_pair = next(line for line in lines if line.strip().startswith(("FLAGGED", "Team")))
    assert first_pair.strip().startswith("FLAGGED") and "Team 07" in first_pair and "Team 23" in first_pair
    assert "how: Rows where both teams gave the same wrong label" in result.stdout
    app_engine = app.extensions["sqlalchemy"]
    with app.app_context():
        app_engine.engine.dispose()
