"""The leaderboard as a real waitress server on 127.0.0.1, and the podium CLI against it."""
from __future__ import annotations

import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
import pytest
import requests
import sqlalchemy as sa

from tests.conftest import PODIUM, noisy_predictions, write_submission
from leaderboard import create_app
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import Submission, Team
from tests.live import LiveServer
from tests.pg import database_config

pytestmark = pytest.mark.slow


@pytest.fixture
def instance(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    return competition, tmp_path / "instance"


@pytest.mark.usefixtures("each_database")  # on PostgreSQL the limit holds by a row lock on the team
def test_daily_limit_holds_under_20_concurrent_uploads(instance, digits_solution):
    competition, instance_dir = instance
    app = create_app({"COMPETITION_DIR": str(competition), "INSTANCE_PATH": str(instance_dir), "WORKER_TOKEN": "w",
                      **database_config()})
    with app.app_context():
        team, token = create_team("Racers")
        team_id = team.id
    preds = noisy_predictions(digits_solution, 0.8)
    body = ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(digits_solution.ids, preds))).encode()
    barrier = threading.Barrier(20)

    def one(i: int) -> int:
        barrier.wait(timeout=30)
        response = requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                                 files={"file": (f"s{i}.csv", body)}, timeout=60)
        return response.status_code

    with LiveServer(app, threads=8) as server:
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(one, range(20)))
    assert sorted(codes) == [201] * 5 + [429] * 15, codes
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(Submission.team_id == team_id)) == 5


def run_podium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, timeout=120)


def test_cli_team_add_and_submit_against_a_real_server(instance, digits_solution, tmp_path):
    competition, instance_dir = instance
    added = run_podium("team", "add", "CLI Crew", "--competition", str(competition), "--instance", str(instance_dir))
    assert added.returncode == 0, added.stderr
    token = next(line.split()[1] for line in added.stdout.splitlines() if line.startswith("token:"))
    listed = run_podium("team", "list", "--competition", str(competition), "--instance", str(instance_dir))
    assert "cli-crew\t0 submissions\tCLI Crew" in listed.stdout
    app = create_app({"COMPETITION_DIR": str(competition), "INSTANCE_PATH": str(instance_dir)})
    good = write_submission(tmp_path / "good.csv", digits_solution.ids,
                            [str(p) for p in noisy_predictions(digits_solution, 0.9, seed=1)])
    bad = write_submission(tmp_path / "bad.csv", digits_solution.ids[:10], ["7"] * 10)
    history = tmp_path / "history.csv"
    history.write_text("epoch,train_loss,train_acc,val_loss,val_acc\n1,0.9,0.7,0.8,0.72\n2,0.5,0.85,0.6,0.8\n")
    with LiveServer(app, threads=8) as server:
        ok = run_podium("submit", str(good), "--server", server.url, "--token", token, "--note", "from the CLI",
                        "--history", str(history))
        refused = run_podium("submit", str(bad), "--server", server.url, "--token", token)
        wrong = run_podium("submit", str(good), "--server", server.url, "--token", "1.not-the-token")
        board = requests.get(f"{server.url}/api/leaderboard", timeout=10).json()
    assert ok.returncode == 0, ok.stderr
    assert "public accuracy 0.9" in ok.stdout or "public accuracy 0.8" in ok.stdout
    assert refused.returncode == 2 and "569 of the 579 test ids are missing" in refused.stderr
    assert wrong.returncode == 2 and "valid team token" in wrong.stderr
    assert board["rows"][0]["team"] == "CLI Crew" and board["rows"][0]["entries"] == 2
    with app.app_context():
        sub = db.session.scalars(sa.select(Submission).where(Submission.status == "scored")).one()
        assert sub.note == "from the CLI" and sub.history_csv.startswith("epoch,")


def test_cli_team_add_without_instance_uses_the_current_folder_like_serve(instance, tmp_path):
    """``--instance`` defaults to ./instance for every command; team add used Flask's folder beside
    the leaderboard package, so a team added from another folder never reached ``podium serve``."""
    competition, _ = instance
    cwd = tmp_path / "organizer"
    cwd.mkdir()
    added = subprocess.run([*PODIUM, "team", "add", "Here", "--competition", str(competition)], cwd=cwd,
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert (cwd / "instance" / "podium.sqlite3").is_file()
    app = create_app({"COMPETITION_DIR": str(competition), "INSTANCE_PATH": str(cwd / "instance")})
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Team)) == 1
    listed = subprocess.run([*PODIUM, "team", "list", "--competition", str(competition)], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert "here\t0 submissions\tHere" in listed.stdout


def test_submit_waiting_for_a_worker_reports_a_lost_server_or_an_error_answer_cleanly(instance):
    """``podium submit --wait`` polls the server: a connection error was a traceback (exit 1), and an
    error answer (a 404) was read as a submission with no status."""
    import socket

    from harness.errors import PodiumError
    from leaderboard.client.submit import _wait

    competition, instance_dir = instance
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PodiumError, match="Could not reach"):
        _wait(f"http://127.0.0.1:{port}", {}, 1, timeout=5)
    app = create_app({"COMPETITION_DIR": str(competition), "INSTANCE_PATH": str(instance_dir)})
    with LiveServer(app) as server, pytest.raises(PodiumError) as refused:
        _wait(server.url, {"Authorization": "Bearer 1.wrong"}, 1, timeout=5)
    assert refused.value.messages == ["There is nothing here."]


def test_podium_serve_generates_tokens_and_serves(instance):
    import socket
    import time

    competition, instance_dir = instance
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*PODIUM, "serve", "--competition", str(competition), "--instance", str(instance_dir),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "podium serve did not start"
                time.sleep(0.3)
        assert response.status_code == 200 and "Public leaderboard" in response.text
        assert response.headers["Server"] == "podium"
        admin_token = (instance_dir / "admin_token").read_text().strip()
        worker_token = (instance_dir / "worker_token").read_text().strip()
        assert len(admin_token) >= 40 and admin_token != worker_token
        assert (instance_dir / "admin_token").stat().st_mode & 0o077 == 0
        admin = requests.get(f"http://127.0.0.1:{port}/admin/", headers={"Authorization": f"Bearer {admin_token}"},
                             timeout=5, allow_redirects=False)
        assert admin.status_code == 200 and "Organizer" in admin.text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"organizer token: in {instance_dir.resolve() / 'admin_token'}" in output
    assert admin_token not in output, "the token itself is never printed, only where it is"
