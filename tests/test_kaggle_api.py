"""Part 1 of Kaggle interop: the real, unmodified ``kaggle`` command against a real podium server.

Every client command a team uses is run as a subprocess (competitions submit, submissions, leaderboard
--show/--download, files, download, download -f), with Basic credentials and with KAGGLE_API_TOKEN,
plus a refused file, an oversized file, a wrong key and the daily limit.
"""
from __future__ import annotations

import csv
import datetime as dt
import email.utils
import io
import shutil
import zipfile

import pytest
import requests

from tests.conftest import noisy_predictions, write_submission
from harness.competition import load_competition
from harness.errors import SubmissionError
from harness.submission import parse_csv_submission
from tests.kaggle_live import kaggle_env, run_kaggle, set_toml
from leaderboard.services import create_team
from leaderboard.services import reveal
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.slow

SERVICE = "http://localhost/api/v1/competitions.CompetitionApiService"


@pytest.fixture(scope="module")
def podium(tmp_path_factory, digits_competition):
    root = tmp_path_factory.mktemp("kaggle-api")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    set_toml(competition / "competition.toml", daily_limit=3, max_csv_mb=0.05, max_checkpoint_mb=0.1)
    app = make_test_app(root, competition)
    teams = {}
    with app.app_context():
        for name in ("Blue Team", "Red Team", "Limit Team", "Token Team", "Refused Team"):
            team, token = create_team(name)
            teams[name] = (team.slug, token)
    with LiveServer(app) as server:
        yield {"app": app, "server": server, "port": server.server.effective_port, "teams": teams, "root": root,
               "competition": load_competition(competition)}


def env_for(podium, tmp_path, team: str | None = None, **extra):
    slug, token = podium["teams"][team] if team else (None, None)
    return kaggle_env(podium["port"], tmp_path / "home", username=slug, key=token, **extra)


def good_csv(tmp_path, digits_solution, accuracy=0.9, name="preds.csv", seed=0):
    preds = noisy_predictions(digits_solution, accuracy, seed=seed)
    return write_submission(tmp_path / name, digits_solution.ids, [str(int(p)) for p in preds])


def proxies(podium):
    return {"http": f"http://127.0.0.1:{podium['port']}"}


def test_submit_submissions_and_limits_with_basic_credentials(podium, tmp_path, digits_solution):
    env = env_for(podium, tmp_path, "Blue Team")
    path = good_csv(tmp_path, digits_solution, 0.9)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "first try")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Successfully submitted" in done.stdout and "public accuracy" in done.stdout
    assert "Submission ref: " in done.stdout
    assert "2 submissions remaining today." in done.stdout  # GetSubmissionLimits after the submit

    listed = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v")
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert len(rows) == 1
    row = rows[0]
    assert row["fileName"] == "preds.csv" and row["description"] == "first try"
    assert row["status"] == "SubmissionStatus.COMPLETE"
    # The public score is podium's own (rounded to 4 places); no private score before the reveal.
    from harness.scoring import score_predictions

    expected = score_predictions(noisy_predictions(digits_solution, 0.9), digits_solution, podium["competition"])
    assert row["publicScore"] == f"{expected.primary('public'):.4f}"
    assert row["privateScore"] == ""

    limits = run_kaggle(env, "competitions", "submission-limits", "digits")
    assert limits.returncode == 0, limits.stderr
    assert "Submissions today: 1" in limits.stdout and "Remaining today: 2" in limits.stdout

    ref = done.stdout.split("Submission ref: ")[1].split()[0]
    one = run_kaggle(env, "competitions", "submission", ref)  # GetSubmission
    assert one.returncode == 0, one.stderr
    assert "COMPLETE" in one.stdout and row["publicScore"] in one.stdout
    other = run_kaggle(env_for(podium, tmp_path, "Red Team"), "competitions", "submission", ref)
    assert other.returncode == 1 and f"Your team has no submission {ref}." in other.stderr


def test_submission_wait_uses_get_submission(podium, tmp_path, digits_solution):
    env = env_for(podium, tmp_path, "Red Team")
    path = good_csv(tmp_path, digits_solution, 0.5, seed=3)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "wait", "--wait", "30",
                      "--poll-interval", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Submission scored. Public score: 0." in done.stdout


def test_refused_file_shows_podiums_own_messages(podium, tmp_path, digits_solution):
    env = env_for(podium, tmp_path, "Refused Team")
    rows = [(i, "7") for i in digits_solution.ids[:-1]] + [(digits_solution.ids[0], "banana")]
    path = write_submission(tmp_path / "bad.csv", [r[0] for r in rows], [r[1] for r in rows])
    with pytest.raises(SubmissionError) as podium_says:
        parse_csv_submission(path.read_bytes(), digits_solution, podium["competition"].classes)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "oops")
    assert done.returncode == 1
    assert "was refused" in done.stderr
    for message in podium_says.value.messages:
        assert message in done.stderr
    listed = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v")
    row = next(csv.DictReader(io.StringIO(listed.stdout)))
    assert row["status"] == "SubmissionStatus.ERROR" and row["publicScore"] == ""


def test_oversized_files_are_refused_with_the_competitions_limits(podium, tmp_path, digits_solution):
    env = env_for(podium, tmp_path, "Refused Team")
    big = tmp_path / "big.csv"  # over max_checkpoint_mb (0.1): refused before any upload
    big.write_bytes(b"id,label\n" + b"x,1\n" * 40000)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(big), "-m", "big")
    assert done.returncode == 1
    assert "The file is larger than 102 KiB, the limit for a submission to this competition." in done.stderr
    middle = tmp_path / "middle.csv"  # over max_csv_mb (0.05) but under the checkpoint limit: the CSV limit
    middle.write_bytes(b"id,label\n" + b"x,1\n" * 16000)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(middle), "-m", "middle")
    assert done.returncode == 1
    assert "The file is larger than 51 KiB, the limit for a csv submission." in done.stderr


def test_wrong_key_and_wrong_competition(podium, tmp_path, digits_solution):
    slug, token = podium["teams"]["Blue Team"]
    path = good_csv(tmp_path, digits_solution)
    env = kaggle_env(podium["port"], tmp_path / "home", username=slug, key=token + "x")
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "x")
    assert done.returncode == 1
    assert "These credentials do not match a team on this podium server" in done.stderr
    other = podium["teams"]["Red Team"][0]
    env = kaggle_env(podium["port"], tmp_path / "home", username=other, key=token)  # right key, wrong slug
    done = run_kaggle(env, "competitions", "submissions", "-c", "digits")
    assert done.returncode == 1 and "do not match a team" in done.stderr
    env = env_for(podium, tmp_path, "Blue Team")
    done = run_kaggle(env, "competitions", "files", "-c", "cifar10")
    assert done.returncode == 1 and "There is no competition 'cifar10' on this podium server" in done.stderr


def test_daily_limit_through_the_client(podium, tmp_path, digits_solution):
    env = env_for(podium, tmp_path, "Limit Team")
    path = good_csv(tmp_path, digits_solution, 0.7)
    for _ in range(3):
        assert run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "x").returncode == 0
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "one too many")
    assert done.returncode == 1
    assert "Your team has used its 3 submissions for today (UTC)" in done.stderr
    listed = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v")
    assert len(list(csv.DictReader(io.StringIO(listed.stdout)))) == 3


def test_kaggle_api_token_goes_through_introspect_then_bearer(podium, tmp_path, digits_solution):
    _, token = podium["teams"]["Token Team"]
    env = kaggle_env(podium["port"], tmp_path / "home", token=token)
    path = good_csv(tmp_path, digits_solution, 0.8)
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "by token")
    assert done.returncode == 0, done.stdout + done.stderr
    listed = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v")
    assert [r["description"] for r in csv.DictReader(io.StringIO(listed.stdout))] == ["by token"]
    bad = run_kaggle(kaggle_env(podium["port"], tmp_path / "home", token="1.not-a-token"),
                     "competitions", "submissions", "-c", "digits")
    assert bad.returncode == 1 and "Authentication required" in bad.stdout


def test_files_and_downloads_serve_public_files_only(podium, tmp_path):
    env = env_for(podium, tmp_path, "Blue Team")
    public = podium["competition"].root / "public"
    listed = run_kaggle(env, "competitions", "files", "-c", "digits", "-v")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(listed.stdout))}
    assert set(rows) == {"train.npz", "test.npz", "sample_submission.csv"}
    assert int(rows["test.npz"]["size"]) == (public / "test.npz").stat().st_size

    everything = run_kaggle(env, "competitions", "download", "-c", "digits", "-p", str(tmp_path / "all"))
    assert everything.returncode == 0, everything.stderr
    with zipfile.ZipFile(tmp_path / "all" / "digits.zip") as zf:
        assert sorted(zf.namelist()) == ["sample_submission.csv", "test.npz", "train.npz"]
        for name in zf.namelist():
            assert zf.read(name) == (public / name).read_bytes()

    one = run_kaggle(env, "competitions", "download", "-c", "digits", "-f", "sample_submission.csv",
                     "-p", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "one" / "sample_submission.csv").read_bytes() == (public / "sample_submission.csv").read_bytes()

    for secret in ("solution.csv", "../private/solution.csv", "../competition.toml"):
        refused = run_kaggle(env, "competitions", "download", "-c", "digits", "-f", secret, "-p", str(tmp_path / "x"))
        assert refused.returncode == 1 and "There is no data file" in refused.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*solution*"))


def test_download_headers_redirects_and_json_errors(podium):
    slug, token = podium["teams"]["Blue Team"]
    auth = (slug, token)
    public = podium["competition"].root / "public"
    r = requests.post(f"{SERVICE}/DownloadDataFile", json={"competitionName": "digits", "fileName": "test.npz"},
                      auth=auth, proxies=proxies(podium), allow_redirects=False, timeout=30)
    assert r.status_code == 302
    got = requests.get(r.headers["Location"] if r.headers["Location"].startswith("http")
                       else "http://localhost" + r.headers["Location"], auth=auth, proxies=proxies(podium), timeout=30)
    assert got.status_code == 200 and got.content == (public / "test.npz").read_bytes()
    assert int(got.headers["Content-Length"]) == (public / "test.npz").stat().st_size
    modified = email.utils.parsedate_to_datetime(got.headers["Last-Modified"])
    assert abs(modified.timestamp() - (public / "test.npz").stat().st_mtime) < 1.5

    r = requests.post(f"{SERVICE}/DownloadDataFiles", json={"competitionName": "digits"}, auth=auth,
                      proxies=proxies(podium), allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].split("?")[0].endswith(".zip")
    anonymous = requests.get("http://localhost" + r.headers["Location"], proxies=proxies(podium), timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == 401

    for url, body in [(f"{SERVICE}/ListCompetitions", {}), (f"{SERVICE}/DownloadSubmission", {"submissionId": 1}),
                      ("http://localhost/api/v1/datasets.DatasetApiService/ListDatasets", {})]:
        r = requests.post(url, json=body, auth=auth, proxies=proxies(podium), timeout=30)
        assert r.status_code == 404 and r.json()["code"] == 404 and "podium does not serve" in r.json()["message"]
    r = requests.post(f"{SERVICE}/ListDataFiles", data=b"{not json", auth=auth, proxies=proxies(podium), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"code": 400, "message": "The request body must be JSON."}
    r = requests.post(f"{SERVICE}/ListDataFiles", json={"competitionName": "digits"}, proxies=proxies(podium), timeout=30)
    assert r.status_code == 401 and "credentials are required" in r.json()["message"]


def test_upload_url_is_single_use_bound_to_its_team_and_expires(podium, tmp_path, digits_solution):
    blue, red = podium["teams"]["Blue Team"], podium["teams"]["Red Team"]
    body = good_csv(tmp_path, digits_solution).read_bytes()

    def start(auth):
        r = requests.post(f"{SERVICE}/StartSubmissionUpload", auth=auth, proxies=proxies(podium), timeout=30,
                          json={"competitionName": "digits", "fileName": "p.csv", "contentLength": len(body)})
        assert r.status_code == 200, r.text
        return r.json()

    started = start(blue)
    assert started["createUrl"].startswith("http://localhost/api/v1/")
    assert requests.put(started["createUrl"], data=body, proxies=proxies(podium), timeout=30).status_code == 200
    second = requests.put(started["createUrl"], data=b"id,label\n", proxies=proxies(podium), timeout=30)
    assert second.status_code == 404 and "already used" in second.json()["message"]
    # Another team cannot turn Blue's upload into its own submission.
    stolen = requests.post(f"{SERVICE}/CreateSubmission", auth=red, proxies=proxies(podium), timeout=30,
                           json={"competitionName": "digits", "blobFileTokens": started["token"]})
    assert stolen.status_code == 404 and stolen.json()["message"] == "Unknown upload token; upload the file again."

    # Expiry: the server's clock moves past the upload's lifetime.
    app = podium["app"]
    later = start(blue)
    app.config["NOW"] = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    try:
        expired = requests.put(later["createUrl"], data=body, proxies=proxies(podium), timeout=30)
    finally:
        app.config["NOW"] = None
    assert expired.status_code == 404 and "expired" in expired.json()["message"]

    # At most 5 uploads started and not submitted per team; expired ones are swept and stop counting.
    for _ in range(3):
        start(blue)  # with the two above: five open
    refused = requests.post(f"{SERVICE}/StartSubmissionUpload", auth=blue, proxies=proxies(podium), timeout=30,
                            json={"competitionName": "digits", "fileName": "p.csv", "contentLength": len(body)})
    assert refused.status_code == 429 and "5 uploads started and not submitted" in refused.json()["message"]
    folder = podium["app"].config["STORAGE_ROOT"]
    from pathlib import Path

    assert len(list(Path(folder, ".kaggle-uploads").glob("*.json"))) >= 5
    app.config["NOW"] = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    try:
        start(blue)  # the five expired: swept, and this one is the only open upload
    finally:
        app.config["NOW"] = None
    records = list(Path(folder, ".kaggle-uploads").glob("*.json"))
    assert len(records) == 1 and not list(Path(folder, ".kaggle-uploads").glob("*.bin"))


def test_leaderboard_show_and_download_public_then_private_after_reveal(podium, tmp_path, digits_solution):
    env = kaggle_env(podium["port"], tmp_path / "home", *podium["teams"]["Red Team"])
    path = good_csv(tmp_path, digits_solution, 0.95, seed=5)
    assert run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "lb").returncode == 0
    shown = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--show", "-v")
    assert shown.returncode == 0, shown.stderr
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert rows and rows[0]["teamName"] in {"Blue Team", "Red Team", "Limit Team", "Token Team"}
    with podium["app"].app_context():
        from leaderboard.ranking import current_board

        board = current_board()
        assert [r["teamName"] for r in rows] == [r.team_name for r in board.rows]
        assert [r["score"] for r in rows] == [f"{r.score:.4f}" for r in board.rows]

    got = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--download", "-p", str(tmp_path / "lb"))
    assert got.returncode == 0, got.stderr
    with zipfile.ZipFile(tmp_path / "lb" / "digits.zip") as zf:
        assert zf.namelist() == ["digits-publicleaderboard.csv"]
        public_csv = list(csv.DictReader(io.StringIO(zf.read("digits-publicleaderboard.csv").decode())))
    assert [r["TeamName"] for r in public_csv] == [r.team_name for r in board.rows]
    assert "private" not in shown.stdout.lower()

    with podium["app"].app_context():
        reveal(True)
    try:
        listed = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v")
        row = next(csv.DictReader(io.StringIO(listed.stdout)))
        assert row["privateScore"] not in ("", None)
        got = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--download",
                         "-p", str(tmp_path / "lb2"))
        with zipfile.ZipFile(tmp_path / "lb2" / "digits.zip") as zf:
            assert sorted(zf.namelist()) == ["digits-privateleaderboard.csv", "digits-publicleaderboard.csv"]
        shown = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--show", "-v")
        with podium["app"].app_context():
            board = current_board()
            private = sorted((r for r in board.rows if r.private_rank), key=lambda r: r.private_rank)
        assert [r["score"] for r in csv.DictReader(io.StringIO(shown.stdout))] == [f"{r.private_score:.4f}" for r in private]
    finally:
        with podium["app"].app_context():
            reveal(False)
