"""Build the 0.1 instance kept as test data: ``tests/data/v01_instance/`` and ``v01_instance.json``.

Run once with the first release's code (0.1, before the schema was owned by migrations)::

    PYTHONPATH=. python tests/data/make_v01_instance.py

It builds the digits competition (``decoys=40, seed=7``: the tests' ``digits_competition``, which
is deterministic) in a temporary folder, serves it with the real app (Flask's test client, CSRF
off) and, through the same endpoints a team, a worker and the organizer use, makes:

* four teams (one with a non-ASCII name, one whose first token was replaced, one with nothing);
* CSV submissions (scored, one refused) with notes and an attached training history;
* checkpoint submissions: one scored through the worker protocol, one left queued;
* final selections, and the private board revealed.

``v01_instance.json`` records the team tokens (the database holds only their hashes), the
competition's file hashes, and what the instance should contain, for the upgrade tests.
The script refuses to overwrite an existing instance.
"""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "v01_instance"
RECORD = HERE / "v01_instance.json"


def history_csv(epochs: int) -> bytes:
    rows = ["epoch,train_loss,train_acc,val_loss,val_acc"]
    for e in range(1, epochs + 1):
        t = e / epochs
        rows.append(f"{e},{2.2 * (1 - t) + 0.05:.4f},{0.3 + 0.68 * t:.4f},{1.6 * (1 - t) ** 2 + 0.35:.4f},{0.35 + 0.55 * t:.4f}")
    return ("\n".join(rows) + "\n").encode()


def checkpoint(seed: int) -> bytes:
    from safetensors.numpy import save as save_safetensors

    weights = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return save_safetensors({"fc.weight": weights},
                            metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})


def predictions(solution, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = np.where(solution.labels < 0, 0, solution.labels)
    wrong = rng.random(len(truth)) > accuracy
    return np.where(wrong, (truth + rng.integers(1, 10, len(truth))) % 10, truth)


def csv_bytes(solution, pred) -> bytes:
    return ("id,label\n" + "".join(f"{i},{int(p)}\n" for i, p in zip(solution.ids, pred))).encode()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    from harness.build import build_competition
    from harness.competition import load_solution
    from leaderboard import _instance_secret, create_app
    from leaderboard.auth import create_team, reset_token
    from leaderboard.extensions import db
    from leaderboard.models import Team

    if OUT.exists():
        print(f"{OUT} exists; remove it first to build it again", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="podium-v01-"))
    competition = build_competition("digits", work, name="digits", decoys=40, seed=7)
    solution = load_solution(competition)
    admin = _instance_secret(OUT, "admin_token")
    worker = _instance_secret(OUT, "worker_token")
    app = create_app({"COMPETITION_DIR": str(competition.root), "INSTANCE_PATH": str(OUT),
                      "ADMIN_TOKEN": admin, "WORKER_TOKEN": worker, "WTF_CSRF_ENABLED": False})

    tokens: dict[str, str] = {}
    with app.app_context():
        for name in ("Owls", "Zürich Füchse", "Badgers", "Quiet Ones"):
            team, tokens[name] = create_team(name)
        badgers = db.session.get(Team, 3)
        old_badger_token = tokens["Badgers"]
        tokens["Badgers"] = reset_token(badgers)

    def team_client(name):
        client = app.test_client()
        r = client.post("/login", data={"name": name, "token": tokens[name]})
        assert r.status_code == 302, r.status_code
        return client

    def upload(client, data: bytes, filename: str, note: str = "", history: bytes | None = None) -> int:
        payload = {"file": (io.BytesIO(data), filename), "note": note}
        if history is not None:
            payload["history"] = (io.BytesIO(history), "history.csv")
        r = client.post("/upload", data=payload, content_type="multipart/form-data")
        if r.status_code == 302:
            return int(r.location.rstrip("/").rsplit("/", 1)[1])
        assert r.status_code == 422, r.status_code  # a refused CSV stays, with its messages
        with app.app_context():
            from leaderboard.models import Submission
            import sqlalchemy as sa
            return db.session.scalar(sa.select(sa.func.max(Submission.id)))

    owls = team_client("Owls")
    upload(owls, csv_bytes(solution, predictions(solution, 0.62, 1)), "first.csv", note="logistic regression")
    upload(owls, csv_bytes(solution, predictions(solution, 0.81, 2)), "cnn.csv",
           note="small CNN, 12 epochs", history=history_csv(12))
    owl_ckpt = upload(owls, checkpoint(3), "resnet18.safetensors", note="resnet18 from scratch",
                      history=history_csv(20))
    foxes = team_client("Zürich Füchse")
    upload(foxes, csv_bytes(solution, predictions(solution, 0.74, 4)), "füchse.csv", note="<b>not bold</b> & co")
    upload(foxes, b"id,label\n1,7\n", "short.csv", note="oops")  # refused: rows missing
    upload(foxes, checkpoint(5), "waiting.safetensors", note="still queued")
    badgers_client = team_client("Badgers")
    upload(badgers_client, csv_bytes(solution, predictions(solution, 0.9, 6)), "best.csv")

    # A worker scores the Owls' checkpoint (the Foxes' stays queued: a worker claims in order).
    wc = app.test_client()
    auth = {"Authorization": f"Bearer {worker}"}
    job = wc.post("/api/jobs/claim", json={"worker": "gpu-box-1"}, headers=auth).get_json()
    assert job["submission_id"] == owl_ckpt, job
    r = wc.post(job["result_url"], json={"predictions": predictions(solution, 0.86, 7).tolist()},
                headers={**auth, "X-Podium-Lease": job["lease"]})
    assert r.status_code == 200 and r.get_json()["status"] == "done", r.get_json()

    # Finals: the Owls choose two (their first CSV and the checkpoint), the Foxes one.
    r = owls.post("/finals", data={"selected": ["1", str(owl_ckpt)]})
    assert r.status_code == 302, r.status_code
    r = foxes.post("/finals", data={"selected": ["4"]})
    assert r.status_code == 302, r.status_code

    organizer = app.test_client()
    assert organizer.post("/admin/login", data={"token": admin}).status_code == 302
    assert organizer.post("/admin/reveal", data={"reveal": "1"}).status_code == 302

    with app.app_context():
        db.engine.dispose()
    db_path = OUT / "podium.sqlite3"
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                  for t in ("team", "submission", "scoring_job", "setting")}
        statuses = dict(conn.execute("select status, count(*) from submission group by status").fetchall())
    for leftover in (OUT / "podium.sqlite3-wal", OUT / "podium.sqlite3-shm"):
        leftover.unlink(missing_ok=True)

    RECORD.write_text(json.dumps({
        "made_with": "podium 0.1.0 (schema by create_all, no alembic_version)",
        "competition": {"dataset": "digits", "name": "digits", "decoys": 40, "seed": 7,
                        "sha256": {p: sha256(competition.root / p) for p in
                                   ("competition.toml", "private/solution.csv", "public/test.npz")}},
        "tokens": tokens,
        "replaced_tokens": {"Badgers": old_badger_token},
        "admin_token": admin,
        "worker_token": worker,
        "counts": counts,
        "statuses": statuses,
        "revealed": True,
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} and {RECORD}: {counts}, {statuses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
