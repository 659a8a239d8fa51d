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


def upload(client, token, data: bytes):
    response = client.post("/api/submissions", data={"file": (io.BytesIO(data), "p.csv")},
                           headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_data(as_text=True)


def test_audit_finds_identical_files_a_checkpoint_unlike_its_csv_and_an_implausible_score(
        tmp_path, digits_competition, digits_solution):
    """The other three sections through the real app, the JSON page and `podium audit`: two teams
    upload one file byte for byte; a team's checkpoint and CSV disagree on 10 % of the rows
    (flagged at the default 2 %, not at ?max_share=0.2); a team perfect on the public rows and at
    chance on the private ones is implausible against the reference model's predictions CSV."""
    from harness.competition import PRIVATE, PUBLIC
    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team
    from leaderboard.recording import record_predictions
    from leaderboard.transactions import write_transaction

    app = make_test_app(tmp_path, digits_competition.root, TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    rng = np.random.default_rng(4)
    truth = np.where(digits_solution.labels < 0, 0, digits_solution.labels)
    tokens = {}
    with app.app_context():
        for name in ("Alpha", "Beta", "Gamma", "Twin A", "Twin B", "Mixed", "Leaky"):
            tokens[name] = create_team(name)[1]
    for name, acc in (("Alpha", 0.7), ("Beta", 0.75), ("Gamma", 0.8)):
        upload(client, tokens[name], csv_bytes(digits_solution, independent(digits_solution, acc, rng)))
    twin = csv_bytes(digits_solution, independent(digits_solution, 0.72, rng))
    upload(client, tokens["Twin A"], twin)
    upload(client, tokens["Twin B"], twin)
    leaky = independent(digits_solution, 0.1, rng)
    public = digits_solution.usage == PUBLIC
    leaky[public] = truth[public]
    upload(client, tokens["Leaky"], csv_bytes(digits_solution, leaky))
    mixed_csv = independent(digits_solution, 0.74, rng)
    upload(client, tokens["Mixed"], csv_bytes(digits_solution, mixed_csv))
    checkpoint = mixed_csv.copy()
    changed = rng.choice(np.flatnonzero(np.isin(digits_solution.usage, (PUBLIC, PRIVATE))),
                         int(0.1 * np.isin(digits_solution.usage, (PUBLIC, PRIVATE)).sum()), replace=False)
    checkpoint[changed] = (checkpoint[changed] + 1) % 10
    with app.app_context():  # the checkpoint as a worker's result records it (predictions kept beside it)
        team = db.session.scalar(db.select(Team).where(Team.name == "Mixed"))
        with write_transaction():
            sub = Submission(team_id=team.id, kind="checkpoint", sha256="d" * 64,
                             stored_path=f"{team.slug}/{'d' * 64}.safetensors")
            db.session.add(sub)
            db.session.flush()
            record_predictions(sub, checkpoint)
    admin = app.test_client()
    assert admin.post("/admin/login", data={"token": ADMIN}).status_code in (302, 303)

    body = admin.get("/api/admin/audit").get_json()
    ev = body["evidence"]
    assert [sorted(e["teams"]) for e in ev["duplicate_file"] if e["flagged"]] == [["Twin A", "Twin B"]]
    mixed = [e for e in ev["checkpoint_csv"] if e["teams"] == ["Mixed"]]
    assert len(mixed) == 1 and mixed[0]["flagged"] and body["max_share"] == 0.02
    assert 0.08 < mixed[0]["numbers"]["share"] < 0.12, mixed[0]
    assert [e["teams"] for e in ev["implausible_score"] if e["flagged"]] == [["Leaky"]]
    relaxed = admin.get("/api/admin/audit?max_share=0.2").get_json()
    assert not any(e["flagged"] for e in relaxed["evidence"]["checkpoint_csv"]) and relaxed["max_share"] == 0.2
    assert admin.get("/api/admin/audit?max_share=2").status_code == 400
    page = admin.get("/admin/audit?max_share=0.2").get_data(as_text=True)
    assert 'name="max_share" value="0.2"' in page and "Identical files" in page

    reference = tmp_path / "reference.csv"  # the reference model's predictions, as podium baseline writes them
    reference.write_bytes(csv_bytes(digits_solution, independent(digits_solution, 0.5, np.random.default_rng(9))))
    result = subprocess.run(
        PODIUM + ["audit", "--competition", str(digits_competition.root), "--instance", str(tmp_path / "instance"),
                  "--db", app.config["SQLALCHEMY_DATABASE_URI"], "--baseline", str(reference), "--max-share", "0.2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"the public score of {reference}" in result.stdout
    assert "== Checkpoint against CSV: 0 flagged of 1" in result.stdout
    assert "== Identical files from different teams: 1 flagged" in result.stdout
    bad = subprocess.run(
        PODIUM + ["audit", "--competition", str(digits_competition.root), "--instance", str(tmp_path / "instance"),
                  "--db", app.config["SQLALCHEMY_DATABASE_URI"], "--baseline", str(tmp_path / "missing.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "cannot read the reference predictions" in bad.stderr and "Traceback" not in bad.stderr
    with app.app_context():
        db.engine.dispose()
