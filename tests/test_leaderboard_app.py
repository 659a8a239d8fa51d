"""The leaderboard app through Flask's test client, on a real SQLite file and a real competition."""
from __future__ import annotations

import datetime as dt
import io
import re
import shutil

import numpy as np
import pytest
import sqlalchemy as sa

from harness.competition import PRIVATE, PUBLIC, load_competition
from harness.errors import SubmissionError
from leaderboard import create_app
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import Submission
from leaderboard.ranking import compute_board
from tests.reference_impls import naive_board
from tests.pg import database_config

START = dt.datetime(2029, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
DEADLINE = "2029-12-31T23:59:00Z"
ADMIN = "organizer-secret-token"
WORKER = "worker-secret-token"

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL


class Clock:
    """The app's ``NOW``: tests move it to cross UTC days and the deadline."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def competition(digits_competition, tmp_path_factory):
    """The shared digits competition, copied with a deadline."""
    root = tmp_path_factory.mktemp("lb") / "digits"
    shutil.copytree(digits_competition.root, root)
    toml = root / "competition.toml"
    toml.write_text(toml.read_text().replace("# deadline = 2026-12-31T23:59:00Z", f"deadline = {DEADLINE}"))
    comp = load_competition(root)
    assert comp.deadline is not None and comp.daily_limit == 5 and comp.final_selections == 2
    return comp


@pytest.fixture
def clock():
    return Clock(START)


def make_app(tmp_path, competition, clock, **extra):
    config = {
        "COMPETITION_DIR": str(competition.root),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "WTF_CSRF_ENABLED": False,
        "ADMIN_TOKEN": ADMIN,
        "WORKER_TOKEN": WORKER,
        "NOW": clock,
        "TESTING": True,
        **database_config(),  # the test's PostgreSQL database under the each_database fixture
    }
    config.update(extra)
    return create_app(config)


@pytest.fixture
def app(tmp_path, competition, clock):
    return make_app(tmp_path, competition, clock)


def add_team(app, name):
    with app.app_context():
        team, token = create_team(name)
        return team.slug, token


def csv_bytes(solution, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, predictions))).encode()


def predictions_with(solution, public_acc: float, private_acc: float, seed: int = 0) -> np.ndarray:
    """Right on exactly the first ``acc`` fraction of each split's rows (decoys: class 0)."""
    truth = np.where(solution.labels < 0, 0, solution.labels)
    pred = truth.copy()
    for usage, acc in ((PUBLIC, public_acc), (PRIVATE, private_acc)):
        rows = np.flatnonzero(solution.usage == usage)
        wrong = rows[int(round(acc * len(rows))):]
        pred[wrong] = (truth[wrong] + 1) % 10
    return pred


def exact_score(solution, usage, pred) -> float:
    rows = solution.usage == usage
    return float((pred[rows] == solution.labels[rows]).mean())


def login(client, name, token):
    return client.post("/login", data={"name": name, "token": token})


def upload(client, data: bytes, name="sub.csv", **fields):
    payload = {"file": (io.BytesIO(data), name), **fields}
    return client.post("/upload", data=payload, content_type="multipart/form-data")


def api_submit(client, token, data: bytes, name="sub.csv"):
    return client.post("/api/submissions", data={"file": (io.BytesIO(data), name)},
                       headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data")


def test_login_upload_and_score_on_board(app, digits_solution):
    slug, token = add_team(app, "Owls")
    client = app.test_client()
    assert login(client, "Owls", "wrong-token").status_code == 401
    assert login(client, "Owls", token).status_code == 302
    pred = predictions_with(digits_solution, 0.9, 0.8)
    response = upload(client, csv_bytes(digits_solution, pred), note="first try")
    assert response.status_code == 302 and "/submissions/" in response.location
    page = client.get(response.location).get_data(as_text=True)
    public = exact_score(digits_solution, PUBLIC, pred)
    assert f"{public:.4f}" in page and "first try" in page
    board = client.get("/").get_data(as_text=True)
    assert "#team-owls { background" in board, "the team's own row is highlighted"
    row = re.search(r"<tr id=\"team-owls\">(.*?)</tr>", board, re.S).group(1)
    assert "Owls" in row and f"{public:.4f}" in row
    assert re.search(r"\d\.\d{4} – \d\.\d{4}", row), "the 95 % interval is shown"
    data = client.get("/api/leaderboard").get_json()
    assert data["rows"][0]["team"] == "Owls" and data["rows"][0]["score"] == round(public, 4)
    assert data["rows"][0]["entries"] == 1
    # The stored file is named by the server, content-addressed under the team's folder.
    with app.app_context():
        sub = db.session.scalars(sa.select(Submission)).one()
        assert re.fullmatch(rf"{slug}/[0-9a-f]{{64}}\.csv", sub.stored_path) and sub.original_name == "sub.csv"


def test_bad_csv_shows_its_messages_on_the_page_and_counts(app, digits_solution):
    add_team(app, "Owls")
    client = app.test_client()
    login(client, "Owls", add_team(app, "Other")[1])  # wrong team's token: refused
    assert client.get("/upload").status_code == 302  # not logged in -> login page
    _, token = add_team(app, "Hawks")
    login(client, "Hawks", token)
    rows = csv_bytes(digits_solution, predictions_with(digits_solution, 1, 1)).decode().splitlines()
    rows[5] = rows[4]  # a duplicated id
    rows[9] = rows[9].split(",")[0] + ",banana"
    response = upload(client, ("\n".join(rows) + "\n").encode())
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Your submission was not accepted" in page
    assert re.search(r"line 6: id &#34;\w+&#34; appears twice \(first on line 5\)", page)
    assert "line 10: &#34;banana&#34; is not a class" in page
    assert "4 of 5 submissions left today" in page, "a refused CSV counts, as on Kaggle"


def test_daily_limit_per_utc_day_and_our_failures_do_not_count(app, digits_solution, clock):
    _, token = add_team(app, "Owls")
    client = app.test_client()
    good = csv_bytes(digits_solution, predictions_with(digits_solution, 0.7, 0.7))
    clock.now = START.replace(hour=23, minute=50)
    for _ in range(5):
        assert api_submit(client, token, good).status_code == 201
    refused = api_submit(client, token, good)
    assert refused.status_code == 429 and "00:00 UTC" in refused.get_json()["errors"][0]
    with app.app_context():  # a failure that was ours gives the submission back
        from leaderboard.recording import record_refusal

        sub = db.session.scalars(sa.select(Submission).order_by(Submission.id.desc())).first()
        record_refusal(sub, ["the worker ran out of memory"], ours=True)
        db.session.commit()
    assert api_submit(client, token, good).status_code == 201
    assert api_submit(client, token, good).status_code == 429
    clock.now = START.replace(hour=23, minute=50) + dt.timedelta(minutes=15)  # the next UTC day
    assert api_submit(client, token, good).status_code == 201


def test_late_submission_is_kept_scored_and_not_ranked(app, digits_solution, clock, competition):
    _, token = add_team(app, "Owls")
    client = app.test_client()
    clock.now = competition.deadline + dt.timedelta(seconds=1)
    response = api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)))
    body = response.get_json()
    assert response.status_code == 201 and body["late"] is True and body["status"] == "scored"
    assert client.get("/api/leaderboard").get_json()["rows"] == []
    clock.now = competition.deadline - dt.timedelta(seconds=1)
    api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.5, 0.5)))
    rows = client.get("/api/leaderboard").get_json()["rows"]
    assert len(rows) == 1 and rows[0]["score"] == round(exact_score(
        digits_solution, PUBLIC, predictions_with(digits_solution, 0.5, 0.5)), 4), "only the on-time one ranks"
    assert "late" in client.get("/teams/owls").get_data(as_text=True)


def reveal(app):
    admin = app.test_client()
    assert admin.post("/admin/login", data={"token": ADMIN}).status_code == 302
    assert admin.post("/admin/reveal", data={"reveal": "1"}).status_code == 302


def test_finals_default_to_best_public_and_can_be_chosen(app, digits_solution, clock):
    _, token = add_team(app, "Owls")
    client = app.test_client()
    # Three submissions: the best public one is the worst private one.
    shapes = [(0.95, 0.40), (0.90, 0.85), (0.60, 0.99)]
    ids = []
    for i, (pub, priv) in enumerate(shapes):
        clock.now = START + dt.timedelta(minutes=i)
        ids.append(api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, pub, priv))).get_json()["id"])
    reveal(app)
    row = client.get("/api/leaderboard").get_json()["rows"][0]
    # Default finals: the two best public (0.95 and 0.90) -> private 0.85; the 0.99 one is not a final.
    assert row["private_score"] == round(exact_score(digits_solution, PRIVATE, predictions_with(digits_solution, 0.90, 0.85)), 4)
    login(client, "Owls", token)
    assert client.post("/finals", data={"selected": [str(i) for i in ids]}).status_code == 422  # more than 2
    assert client.post("/finals", data={"selected": [str(ids[2])]}).status_code == 302
    row = client.get("/api/leaderboard").get_json()["rows"][0]
    assert row["private_score"] == round(exact_score(digits_solution, PRIVATE, predictions_with(digits_solution, 0.60, 0.99)), 4)
    assert row["score"] == round(exact_score(digits_solution, PUBLIC, predictions_with(digits_solution, 0.95, 0.40)), 4)
    # Another team cannot make someone else's submission its final.
    _, other = add_team(app, "Rivals")
    rival = app.test_client()
    login(rival, "Rivals", other)
    assert rival.post("/finals", data={"selected": [str(ids[0])]}).status_code == 422


def test_finals_form_with_a_non_ascii_digit_is_not_a_500(app, digits_solution):
    _, token = add_team(app, "Owls")
    client = app.test_client()
    login(client, "Owls", token)
    sub_id = api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9))).get_json()["id"]
    # "\u00b2" passes str.isdigit() and int() refuses it: the value is no submission id, so it is ignored.
    assert client.post("/finals", data={"selected": [str(sub_id), "\u00b2"]}).status_code == 302
    with app.app_context():
        assert db.session.get(Submission, sub_id).selected


def test_ties_go_to_the_earlier_submission(app, digits_solution, clock):
    pred = csv_bytes(digits_solution, predictions_with(digits_solution, 0.8, 0.8))
    _, late_token = add_team(app, "Later")
    _, early_token = add_team(app, "Earlier")
    client = app.test_client()
    clock.now = START + dt.timedelta(minutes=5)
    api_submit(client, late_token, pred)
    clock.now = START
    api_submit(client, early_token, pred)
    rows = client.get("/api/leaderboard").get_json()["rows"]
    assert [r["team"] for r in rows] == ["Earlier", "Later"] and rows[0]["score"] == rows[1]["score"]


def _every_view(app, client, headers, slug, sub_id):
    """Every page and API response a team (or the organizer) can see about a submission."""
    urls = ["/", f"/teams/{slug}", f"/submissions/{sub_id}", "/finals", "/upload",
            "/api/leaderboard", f"/api/submissions/{sub_id}", f"/api/teams/{slug}/submissions"]
    out = {}
    for url in urls:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        out[url] = response.get_data(as_text=True)
    admin = app.test_client()
    admin.post("/admin/login", data={"token": ADMIN})
    out["/admin/"] = admin.get("/admin/").get_data(as_text=True)
    return out


def test_private_scores_hidden_everywhere_until_reveal(app, digits_solution):
    slug, token = add_team(app, "Owls")
    client = app.test_client()
    login(client, "Owls", token)
    pred = predictions_with(digits_solution, 0.9, 0.6173)
    body = api_submit(client, token, csv_bytes(digits_solution, pred)).get_json()
    private = f"{exact_score(digits_solution, PRIVATE, pred):.4f}"
    overall = f"{float((pred[digits_solution.scored] == digits_solution.labels[digits_solution.scored]).mean()):.4f}"
    public = f"{exact_score(digits_solution, PUBLIC, pred):.4f}"
    assert len({private, overall, public}) == 3
    headers = {"Authorization": f"Bearer {token}"}
    for url, text in _every_view(app, client, headers, slug, body["id"]).items():
        assert private not in text and overall not in text, url
        assert "private_score" not in text and '"all"' not in text and '"private":' not in text, url
    assert public in _every_view(app, client, headers, slug, body["id"])[f"/submissions/{body['id']}"]
    reveal(app)
    views = _every_view(app, client, headers, slug, body["id"])
    for url in ("/", f"/submissions/{body['id']}", "/api/leaderboard", f"/api/submissions/{body['id']}"):
        assert private in views[url], url
    assert views["/api/leaderboard"].count("private_score") == 1


def test_nobody_fetches_the_solution_or_another_teams_files(app, digits_solution, competition):
    _, token = add_team(app, "Owls")
    _, rival_token = add_team(app, "Rivals")
    data = csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9))
    sub_id = api_submit(app.test_client(), token, data).get_json()["id"]
    owner = app.test_client()
    login(owner, "Owls", token)
    download = owner.get(f"/submissions/{sub_id}/file")
    assert download.status_code == 200 and download.data == data
    assert download.headers["Content-Disposition"].startswith("attachment")
    download.close()
    rival = app.test_client()
    login(rival, "Rivals", rival_token)
    anonymous = app.test_client()
    for client in (rival, anonymous):
        for url in (f"/submissions/{sub_id}/file", f"/submissions/{sub_id}", "/api/teams/owls/submissions"):
            assert client.get(url).status_code == 404, url
    assert app.test_client().get(f"/api/submissions/{sub_id}",
                                 headers={"Authorization": f"Bearer {rival_token}"}).status_code == 404
    solution_text = competition.solution_path.read_text().splitlines()[1]
    for client in (owner, rival, anonymous):
        for url in ("/private/solution.csv", "/static/../private/solution.csv", "/static/%2e%2e/private/solution.csv",
                    "/solution.csv", "/api/jobs/test-data", "/competition/private/solution.csv"):
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code in (401, 404), url
            assert solution_text.encode() not in response.data


def test_team_name_with_script_is_shown_as_text(app, digits_solution):
    name = "<script>alert(1)</script>"
    _, token = add_team(app, name)
    client = app.test_client()
    api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)))
    login(client, name, token)
    for url in ("/", "/teams/script-alert-1-script", "/finals"):
        page = client.get(url).get_data(as_text=True)
        assert name not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_form_post_without_csrf_token_is_refused(tmp_path, competition, clock, digits_solution):
    app = make_app(tmp_path, competition, clock, WTF_CSRF_ENABLED=True)
    _, token = add_team(app, "Owls")
    client = app.test_client()
    refused = client.post("/login", data={"name": "Owls", "token": token})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"name": "Owls", "token": token, "csrf_token": csrf}).status_code == 302
    data = csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9))
    assert upload(client, data).status_code == 400  # logged in, but the form lacks its token
    assert upload(client, data, csrf_token=csrf).status_code == 400  # the token from before login is void
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/upload").get_data(as_text=True)).group(1)
    assert upload(client, data, csrf_token=csrf).status_code == 302
    admin = app.test_client()  # the organizer, logged in: a reveal without the form's token is refused
    admin_csrf = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/admin/login").get_data(as_text=True)).group(1)
    assert admin.post("/admin/login", data={"token": ADMIN, "csrf_token": admin_csrf}).status_code == 302
    forged = admin.post("/admin/reveal", data={"reveal": "1"})
    assert forged.status_code == 400 and "CSRF" in forged.get_data(as_text=True)
    assert client.get("/api/leaderboard").get_json()["revealed"] is False
    assert api_submit(client, token, data).status_code == 201, "the bearer-token API needs no CSRF token"
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"


def test_api_errors_are_json_never_tracebacks(tmp_path, competition, clock, digits_solution):
    app = make_app(tmp_path, competition, clock, MAX_CONTENT_LENGTH=64 * 1024)
    _, token = add_team(app, "Owls")
    client = app.test_client()
    no_token = client.post("/api/submissions", data={"file": (io.BytesIO(b"x"), "a.csv")})
    assert no_token.status_code == 401 and no_token.get_json()["errors"]
    bad = api_submit(client, token, b"id,label\n")
    assert bad.status_code == 422 and bad.get_json()["errors"] == [
        "The file has a header but no rows; expected 579 rows, one per test image."]
    big = api_submit(client, token, b"id,label\n" + b"x,1\n" * 40000)
    assert big.status_code == 413 and "too large" in big.get_json()["errors"][0]
    login(client, "Owls", token)
    page = upload(client, b"id,label\n" + b"x,1\n" * 40000)
    assert page.status_code == 413 and "too large" in page.get_data(as_text=True)
    assert client.get("/api/submissions/999").get_json() == {"errors": ["There is nothing here."]}


@pytest.mark.parametrize("token", ["\u00b2.secret", "99999999999999999999.secret", "1" * 5000 + ".secret"])
def test_a_malformed_team_token_is_a_401_not_a_500(app, token):
    """A token whose id part is a Unicode digit, overflows an INTEGER or is too long for int()."""
    response = api_submit(app.test_client(), token, b"id,label\n")
    assert response.status_code == 401
    assert response.get_json() == {"errors": ["A valid team token is required (Authorization: Bearer <team token>)."]}


def test_an_id_too_large_for_the_database_is_a_404_not_a_500(app):
    """Every ``<int:...>`` route: an id beyond 64 bits used to overflow SQLite's INTEGER (a 500)."""
    client = app.test_client()
    huge = "9" * 20
    assert client.get(f"/submissions/{huge}").status_code == 404
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert client.get(f"/api/submissions/{huge}", headers=admin).get_json() == {"errors": ["There is nothing here."]}
    worker = {"Authorization": f"Bearer {WORKER}", "X-Podium-Lease": "x"}
    assert client.post(f"/api/jobs/{huge}/heartbeat", headers=worker).status_code == 404
    assert client.get(f"/submissions/{2**63 - 1}").status_code == 404
    assert client.get(f"/submissions/{2**31}").status_code == 404  # beyond PostgreSQL's integer ids
    assert client.get(f"/submissions/{2**31 - 1}").status_code == 404  # the largest id still routes


def test_api_submissions_name_their_team(app, digits_solution):
    """``team`` was null in every API answer: it was read only when the relationship happened to be loaded."""
    slug, token = add_team(app, "Owls")
    client = app.test_client()
    created = api_submit(client, token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)))
    assert created.get_json()["team"] == slug
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/submissions/{created.get_json()['id']}", headers=headers).get_json()["team"] == slug
    listed = client.get(f"/api/teams/{slug}/submissions", headers=headers).get_json()
    assert [s["team"] for s in listed["submissions"]] == [slug]


def test_history_attached_shows_curves_and_diagnosis(app, digits_solution):
    _, token = add_team(app, "Owls")
    client = app.test_client()
    login(client, "Owls", token)
    history = "epoch,train_loss,train_acc,val_loss,val_acc\n" + "".join(
        f"{e},{1.0 / e:.4f},{0.6 + 0.13 * e:.4f},{0.8 + 0.1 * e:.4f},{0.85:.4f}\n" for e in range(1, 4))
    response = upload(client, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)),
                      history=(io.BytesIO(history.encode()), "history.csv"))
    page = client.get(response.location).get_data(as_text=True)
    assert page.count("<svg") == 2 and "val loss" in page and "Diagnosis: " in page
    assert "confusion matrix" in page.lower() and "background-color: rgba(37, 99, 235" in page
    bad = upload(client, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)),
                 history=(io.BytesIO(b"nonsense\n1\n"), "history.csv"))
    assert bad.status_code == 422 and "history" in bad.get_data(as_text=True).lower()


def test_an_oversized_history_is_refused_without_reading_it_whole(app, digits_solution):
    from harness.diagnosis import MAX_HISTORY_BYTES
    from leaderboard.intake import read_history_upload

    class Endless(io.RawIOBase):  # a history part as large as the request allows (a checkpoint's size)
        served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = b"1" * len(buffer)
            Endless.served += len(buffer)
            return len(buffer)

    with pytest.raises(SubmissionError, match="larger than 1 MiB"):
        read_history_upload(io.BufferedReader(Endless()))
    assert Endless.served <= MAX_HISTORY_BYTES + 1 + io.DEFAULT_BUFFER_SIZE
    _, token = add_team(app, "Owls")
    client = app.test_client()
    big = b"epoch,train_loss,train_acc,val_loss,val_acc\n" + b"1,0.5,0.5,0.5,0.5\n" * 70_000
    good = csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9))
    # The multipart body by hand: the test client spools a large one to a temporary file it never closes.
    body = b"".join(b"--b\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n\r\n%s\r\n" % part
                    for part in ((b"file", b"s.csv", good), (b"history", b"history.csv", big))) + b"--b--\r\n"
    response = client.post("/api/submissions", headers={"Authorization": f"Bearer {token}"},
                           content_type="multipart/form-data; boundary=b", data=body)
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        "The history file is larger than 1 MiB; a history.csv is one short row per epoch."]
    login(client, "Owls", token)
    page = client.post("/upload", content_type="multipart/form-data; boundary=b", data=body)
    assert page.status_code == 422 and "larger than 1 MiB" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 0


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0a/evil.example", "/%0d%0aSet-Cookie:x=1",
                                    "//evil.example", "/%5cevil.example", "https://evil.example/"])
def test_login_never_redirects_off_the_site(app, target):
    """``?next=/<TAB>/evil.example`` reached the Location header as ``//evil.example`` (an open redirect
    after login) and a newline in it was a 500."""
    _, token = add_team(app, "Owls")
    team = app.test_client().post(f"/login?next={target}", data={"name": "Owls", "token": token})
    assert team.status_code == 302 and team.location == "/"
    admin = app.test_client().post(f"/admin/login?next={target}", data={"token": ADMIN})
    assert admin.status_code == 302 and admin.location == "/"
    assert app.test_client().post("/login?next=/upload", data={"name": "Owls", "token": token}).location == "/upload"


def test_admin_creates_a_team_token_that_logs_in(app, digits_solution):
    admin = app.test_client()
    assert admin.get("/admin/").status_code == 302
    assert admin.post("/admin/login", data={"token": "guess"}).status_code == 401
    admin.post("/admin/login", data={"token": ADMIN})
    page = admin.post("/admin/teams", data={"name": "Ravens"}, follow_redirects=True).get_data(as_text=True)
    token = re.search(r'<code class="token">([^<]+)</code>', page).group(1)
    assert "Ravens" in page and token not in admin.get("/admin/").get_data(as_text=True), "shown once"
    assert login(app.test_client(), "Ravens", token).status_code == 302
    team_api = app.test_client().get("/api/teams/ravens/submissions", headers={"Authorization": f"Bearer {ADMIN}"})
    assert team_api.status_code == 200 and team_api.get_json()["submissions"] == []


def test_sql_board_matches_the_naive_ranking(app, digits_solution, clock):
    rng = np.random.default_rng(3)
    tokens = [add_team(app, f"team {i}")[1] for i in range(6)]
    client = app.test_client()
    accuracies = [0.5, 0.6, 0.7, 0.7, 0.8]
    for step in range(15):
        clock.now = START + dt.timedelta(minutes=step)
        acc = float(rng.choice(accuracies))
        api_submit(client, tokens[int(rng.integers(6))], csv_bytes(digits_solution, predictions_with(digits_solution, acc, acc)))
    with app.app_context():
        fast, slow = compute_board(False), naive_board(False)
        assert len(fast.rows) >= 4
        assert [(r.team_id, r.submission_id, r.entries) for r in fast.rows] == [
            (r.team_id, r.submission_id, r.entries) for r in slow.rows]


def test_checkpoint_upload_becomes_a_queued_job_not_scored_in_the_request(app):
    from safetensors.numpy import save

    from leaderboard.models import ScoringJob

    _, token = add_team(app, "Owls")
    data = save({"fc.weight": np.zeros((10, 4), dtype=np.float32)},
                metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})
    response = api_submit(app.test_client(), token, data, name="model.bin")
    body = response.get_json()
    assert response.status_code == 202 and body["status"] == "queued" and body["kind"] == "checkpoint"
    with app.app_context():
        job = db.session.scalars(sa.select(ScoringJob)).one()
        sub = db.session.get(Submission, body["id"])
        assert job.submission_id == sub.id and job.sha256 == sub.sha256 and job.status == "queued"
        assert sub.stored_path.endswith(f"{sub.sha256}.safetensors"), "named by content, never by the upload"
    assert app.test_client().get("/api/leaderboard").get_json()["rows"] == []


def test_a_failure_on_our_side_is_a_json_error_without_traceback(tmp_path, competition, clock, digits_solution):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the storage root cannot be created here")
    app = make_app(tmp_path, competition, clock, STORAGE_ROOT=str(blocker / "submissions"))
    _, token = add_team(app, "Owls")
    response = api_submit(app.test_client(), token, csv_bytes(digits_solution, predictions_with(digits_solution, 0.9, 0.9)))
    assert response.status_code == 500
    assert response.get_json() == {"errors": ["Something went wrong on our side; it has been logged. Please try again."]}
    assert "Traceback" not in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 0, "nothing half-written"


def test_a_worker_result_recorded_outside_a_request_reaches_the_cached_board(app):
    """The contract for the job queue: record_predictions + the caller's commit refreshes the board."""
    from safetensors.numpy import save

    from leaderboard.recording import record_predictions
    from leaderboard.state import current_solution

    _, token = add_team(app, "Owls")
    client = app.test_client()
    data = save({"w": np.zeros(3, dtype=np.float32)}, metadata={"library": "timm", "arch": "resnet18"})
    sub_id = api_submit(client, token, data).get_json()["id"]
    assert client.get("/api/leaderboard").get_json()["rows"] == [] and "Owls" not in client.get("/").get_data(as_text=True)
    with app.app_context():
        solution = current_solution()
        pred = predictions_with(solution, 0.75, 0.5)
        record_predictions(db.session.get(Submission, sub_id), pred)
        db.session.commit()
        public = round(exact_score(solution, PUBLIC, pred), 4)
    assert client.get("/api/leaderboard").get_json()["rows"][0]["score"] == public
    assert f"{public:.4f}" in client.get("/").get_data(as_text=True)
    with app.app_context():  # predictions the harness refuses become the team's refusal
        sub = db.session.get(Submission, sub_id)
        record_predictions(sub, np.zeros(3, dtype=np.int64))
        db.session.commit()
        assert sub.status == "refused" and sub.counts_toward_limit and "expected 579 predictions" in sub.messages[0]
    assert client.get("/api/leaderboard").get_json()["rows"] == []


def test_oversized_file_is_refused_while_streaming_and_not_kept(tmp_path, competition, clock, digits_solution):
    root = tmp_path / "small"
    shutil.copytree(competition.root, root)
    toml = root / "competition.toml"
    toml.write_text(toml.read_text().replace("max_csv_mb = 20", "max_csv_mb = 0.004"))  # 4 KiB
    app = make_app(tmp_path, load_competition(root), clock)
    _, token = add_team(app, "Owls")
    response = api_submit(app.test_client(), token, csv_bytes(digits_solution, predictions_with(digits_solution, 1, 1)))
    assert response.status_code == 422
    assert response.get_json()["errors"] == ["The file is larger than 4 KiB, the limit for a csv submission."]
    storage = tmp_path / "instance" / "submissions"
    assert [p for p in storage.rglob("*") if p.is_file()] == [], "nothing of a refused oversized file is kept"
    assert api_submit(app.test_client(), token, b"").get_json()["errors"] == [
        "The file is empty; choose your predictions CSV or model checkpoint."]


def test_admin_sees_queued_jobs_and_the_workers_holding_them(app):
    from safetensors.numpy import save

    _, token = add_team(app, "Owls")
    client = app.test_client()
    api_submit(client, token, save({"w": np.zeros(3, dtype=np.float32)}), name="model.safetensors")
    claim = client.post("/api/jobs/claim", json={"worker": "gpu-box-7"}, headers={"Authorization": f"Bearer {WORKER}"})
    assert claim.status_code == 200
    page = client.get("/admin/", headers={"Authorization": f"Bearer {ADMIN}"}).get_data(as_text=True)
    assert "running: 1" in page
    assert re.search(r"<td>gpu-box-7</td><td class=\"num\">1</td><td class=\"when\">\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>", page)
    assert client.get("/admin/").status_code == 302, "no organizer token, no admin page"
