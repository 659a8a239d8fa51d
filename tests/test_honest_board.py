"""The honest board through the real app: tiers, rank ranges, the shake-up forecast, probing
protection (rounded / ladder), medals after the reveal; numbers computed once per board version."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from harness.competition import PRIVATE, PUBLIC, load_competition
from harness.honest import honest_board, ladder_step
from leaderboard import honest_board as hb
from leaderboard.services import create_team, reveal
from tests.conftest import PODIUM
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL

ADMIN = "admin-token"


def competition_with(root, source, extra: str):
    shutil.copytree(source.root, root)
    toml = root / "competition.toml"
    toml.write_text(toml.read_text().replace("daily_limit = 5\n", "daily_limit = 100\n" + extra + "\n"))
    return load_competition(root)


@pytest.fixture
def exact_comp(tmp_path, digits_competition):
    return competition_with(tmp_path / "exact", digits_competition, 'medals = { gold = 0.2, silver = 0.4, bronze = 0.6 }')


@pytest.fixture
def ladder_comp(tmp_path, digits_competition):
    return competition_with(tmp_path / "ladder", digits_competition, 'public_board = "ladder"')


def app_for(tmp_path, competition, **extra):
    return make_test_app(tmp_path, competition.root, WTF_CSRF_ENABLED=False, TESTING=True, **extra)


def add_team(app, name):
    with app.app_context():
        team, token = create_team(name)
        return team.slug, token


def csv_bytes(solution, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, predictions))).encode()


def api_submit(client, token, data: bytes):
    return client.post("/api/submissions", data={"file": (io.BytesIO(data), "sub.csv")},
                       headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data")


def team_predictions(solution, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = np.where(solution.labels < 0, 0, solution.labels)
    wrong = rng.random(len(truth)) > accuracy
    return np.where(wrong, (truth + rng.integers(1, 10, len(truth))) % 10, truth)


def test_board_and_api_show_tiers_ranges_and_forecast_computed_once(tmp_path, exact_comp, digits_solution, monkeypatch):
    app = app_for(tmp_path, exact_comp)
    client = app.test_client()
    accuracies = [0.97, 0.95, 0.80, 0.78, 0.50]
    preds = {}
    for k, acc in enumerate(accuracies):
        slug, token = add_team(app, f"Team {k}")
        preds[slug] = team_predictions(digits_solution, acc, seed=k)
        assert api_submit(client, token, csv_bytes(digits_solution, preds[slug])).status_code == 201
    calls = []
    real = hb.honest_board
    monkeypatch.setattr(hb, "honest_board", lambda *a, **k: calls.append(1) or real(*a, **k))
    body = client.get("/api/leaderboard").get_json()
    rows = body["rows"]
    assert [r["slug"] for r in rows][:2] in (["team-0", "team-1"], ["team-1", "team-0"])
    # The same numbers as a direct call on the public rows of the ranked submissions, in board order.
    public = digits_solution.usage == PUBLIC
    direct = honest_board(np.stack([preds[r["slug"]][public] for r in rows]), digits_solution.labels[public],
                          ranking=list(range(len(rows))), private_rows=int((digits_solution.usage == PRIVATE).sum()),
                          num_classes=10)
    for i, r in enumerate(rows):
        assert r["tier"] == int(direct.tier[i])
        assert r["rank_range"] == [int(v) for v in direct.rank_range[i]]
        assert r["p_rank_change"] == pytest.approx(float(direct.p_rank_change[i]))
    assert rows[0]["tier"] == 1 and rows[-1]["tier"] > rows[2]["tier"] > 1  # 0.97/0.95 vs 0.80/0.78 vs 0.50
    html = client.get("/").get_data(as_text=True)
    assert "paired bootstrap" in html and "Shake-up forecast" in html
    lo, hi = rows[2]["rank_range"]
    assert re.search(rf'id="team-{rows[2]["slug"]}".*?<td class="rank">3 <span class="range"[^>]*>{lo}–{hi}</span>',
                     html, re.S)
    assert f'{100 * rows[0]["p_rank_change"]:.0f} %' in html
    for _ in range(5):  # more requests at the same board version: nothing recomputed
        client.get("/")
        client.get("/api/leaderboard")
    assert len(calls) == 1
    slug, token = add_team(app, "Late comer")
    api_submit(client, token, csv_bytes(digits_solution, team_predictions(digits_solution, 0.9, seed=9)))
    assert len(client.get("/api/leaderboard").get_json()["rows"]) == 6
    assert len(calls) == 2  # a new board version: computed again, once


def test_private_board_after_reveal_has_tiers_moves_and_medals(tmp_path, exact_comp, digits_solution):
    app = app_for(tmp_path, exact_comp)
    client = app.test_client()
    for k, acc in enumerate([0.97, 0.9, 0.85, 0.6, 0.55]):
        _, token = add_team(app, f"T{k}")
        api_submit(client, token, csv_bytes(digits_solution, team_predictions(digits_solution, acc, seed=10 + k)))
    before = client.get("/api/leaderboard").get_json()
    assert not before["revealed"] and all("medal" not in r and "private_score" not in r for r in before["rows"])
    with app.app_context():
        reveal(True)
    body = client.get("/api/leaderboard").get_json()
    rows = body["rows"]
    assert body["revealed"] and [r["private_rank"] for r in rows] == [1, 2, 3, 4, 5]
    # 5 teams: gold top 20 % (1), silver top 40 % (2), bronze top 60 % (3)
    assert [r["medal"] for r in rows] == ["gold", "silver", "bronze", None, None]
    assert all(isinstance(r["private_tier"], int) and r["p_rank_change"] is not None for r in rows)
    assert rows[0]["private_tier"] == 1 and rows[-1]["private_tier"] > 1
    html = client.get("/").get_data(as_text=True)
    assert 'class="medal-gold"' in html and "Private leaderboard" in html and "the real move" in html


def exact_strings(value: float) -> list[str]:
    return [repr(value), f"{value:.4f}", f"{value:.3f}", json.dumps(round(value, 4))]


def test_ladder_board_never_shows_an_exact_public_score(tmp_path, ladder_comp, digits_solution):
    app = app_for(tmp_path, ladder_comp)
    client = app.test_client()
    slug, token = add_team(app, "Probers")
    public = digits_solution.usage == PUBLIC
    exact = []
    bodies = []
    for k, acc in enumerate([0.6, 0.83, 0.84, 0.9]):
        pred = team_predictions(digits_solution, acc, seed=20 + k)
        exact.append(float((pred[public] == digits_solution.labels[public]).mean()))
        response = api_submit(client, token, csv_bytes(digits_solution, pred))
        assert response.status_code == 201
        bodies.append(response.get_data(as_text=True))
    ids = [json.loads(b)["id"] for b in bodies]
    login = client.post("/login", data={"name": "Probers", "token": token})
    assert login.status_code in (302, 303)
    auth = {"Authorization": f"Bearer {token}"}
    pages = bodies + [client.get(url).get_data(as_text=True) for url in
                      ["/", f"/teams/{slug}", "/finals"] + [f"/submissions/{i}" for i in ids]]
    assert "Final submissions" in pages[len(bodies) + 2]
    pages += [client.get(url, headers=auth).get_data(as_text=True) for url in
              ["/api/leaderboard", f"/api/teams/{slug}/submissions"] + [f"/api/submissions/{i}" for i in ids]]
    # podium submit, as a real process against a real server, prints the protected value only
    pred = team_predictions(digits_solution, 0.71, seed=31)
    exact.append(float((pred[public] == digits_solution.labels[public]).mean()))
    csv_path = tmp_path / "cli.csv"
    csv_path.write_bytes(csv_bytes(digits_solution, pred))
    with LiveServer(app) as server:
        result = subprocess.run(PODIUM + ["submit", str(csv_path), "--server", server.url, "--token", token],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "shown ladder" in result.stdout
    pages.append(result.stdout)
    step = ladder_step(int(public.sum()))
    checked = 0
    for value in exact:
        shown = round(value / step) * step
        checked += abs(shown - value) > 1e-4
        for text in pages:
            for needle in exact_strings(value):
                if abs(shown - value) > 1e-4:  # a score that is itself on the ladder cannot be hidden
                    assert needle not in text
    assert checked == len(exact) == 5
    board = client.get("/api/leaderboard").get_json()
    assert board["public_board"] == "ladder" and board["rows"][0]["score"] is not None
    assert board["rows"][0]["ci"] == [None, None]
    # after the reveal the scores are exact again (private scores are exact)
    with app.app_context():
        reveal(True)
    after = client.get("/api/leaderboard").get_json()
    assert after["public_board"] == "exact" and after["rows"][0]["private_score"] is not None


@pytest.mark.parametrize("mode, recovered_all", [("exact", True), ("ladder", False)])
def test_a_probing_attack_recovers_public_labels_only_without_the_ladder(tmp_path, digits_competition,
                                                                         digits_solution, mode, recovered_all):
    """Flip one public row at a time and read the score the API answers: with the exact board a drop
    says the base prediction was right on that row; under the Ladder the answer never changes."""
    comp = competition_with(tmp_path / mode, digits_competition, f'public_board = "{mode}"')
    app = app_for(tmp_path, comp)
    client = app.test_client()
    _, token = add_team(app, "Attacker")
    truth = np.where(digits_solution.labels < 0, 0, digits_solution.labels)
    base = team_predictions(digits_solution, 0.5, seed=3)
    rows = np.flatnonzero(digits_solution.usage == PUBLIC)[:12]
    base_score = api_submit(client, token, csv_bytes(digits_solution, base)).get_json()["public_score"]
    guessed_right = []
    for row in rows:
        flipped = base.copy()
        flipped[row] = (base[row] + 1) % 10
        score = api_submit(client, token, csv_bytes(digits_solution, flipped)).get_json()["public_score"]
        guessed_right.append(score < base_score)  # a drop: the base prediction was right there
    really_right = [bool(base[r] == truth[r]) for r in rows]
    assert 0 < sum(really_right) < len(rows)
    if recovered_all:
        assert guessed_right == really_right
    else:
        assert guessed_right != really_right and len(set(guessed_right)) == 1  # no information at all


def test_rounded_board_shows_scores_to_the_given_decimals_only(tmp_path, digits_competition, digits_solution):
    comp = competition_with(tmp_path / "rounded", digits_competition, 'public_board = { mode = "rounded", decimals = 2 }')
    app = app_for(tmp_path, comp)
    client = app.test_client()
    slug, token = add_team(app, "Rounders")
    public = digits_solution.usage == PUBLIC
    pred = team_predictions(digits_solution, 0.77, seed=41)
    exact = float((pred[public] == digits_solution.labels[public]).mean())
    assert round(exact, 2) != round(exact, 4)
    body = api_submit(client, token, csv_bytes(digits_solution, pred)).get_json()
    assert body["public_score"] == round(exact, 2) and body["public_ci"] == [None, None]
    assert "public" not in (body["result"] or {})
    board = client.get("/api/leaderboard").get_json()
    assert board["public_board"] == "rounded" and board["rows"][0]["score"] == round(exact, 2)
    assert board["rows"][0]["tier"] == 1  # the honest numbers are still there
    for text in (client.get("/").get_data(as_text=True), json.dumps(board), json.dumps(body),
                 client.get(f"/teams/{slug}").get_data(as_text=True)):
        assert f"{exact:.4f}" not in text and f"{exact:.3f}" not in text
    assert f"{round(exact, 2):.2f}" in client.get("/").get_data(as_text=True)


def test_a_rounded_board_leaks_nothing_through_its_honest_numbers(tmp_path, digits_competition, digits_solution):
    """Under "rounded", a one-row improvement that keeps the rounded score changes nothing a team can
    read: not the shown score, nor the tiers, rank ranges, forecast or order (they follow the earliest
    submission that reached the best rounded score, not the best exact one)."""
    comp = competition_with(tmp_path / "rounded1", digits_competition, 'public_board = { mode = "rounded", decimals = 1 }')
    app = app_for(tmp_path, comp)
    client = app.test_client()
    truth = np.where(digits_solution.labels < 0, 0, digits_solution.labels)
    public = np.flatnonzero(digits_solution.usage == PUBLIC)
    for k in range(4):
        _, other = add_team(app, f"Other {k}")
        api_submit(client, other, csv_bytes(digits_solution, team_predictions(digits_solution, 0.72 + 0.04 * k, 70 + k)))
    slug, token = add_team(app, "Prober")
    base = team_predictions(digits_solution, 0.78, seed=3)
    exact = float((base[public] == truth[public]).mean())
    wrong = [r for r in public if base[r] != truth[r]]
    assert round(exact + 1 / len(public), 1) == round(exact, 1), "the probe must stay inside the rounding"
    assert api_submit(client, token, csv_bytes(digits_solution, base)).status_code == 201

    def kaggle_board():  # the official client's GetLeaderboard: scores, order and each entry's date
        auth = base64.b64encode(f"{slug}:{token}".encode()).decode()
        body = client.post("/api/v1/competitions.CompetitionApiService/GetLeaderboard",
                           json={"competitionName": comp.name}, headers={"Authorization": f"Basic {auth}"})
        return [(r["teamName"], r["score"], r["submissionDate"]) for r in body.get_json()["submissions"]]

    before, kaggle_before = client.get("/api/leaderboard").get_json()["rows"], kaggle_board()
    probe = base.copy()
    probe[wrong[0]] = truth[wrong[0]]  # one wrong public row made right: the exact score rises by one row
    assert api_submit(client, token, csv_bytes(digits_solution, probe)).status_code == 201
    after = client.get("/api/leaderboard").get_json()["rows"]
    keys = ("team", "rank", "score", "tier", "rank_range", "p_rank_change")
    assert [{k: r[k] for k in keys} for r in after] == [{k: r[k] for k in keys} for r in before]
    assert kaggle_board() == kaggle_before  # not even the date of the team's entry moved


def test_a_checkpoints_predictions_are_kept_for_the_honest_board(tmp_path, exact_comp, digits_solution):
    """A checkpoint's predictions arrive from its worker (no CSV on disk): record_predictions keeps
    them beside the stored file, and the board's tiers and ranges use them."""
    from leaderboard.extensions import db
    from leaderboard.models import Submission, Team
    from leaderboard.recording import predictions_path, record_predictions
    from leaderboard.transactions import write_transaction

    app = app_for(tmp_path, exact_comp)
    client = app.test_client()
    _, token = add_team(app, "CSV team")
    api_submit(client, token, csv_bytes(digits_solution, team_predictions(digits_solution, 0.6, seed=50)))
    slug, _ = add_team(app, "Checkpoint team")
    pred = team_predictions(digits_solution, 0.95, seed=51)
    with app.app_context():
        team = db.session.scalar(db.select(Team).where(Team.slug == slug))
        with write_transaction():
            sub = Submission(team_id=team.id, kind="checkpoint", sha256="c" * 64, stored_path=f"{slug}/{'c' * 64}.safetensors")
            db.session.add(sub)
            db.session.flush()
            record_predictions(sub, pred)
        kept = predictions_path(sub.stored_path)
        assert kept.is_file() and np.array_equal(np.load(kept), pred)
    rows = client.get("/api/leaderboard").get_json()["rows"]
    assert [r["slug"] for r in rows] == [slug, "csv-team"]
    assert rows[0]["tier"] == 1 and rows[1]["tier"] == 2 and rows[0]["rank_range"] == [1, 1]
