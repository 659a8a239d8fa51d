"""Several server processes (gunicorn workers) starting together on a new instance and database."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

START = """
import os, sys, time
from leaderboard import create_app
open(sys.argv[4] + f".ready-{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[4]):  # start together, after the slow imports
    time.sleep(0.001)
app = create_app({"COMPETITION_DIR": sys.argv[1], "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[2],
                  "INSTANCE_PATH": sys.argv[3]})
print("started", app.config["SECRET_KEY"])
"""


def test_processes_starting_together_share_one_schema_and_one_secret(tmp_path, digits_competition):
    db = tmp_path / "podium.sqlite3"
    instance = tmp_path / "instance"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", START, str(digits_competition.root), str(db), str(instance), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0 and out.startswith("started "), err[-2000:]
    # One secret key for all, or a session made by one process is refused by the next.
    keys = {out.split()[1] for out, _ in outputs}
    assert keys == {(instance / "secret_key").read_text().strip()}
    assert (instance / "secret_key").stat().st_mode & 0o777 == 0o600
    assert not [p for p in instance.iterdir() if p.name.startswith(".")]
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("select key, value from setting")) == [("board_version", "0"), ("revealed", "0")]
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
