"""Part 1 of Kaggle interop: the real, unmodified ``kaggle`` command against a real podium server.

Every client command a team uses is run as a subprocess (competitions submit, submissions, leaderboard
--show/--download, files, download, download -f), with Basic credentials, kaggle.json and
KAGGLE_API_TOKEN, plus a refused file, an oversized file, a wrong key and the daily limit; against
the in-thread server and against a real `podium serve` process (its body gate in the path); with
probing protection (rounded, ladder) and medals; on an image-folders competition; with a real
`podium worker` process scoring a checkpoint the client waits for.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import email.utils
import io
import json
import re
import shutil
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM, noisy_predictions, write_submission
from harness.competition import PRIVATE, PUBLIC, load_competition, load_solution
from harness.errors import SubmissionError
from harness.submission import parse_csv_submission
from tests.kaggle_live import KAGGLE, add_toml, free_port, kaggle_env, run_kaggle, set_toml
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept
from leaderboard.models import Submission, Team
from leaderboard.services import create_team
from leaderboard.services import reveal
from tests.live import LiveServer, make_test_app, wait_until_serving

pytestmark = pytest.mark.slow

SERVICE = "http://localhost/api/v1/competitions.CompetitionApiService"
SERVICE_PATH = SERVICE.removeprefix("http://localhost")


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


# --- credentials, paging, pending checkpoints ---------------------------------------------------------

def csv_rows(text: str) -> list[dict]:
    """The CSV the client prints with -v, after any "Next Page Token = ..." line."""
    lines = [line for line in text.splitlines() if not line.startswith("Next Page Token")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def test_kaggle_json_in_kaggle_config_dir(podium, tmp_path):
    slug, token = podium["teams"]["Blue Team"]
    env = kaggle_env(podium["port"], tmp_path / "home")  # no KAGGLE_USERNAME / KAGGLE_KEY / KAGGLE_API_TOKEN
    config_dir = Path(env["KAGGLE_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    (config_dir / "kaggle.json").write_text(json.dumps({"username": slug, "key": token}), encoding="utf-8")
    (config_dir / "kaggle.json").chmod(0o600)
    listed = run_kaggle(env, "competitions", "files", "-c", "digits", "-v")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert {r["name"] for r in csv_rows(listed.stdout)} == {"train.npz", "test.npz", "sample_submission.csv"}
    (config_dir / "kaggle.json").write_text(json.dumps({"username": slug, "key": token + "x"}), encoding="utf-8")
    wrong = run_kaggle(env, "competitions", "files", "-c", "digits")
    assert wrong.returncode == 1 and "These credentials do not match a team" in wrong.stderr


def tiny_checkpoint(path: Path) -> Path:
    """A real safetensors checkpoint with its card, a few hundred bytes (its weights fit no model)."""
    import torch

    from harness.checkpoint import save_checkpoint

    return save_checkpoint({"fc.weight": torch.zeros(10, 7)}, path, library="torchvision", arch="resnet18",
                           num_classes=10)


def test_list_submissions_pages_and_shows_a_pending_checkpoint(podium, tmp_path, digits_solution):
    app = podium["app"]
    with app.app_context():
        team, token = create_team("Pager Team")
        slug = team.slug
        for note, seed in (("one", 1), ("two", 2)):
            preds = noisy_predictions(digits_solution, 0.8, seed=seed)
            body = "id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, preds))
            assert accept(team, Upload(filename=f"{note}.csv", data=body.encode(), note=note)).status == "scored"
        queued = accept(team, Upload(filename="model.safetensors", note="three",
                                     data=tiny_checkpoint(tmp_path / "model.safetensors").read_bytes()))
        assert queued.status == "queued"
    env = kaggle_env(podium["port"], tmp_path / "home", username=slug, key=token)
    first = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v", "--page-size", "2")
    assert first.returncode == 0, first.stderr
    rows = csv_rows(first.stdout)
    assert [r["description"] for r in rows] == ["three", "two"]  # newest first, two per page
    assert rows[0]["status"] == "SubmissionStatus.PENDING" and rows[0]["publicScore"] == ""
    assert rows[0]["fileName"] == "model.safetensors"
    assert rows[1]["status"] == "SubmissionStatus.COMPLETE" and rows[1]["publicScore"].startswith("0.")
    second = run_kaggle(env, "competitions", "submissions", "-c", "digits", "-v", "--page-size", "2",
                        "--page-token", "2")
    assert second.returncode == 0, second.stderr
    assert [r["description"] for r in csv_rows(second.stdout)] == ["one"]
    # The tokens on the wire: the next page's offset, none after the last page.
    page = requests.post(f"{SERVICE}/ListSubmissions", auth=(slug, token), proxies=proxies(podium), timeout=30,
                         json={"competitionName": "digits", "pageSize": 2}).json()
    assert page["nextPageToken"] == "2" and len(page["submissions"]) == 2
    last = requests.post(f"{SERVICE}/ListSubmissions", auth=(slug, token), proxies=proxies(podium), timeout=30,
                         json={"competitionName": "digits", "pageSize": 2, "pageToken": "2"}).json()
    assert last["nextPageToken"] == "" and [s["description"] for s in last["submissions"]] == ["one"]
    pending = run_kaggle(env, "competitions", "submission", str(queued.id))
    assert pending.returncode == 0 and "PENDING" in pending.stdout


def test_leaderboard_pages_through_the_client(podium, tmp_path, digits_solution):
    app = podium["app"]
    with app.app_context():
        for n, accuracy in enumerate((0.55, 0.65, 0.75)):
            team, _ = create_team(f"Page Team {n}")
            preds = noisy_predictions(digits_solution, accuracy, seed=40 + n)
            body = "id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, preds))
            accept(team, Upload(filename="p.csv", data=body.encode()))
        from leaderboard.honest_board import versioned_honest_board

        expected = [r.team_name for r in versioned_honest_board()[1].board.rows]
    assert len(expected) >= 4
    env = env_for(podium, tmp_path, "Blue Team")
    first = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--show", "-v", "--page-size", "2")
    assert first.returncode == 0, first.stderr
    assert "Next Page Token = 2" in first.stdout
    assert [r["teamName"] for r in csv_rows(first.stdout)] == expected[:2]
    second = run_kaggle(env, "competitions", "leaderboard", "-c", "digits", "--show", "-v", "--page-size", "2",
                        "--page-token", "2")
    assert second.returncode == 0, second.stderr
    assert [r["teamName"] for r in csv_rows(second.stdout)] == expected[2:4]


def test_the_data_zip_has_its_content_length_and_last_modified(podium):
    auth = podium["teams"]["Blue Team"]
    public = podium["competition"].root / "public"
    r = requests.post(f"{SERVICE}/DownloadDataFiles", json={"competitionName": "digits"}, auth=auth,
                      proxies=proxies(podium), allow_redirects=False, timeout=30)
    got = requests.get("http://localhost" + r.headers["Location"], auth=auth, proxies=proxies(podium), timeout=30)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/zip"
    assert int(got.headers["Content-Length"]) == len(got.content) > 0
    newest = max(p.stat().st_mtime for p in public.iterdir())
    assert abs(email.utils.parsedate_to_datetime(got.headers["Last-Modified"]).timestamp() - newest) < 1.5
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in public.iterdir())


def test_an_empty_public_folder_gives_an_empty_zip_not_a_500(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition)
    with app.app_context():
        team, token = create_team("Empty Handed")
    for path in (competition / "public").iterdir():
        path.unlink()
    with LiveServer(app) as server:
        got = requests.get(f"{server.url}/api/v1/podium/data/digits.zip", auth=(team.slug, token), timeout=30)
        assert got.status_code == 200, got.text
        assert "Last-Modified" in got.headers and int(got.headers["Content-Length"]) == len(got.content)
        assert zipfile.ZipFile(io.BytesIO(got.content)).namelist() == []
        listed = requests.post(f"{server.url}/api/v1/competitions.CompetitionApiService/ListDataFiles",
                               auth=(team.slug, token), json={"competitionName": "digits"}, timeout=30)
        assert listed.status_code == 200 and listed.json()["files"] == []


# --- the upload URL: bound to its announced size, counted toward the quota ----------------------------

def start_upload(podium, auth, length: int, name: str = "p.csv"):
    return requests.post(f"{SERVICE}/StartSubmissionUpload", auth=auth, proxies=proxies(podium), timeout=30,
                         json={"competitionName": "digits", "fileName": name, "contentLength": length})


def test_the_upload_url_takes_exactly_the_announced_size(podium, tmp_path, digits_solution):
    with podium["app"].app_context():
        team, token = create_team("Announcers")
    auth = (team.slug, token)
    body = good_csv(tmp_path, digits_solution).read_bytes()
    started = start_upload(podium, auth, len(body)).json()
    larger = requests.put(started["createUrl"], data=body + b"0,1\n", proxies=proxies(podium), timeout=30)
    assert larger.status_code == 413, larger.text
    assert larger.json()["message"] == (f"The body is larger than the {len(body)} bytes announced for this upload; "
                                        "start the submission again.")
    # Without a Content-Length (chunked), the body is cut off one byte past the announced size.
    started = start_upload(podium, auth, len(body)).json()
    chunked = requests.put(started["createUrl"], data=iter([body, b"0,1\n"]), proxies=proxies(podium), timeout=30)
    assert chunked.status_code == 413 and "larger than the" in chunked.json()["message"]
    started = start_upload(podium, auth, len(body)).json()
    shorter = requests.put(started["createUrl"], data=body[:-5], proxies=proxies(podium), timeout=30)
    assert shorter.status_code == 400 and f"of the {len(body)} bytes announced" in shorter.json()["message"]
    # The announced size exactly: taken, and submitted like any upload.
    started = start_upload(podium, auth, len(body)).json()
    assert requests.put(started["createUrl"], data=body, proxies=proxies(podium), timeout=30).status_code == 200
    made = requests.post(f"{SERVICE}/CreateSubmission", auth=auth, proxies=proxies(podium), timeout=30,
                         json={"competitionName": "digits", "blobFileTokens": started["token"]})
    assert made.status_code == 200 and "Successfully submitted" in made.json()["message"]
    folder = Path(podium["app"].config["STORAGE_ROOT"], ".kaggle-uploads")
    assert not list(folder.glob("*.part-*")) and not list(folder.glob("*.taken-*"))


def test_open_uploads_count_toward_the_team_storage_quota(podium):
    with podium["app"].app_context():
        team, token = create_team("Quota Team")
    auth = (team.slug, token)
    app = podium["app"]
    app.config["TEAM_STORAGE_QUOTA"] = 150_000
    try:
        assert start_upload(podium, auth, 100_000).status_code == 200  # fits (the limit per file is 102 KiB)
        refused = start_upload(podium, auth, 100_000)  # 100,000 announced and open + 100,000 > 150,000
        assert refused.status_code == 413, refused.text
        assert "open uploads" in refused.json()["message"] and "storage quota" in refused.json()["message"]
        assert start_upload(podium, auth, 40_000).status_code == 200  # what is left still fits
    finally:
        app.config["TEAM_STORAGE_QUOTA"] = 5000 * 2**20


def test_the_open_upload_limit_is_a_config_key(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition, KAGGLE_MAX_OPEN_UPLOADS=2)
    with app.app_context():
        team, token = create_team("Two Only")
    url = "/api/v1/competitions.CompetitionApiService/StartSubmissionUpload"
    body = {"competitionName": "digits", "fileName": "p.csv", "contentLength": 10}
    with LiveServer(app) as server:
        for _ in range(2):
            assert requests.post(server.url + url, auth=(team.slug, token), json=body, timeout=30).status_code == 200
        third = requests.post(server.url + url, auth=(team.slug, token), json=body, timeout=30)
    assert third.status_code == 429 and "2 uploads started and not submitted" in third.json()["message"]


# --- the leaderboard CSV: spreadsheet-safe names ------------------------------------------------------

def test_leaderboard_csv_neutralises_formula_team_names(podium, tmp_path, digits_solution):
    names = ['=HYPERLINK("http://evil.example","x")', "+1+2", "@SUM(A1)", "\uff0d1"]  # the last: a full-width minus
    with podium["app"].app_context():
        for n, name in enumerate(names + ["Plain - Team"]):
            team, _ = create_team(name)
            preds = noisy_predictions(digits_solution, 0.6, seed=60 + n)
            body = "id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, preds))
            accept(team, Upload(filename="p.csv", data=body.encode()))
    got = requests.post(f"{SERVICE}/DownloadLeaderboard", json={"competitionName": "digits"}, proxies=proxies(podium),
                        timeout=30)
    assert got.status_code == 200
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("digits-publicleaderboard.csv").decode())))
    shown = {r["TeamName"] for r in rows}
    for name in names:
        assert "'" + name in shown and name not in shown
    assert "Plain - Team" in shown  # other names are unchanged


# --- a real `podium serve` with a relative --competition ----------------------------------------------

@contextlib.contextmanager
def podium_serve(cwd: Path, competition: str, port: int):
    server = subprocess.Popen([*PODIUM, "serve", "--competition", competition, "--instance", "instance",
                               "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_until_serving(port, server)
        yield server
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_podium_serve_with_a_relative_competition_path_serves_submit_and_downloads(tmp_path, digits_competition,
                                                                                   digits_solution):
    site = tmp_path / "site"
    shutil.copytree(digits_competition.root, site / "digits")
    added = subprocess.run([*PODIUM, "team", "add", "Serve Team", "--competition", "digits", "--instance", "instance"],
                           cwd=site, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    slug = re.search(r"^team:  .* \((\S+)\)$", added.stdout, re.M).group(1)
    token = re.search(r"^token: (\S+)$", added.stdout, re.M).group(1)
    port = free_port()
    public = site / "digits" / "public"
    with podium_serve(site, "digits", port):
        env = kaggle_env(port, tmp_path / "home", username=slug, key=token)
        path = good_csv(tmp_path, digits_solution, 0.85, seed=8)
        done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", "served")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Successfully submitted" in done.stdout and "public accuracy 0." in done.stdout
        one = run_kaggle(env, "competitions", "download", "-c", "digits", "-f", "sample_submission.csv",
                         "-p", str(tmp_path / "one"))
        assert one.returncode == 0, one.stdout + one.stderr
        assert (tmp_path / "one" / "sample_submission.csv").read_bytes() == (public / "sample_submission.csv").read_bytes()
        everything = run_kaggle(env, "competitions", "download", "-c", "digits", "-p", str(tmp_path / "all"))
        assert everything.returncode == 0, everything.stdout + everything.stderr
        with zipfile.ZipFile(tmp_path / "all" / "digits.zip") as zf:
            assert {n: zf.read(n) for n in zf.namelist()} == {p.name: p.read_bytes() for p in public.iterdir()}
        # The body gate of `podium serve` answers an unknown upload URL from the headers alone.
        proxy = {"http": f"http://127.0.0.1:{port}"}
        unknown = requests.put("http://localhost/api/v1/podium/uploads/not-a-token", data=b"x" * 1000,
                               proxies=proxy, timeout=30)
        assert unknown.status_code == 404 and unknown.json()["code"] == 404
        started = requests.post(f"{SERVICE}/StartSubmissionUpload", auth=(slug, token), proxies=proxy, timeout=30,
                                json={"competitionName": "digits", "fileName": "p.csv", "contentLength": 100}).json()
        larger = requests.put(started["createUrl"], data=b"x" * 200, proxies=proxy, timeout=30)
        assert larger.status_code == 413 and "bytes announced" in larger.json()["message"]
        # A body declared larger than announced is answered from its headers: nothing of it is read.
        started = requests.post(f"{SERVICE}/StartSubmissionUpload", auth=(slug, token), proxies=proxy, timeout=30,
                                json={"competitionName": "digits", "fileName": "p.csv", "contentLength": 100}).json()
        path = started["createUrl"].removeprefix("http://localhost")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(f"PUT http://localhost{path} HTTP/1.1\r\nHost: localhost\r\n"
                         f"Content-Length: {500 * 2**20}\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):  # the answer closes the connection; not one byte of the body was sent
                answer += chunk
            answer = answer.decode("latin-1")
            assert time.monotonic() - t0 < 5
        assert answer.startswith("HTTP/1.1 413") and "bytes announced" in answer, answer[:300]


# --- probing protection: every score the client sees is the protected one -----------------------------

def counted_predictions(solution, right_public: int, seed: int) -> np.ndarray:
    """Right on exactly the first ``right_public`` public rows (wrong on the others), about 80 % of the private."""
    truth = np.where(solution.labels < 0, 0, solution.labels)
    preds = (truth + 1) % 10
    public = np.flatnonzero(solution.usage == PUBLIC)
    preds[public[:right_public]] = truth[public[:right_public]]
    private = np.flatnonzero(solution.usage == PRIVATE)
    right = private[np.random.default_rng(seed).random(len(private)) < 0.8]
    preds[right] = truth[right]
    return preds


@contextlib.contextmanager
def protected_site(tmp_path, digits_competition, *toml_lines):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    set_toml(competition / "competition.toml", daily_limit=20)
    add_toml(competition / "competition.toml", *toml_lines)
    app = make_test_app(tmp_path, competition)
    teams = {}
    with app.app_context():
        for name in ("Early Team", "Late Team"):
            team, token = create_team(name)
            teams[name] = (team.slug, token)
    with LiveServer(app) as server:
        yield {"app": app, "port": server.server.effective_port, "teams": teams, "url": server.url,
               "solution": load_solution(load_competition(competition))}


def submit_counted(site, tmp_path, team: str, right: int, seed: int) -> subprocess.CompletedProcess:
    solution = site["solution"]
    path = write_submission(tmp_path / f"{team[0]}{right}.csv", solution.ids,
                            [str(int(p)) for p in counted_predictions(solution, right, seed)])
    env = kaggle_env(site["port"], tmp_path / "home", *site["teams"][team])
    done = run_kaggle(env, "competitions", "submit", "-c", "digits", "-f", str(path), "-m", f"{right} right")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def everything_the_client_shows(site, tmp_path) -> dict:
    early = kaggle_env(site["port"], tmp_path / "home", *site["teams"]["Early Team"])
    out = {"submissions": run_kaggle(early, "competitions", "submissions", "-c", "digits", "-v").stdout,
           "board": run_kaggle(early, "competitions", "leaderboard", "-c", "digits", "--show", "-v").stdout}
    ref = csv_rows(out["submissions"])[0]["ref"]
    out["submission"] = run_kaggle(early, "competitions", "submission", ref).stdout
    folder = tmp_path / f"lb-{time.monotonic_ns()}"
    assert run_kaggle(early, "competitions", "leaderboard", "-c", "digits", "--download", "-p", str(folder)).returncode == 0
    with zipfile.ZipFile(folder / "digits.zip") as zf:
        out["csv"] = {name: zf.read(name).decode() for name in zf.namelist()}
    return out


def assert_never_shown(texts, exact_values, shown: str) -> None:
    for value in exact_values:
        for needle in (f"{value:.4f}", f"{value:.3f}"):
            if needle != shown:
                for text in texts:
                    assert needle not in text, (needle, text)


def test_rounded_board_scores_and_order_through_the_client(tmp_path, digits_competition):
    with protected_site(tmp_path, digits_competition, 'public_board = { mode = "rounded", decimals = 2 }',
                        "medals = { gold = 0.5, silver = 1.0 }") as site:
        rows = int((site["solution"].usage == PUBLIC).sum())
        # Two counts of right public rows that round to the same 2 decimals, the later one better.
        k = next(k for k in range(100, rows - 1) if round(k / rows, 2) == round((k + 1) / rows, 2)
                 and f"{k / rows:.4f}" != f"{round(k / rows, 2):.4f}")
        shown = f"{round(k / rows, 2):.2f}"
        submits = [submit_counted(site, tmp_path, "Early Team", k, seed=1).stdout,
                   submit_counted(site, tmp_path, "Late Team", k + 1, seed=2).stdout]
        for text in submits:  # CreateSubmission's message
            assert f"public accuracy {shown} (submission" in text
        seen = everything_the_client_shows(site, tmp_path)
        assert [r["publicScore"] for r in csv_rows(seen["submissions"])] == [shown]
        assert shown in seen["submission"]
        board = csv_rows(seen["board"])
        # Ranked as shown: equal shown scores go to the earlier submission, never by the exact score.
        assert [(r["teamName"], r["score"]) for r in board] == [("Early Team", shown), ("Late Team", shown)]
        web = requests.get(site["url"] + "/api/leaderboard", timeout=30).json()
        assert [r["team"] for r in web["rows"]] == [r["teamName"] for r in board]
        public_csv = list(csv.DictReader(io.StringIO(seen["csv"]["digits-publicleaderboard.csv"])))
        assert [(r["TeamName"], r["Score"]) for r in public_csv] == [("Early Team", shown), ("Late Team", shown)]
        assert_never_shown(submits + [seen["submissions"], seen["submission"], seen["board"],
                                      seen["csv"]["digits-publicleaderboard.csv"]], (k / rows, (k + 1) / rows), shown)

        # After the reveal: exact scores, the private board, and the medals of competition.toml.
        with site["app"].app_context():
            reveal(True)
            from harness.honest import assign_medals
            from leaderboard.ranking import current_board

            private = sorted((r for r in current_board().rows if r.private_rank), key=lambda r: r.private_rank)
            medals = assign_medals([r.private_rank for r in private], {"gold": 0.5, "silver": 1.0})
        after = everything_the_client_shows(site, tmp_path)
        assert sorted(after["csv"]) == ["digits-privateleaderboard.csv", "digits-publicleaderboard.csv"]
        private_csv = list(csv.DictReader(io.StringIO(after["csv"]["digits-privateleaderboard.csv"])))
        assert [(r["TeamName"], r["Medal"]) for r in private_csv] == [(r.team_name, m) for r, m in zip(private, medals)]
        assert medals == ["gold", "silver"]
        assert [r["Score"] for r in private_csv] == [f"{r.private_score:.4f}" for r in private]
        public_after = list(csv.DictReader(io.StringIO(after["csv"]["digits-publicleaderboard.csv"])))
        assert [r["TeamName"] for r in public_after] == ["Late Team", "Early Team"]  # exact again: k+1 beats k
        assert [r["Score"] for r in public_after] == [f"{(k + 1) / rows:.4f}", f"{k / rows:.4f}"]
        assert "Medal" not in public_after[0]


def test_ladder_board_scores_and_order_through_the_client(tmp_path, digits_competition):
    from harness.honest import ladder_step, shown_decimals

    with protected_site(tmp_path, digits_competition, 'public_board = "ladder"') as site:
        rows = int((site["solution"].usage == PUBLIC).sum())
        step = ladder_step(rows)
        decimals = shown_decimals(step)
        # One rung m * step: the first and last counts of right public rows that round to it.
        rung = [k for k in range(0, rows + 1) if round((k / rows) / step) == 10]
        first, last = rung[0], rung[-1]
        second = last - 1  # Early's better submission: not better than its shown score by a step
        assert first < second < last and second / rows <= 10 * step + step
        shown = f"{10 * step:.{decimals}f}"
        submits = [submit_counted(site, tmp_path, "Early Team", first, seed=1).stdout,
                   submit_counted(site, tmp_path, "Early Team", second, seed=3).stdout,
                   submit_counted(site, tmp_path, "Late Team", last, seed=2).stdout]
        for text in submits:
            assert f"public accuracy {shown} (submission" in text, text
        seen = everything_the_client_shows(site, tmp_path)
        assert [r["publicScore"] for r in csv_rows(seen["submissions"])] == [shown, shown]
        assert shown in seen["submission"]
        board = csv_rows(seen["board"])
        # Late's exact score is the best, but its shown score only ties Early's, which was set first.
        assert [(r["teamName"], r["score"]) for r in board] == [("Early Team", shown), ("Late Team", shown)]
        web = requests.get(site["url"] + "/api/leaderboard", timeout=30).json()
        assert web["public_board"] == "ladder" and [r["team"] for r in web["rows"]] == ["Early Team", "Late Team"]
        public_csv = list(csv.DictReader(io.StringIO(seen["csv"]["digits-publicleaderboard.csv"])))
        assert [(r["TeamName"], r["Score"]) for r in public_csv] == [("Early Team", shown), ("Late Team", shown)]
        assert_never_shown(submits + [seen["submissions"], seen["submission"], seen["board"],
                                      seen["csv"]["digits-publicleaderboard.csv"]],
                           (first / rows, second / rows, last / rows), shown)


# --- an image-folders competition: its folders listed and downloaded ----------------------------------

def test_image_folder_files_are_listed_and_downloaded(tmp_path):
    from tests.test_init_images import build, make_tree

    tree = make_tree(tmp_path / "src", per_class=3, test_per_class=2)
    comp, _ = build(tree, tmp_path / "comps", name="mine", image_size=16)
    public = comp.root / "public"
    expected = {p.relative_to(public).as_posix(): p for p in public.rglob("*") if p.is_file()}
    assert {"train.csv", "test.csv", "sample_submission.csv"} < set(expected) and len(expected) == 3 + 9 + 6
    app = make_test_app(tmp_path, comp.root)
    with app.app_context():
        team, token = create_team("Folder Team")
    with LiveServer(app) as server:
        env = kaggle_env(server.server.effective_port, tmp_path / "home", username=team.slug, key=token)
        listed = run_kaggle(env, "competitions", "files", "-c", "mine", "-v", "--page-size", "200")
        assert listed.returncode == 0, listed.stderr
        rows = csv_rows(listed.stdout)
        assert {r["name"]: int(r["size"]) for r in rows} == {n: p.stat().st_size for n, p in expected.items()}
        assert [r["name"] for r in rows[:3]] == ["sample_submission.csv", "test.csv", "train.csv"]  # then the folders
        first_page = run_kaggle(env, "competitions", "files", "-c", "mine", "-v")
        assert "Next Page Token = 20" not in first_page.stdout and len(csv_rows(first_page.stdout)) == 18

        everything = run_kaggle(env, "competitions", "download", "-c", "mine", "-p", str(tmp_path / "all"))
        assert everything.returncode == 0, everything.stderr
        with zipfile.ZipFile(tmp_path / "all" / "mine.zip") as zf:
            assert {n: zf.read(n) for n in zf.namelist()} == {n: p.read_bytes() for n, p in expected.items()}

        image = next(n for n in expected if n.startswith("train/bee/"))
        one = run_kaggle(env, "competitions", "download", "-c", "mine", "-f", image, "-p", str(tmp_path / "one"))
        assert one.returncode == 0, one.stdout + one.stderr
        assert (tmp_path / "one" / image).read_bytes() == expected[image].read_bytes()
        for secret in ("../private/solution.csv", "train/../../private/solution.csv", "train", "train/"):
            refused = run_kaggle(env, "competitions", "download", "-c", "mine", "-f", secret, "-p", str(tmp_path / "x"))
            assert refused.returncode == 1 and "There is no data file" in refused.stderr, refused.stdout + refused.stderr
        sneaky = requests.get(f"{server.url}/api/v1/podium/data/files/train/..%2F..%2Fprivate/solution.csv",
                              auth=(team.slug, token), timeout=30)
        assert sneaky.status_code == 404


# --- --wait on a checkpoint scored by a real `podium worker` process ----------------------------------

def test_submit_wait_follows_a_checkpoint_until_a_worker_process_scores_it(tmp_path, digits_competition):
    import timm
    import torch

    from harness.checkpoint import save_checkpoint

    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition, WORKER_TOKEN="worker-token-wait", JOB_LEASE_SECONDS=30)
    with app.app_context():
        team, token = create_team("Waiting Team")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=10).eval()
    checkpoint = save_checkpoint(model, tmp_path / "model.safetensors", library="timm", arch="test_efficientnet",
                                 num_classes=10)
    with LiveServer(app) as server:
        env = kaggle_env(server.server.effective_port, tmp_path / "home", username=team.slug, key=token)
        env["PYTHONUNBUFFERED"] = "1"
        client = subprocess.Popen([KAGGLE, "competitions", "submit", "-c", "digits", "-f", str(checkpoint), "-m", "model",
                                   "--wait", "240", "--poll-interval", "5"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            seen = []
            for line in client.stdout:  # the client polls GetSubmission: PENDING while no worker runs
                seen.append(line)
                if line.startswith("Submission status: PENDING"):
                    break
            assert any(line.startswith("Submission status: PENDING") for line in seen), "".join(seen)
            with app.app_context():
                sub = db.session.scalars(sa.select(Submission).where(Submission.team_id == team.id)).one()
                assert sub.status == "queued"
            worker = subprocess.run(
                [*PODIUM, "worker", "--server", server.url, "--token", "worker-token-wait", "--poll", "0.2", "--drain",
                 "--device", "cpu", "--cache", str(tmp_path / "worker-cache")],
                capture_output=True, text=True, timeout=300)
            assert worker.returncode == 0, worker.stderr[-3000:]
            rest, _ = client.communicate(timeout=120)
        finally:
            if client.poll() is None:
                client.kill()
        assert client.returncode == 0, "".join(seen) + rest
        with app.app_context():
            sub = db.session.get(Submission, sub.id)
            assert sub.status == "scored"
            expected = f"{sub.public_score:.4f}"
        assert f"Submission scored. Public score: {expected}" in rest, rest



def test_odd_json_from_a_client_is_a_400_in_kaggles_shape_never_a_500(podium):
    """Lone surrogates (JSON's "\\udc80"), digits that are not ASCII ("\\u00b2") and numbers past int64."""
    with podium["app"].app_context():
        team, token = create_team("Odd JSON")
    client = podium["app"].test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{team.slug}:{token}".encode()).decode()}
    cases = [
        ("/api/v1/security.OAuthService/IntrospectToken", '{"token": "%d.\\udc80abc"}' % team.id),
        (f"{SERVICE_PATH}/CreateSubmission", '{"competitionName": "digits", "blobFileTokens": "\\udc80"}'),
        (f"{SERVICE_PATH}/ListSubmissions", '{"competitionName": "digits", "pageSize": "\\u00b2"}'),
        (f"{SERVICE_PATH}/ListSubmissions", '{"competitionName": "digits", "pageSize": "%s"}' % ("9" * 5000)),
        (f"{SERVICE_PATH}/StartSubmissionUpload",
         '{"competitionName": "digits", "fileName": "p.csv", "contentLength": 99999999999999999999}'),
    ]
    for path, body in cases:
        answer = client.post(path, data=body, content_type="application/json", headers=auth)
        assert answer.status_code in (400, 401), (path, answer.status_code, answer.get_data(as_text=True)[:300])
        assert set(answer.get_json()) == {"code", "message"}, answer.get_json()


def test_only_one_put_of_a_single_use_upload_url_wins(podium):
    """A second PUT that passed the check while the first was still reading its body loses at the
    claim: one PUT stored, the other answered 404, the first one's bytes kept."""
    from leaderboard import kaggle_service
    from leaderboard.kaggle_service import KaggleRefusal

    app = podium["app"]
    with app.app_context():
        team, _ = create_team("Racers")
        team = db.session.get(Team, team.id)
        upload = kaggle_service.start_upload(team, "a.csv", 4)
        outcomes = []

        class SlowBody(io.BytesIO):  # the first PUT's body: the second PUT runs whole while it is read
            started = False

            def read(self, n=-1):
                if not self.started:
                    self.started = True
                    outcomes.append(("second", kaggle_service.receive_upload(upload, io.BytesIO(b"BBBB"), 4)))
                return super().read(n)

        with pytest.raises(KaggleRefusal) as lost:
            kaggle_service.receive_upload(upload, SlowBody(b"AAAA"), 4)
        assert lost.value.status == 404 and outcomes == [("second", 4)]
        _, data = kaggle_service._upload_paths(upload)
        assert data.read_bytes() == b"BBBB"


def test_too_many_open_uploads_says_when_the_first_one_expires(podium):
    with podium["app"].app_context():
        team, token = create_team("Openers")
    auth = (team.slug, token)
    limit = podium["app"].extensions["podium"].config.kaggle_max_open_uploads
    for _ in range(limit):
        assert start_upload(podium, auth, 10).status_code == 200
    refused = start_upload(podium, auth, 10)
    assert refused.status_code == 429 and set(refused.json()) == {"code", "message"}, refused.text
    lifetime = podium["app"].extensions["podium"].config.kaggle_upload_seconds
    assert 0 < int(refused.headers["Retry-After"]) <= lifetime  # not the daily limit's next midnight
