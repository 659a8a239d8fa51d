"""A hidden-test competition on a real server with a real `podium worker` process, no leaderboard changes:
CSV uploads are refused with the reason, a checkpoint is scored by the worker from its copy of the
hidden test set exactly as the harness scores it on the organizer's machine."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import requests

from tests.conftest import PODIUM
from harness.build import build_competition
from harness.competition import load_solution
from harness.scoring import score_file
from harness.submission import write_predictions_csv
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.models import Submission
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.slow

WORKER_TOKEN = "worker-token-hidden"


def test_hidden_test_refuses_csvs_and_scores_a_checkpoint_through_a_worker(tmp_path):
    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    comp = build_competition("digits", tmp_path / "comps", name="hidden", seed=4, hidden_test=True)
    assert not (comp.root / "public" / "test.npz").exists()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    checkpoint = save_checkpoint(model, tmp_path / "model.safetensors", library="torchvision", arch="resnet18", num_classes=10)
    solution = load_solution(comp)
    csv_path = tmp_path / "guess.csv"
    write_predictions_csv(csv_path, solution.ids, np.zeros(len(solution), dtype=np.int64), comp.classes)

    server = LiveServer(make_test_app(tmp_path, comp.root, WORKER_TOKEN=WORKER_TOKEN, JOB_LEASE_SECONDS=5)).start()
    try:
        with server.app.app_context():
            token = create_team("Hidden Hunters")[1]
        headers = {"Authorization": f"Bearer {token}"}
        with csv_path.open("rb") as fh:
            refused = requests.post(f"{server.url}/api/submissions", headers=headers, files={"file": ("guess.csv", fh)}, timeout=60)
        assert refused.status_code == 422, refused.text
        assert any("hidden" in m and "checkpoint" in m for m in refused.json()["errors"]), refused.text
        with checkpoint.open("rb") as fh:
            queued = requests.post(f"{server.url}/api/submissions", headers=headers, files={"file": ("model.safetensors", fh)}, timeout=60)
        assert queued.status_code == 202, queued.text
        run = subprocess.run(
            [*PODIUM, "worker", "--server", server.url, "--token", WORKER_TOKEN, "--poll", "0.2", "--drain",
             "--device", "cpu", "--cache", str(tmp_path / "worker-cache")],
            capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        with server.app.app_context():
            row = db.session.get(Submission, queued.json()["id"])
            status, public, private = row.status, row.public_score, row.private_score
        expected = score_file(checkpoint, comp, device="cpu")
        assert status == "scored"
        assert public == pytest.approx(expected.primary("public")) and private == pytest.approx(expected.primary("private"))
    finally:
        server.stop()


def test_a_hidden_image_folder_competition_is_scored_by_a_real_worker_from_the_workerdata_archive(tmp_path):
    """An `images` competition with --hidden-test: the jobs API serves harness/workerdata's archive
    (competition.toml, test.csv and the test images; no solution), the `podium worker` process
    unpacks it and streams the folder, and the score equals the organizer's own scoring."""
    import zipfile

    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint
    from tests.test_init_images import build, make_tree

    tree = make_tree(tmp_path / "src", per_class=4, test_per_class=3)
    comp, _ = build(tree, tmp_path / "comps", name="hidden-images", hidden_test=True, image_size=24)
    assert comp.folders and comp.hidden_test and not (comp.root / "public" / "test").exists()
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    checkpoint = save_checkpoint(model, tmp_path / "model.safetensors", library="torchvision", arch="resnet18",
                                 num_classes=3)

    server = LiveServer(make_test_app(tmp_path, comp.root, WORKER_TOKEN=WORKER_TOKEN, JOB_LEASE_SECONDS=30)).start()
    try:
        with server.app.app_context():
            token = create_team("Folder Folk")[1]
        # What a worker downloads: the test images under public/, the manifest, never the answers.
        archive = requests.get(f"{server.url}/api/jobs/test-data", headers={"Authorization": f"Bearer {WORKER_TOKEN}"},
                               timeout=60)
        assert archive.status_code == 200
        (tmp_path / "a.zip").write_bytes(archive.content)
        names = set(zipfile.ZipFile(tmp_path / "a.zip").namelist())
        assert {"competition.toml", "public/test.csv"} <= names and len(names) == 2 + 9
        assert not any("solution" in n or n.startswith("private") for n in names)
        # A team's token is not a worker's: the test images never reach a team this way.
        assert requests.get(f"{server.url}/api/jobs/test-data", headers={"Authorization": f"Bearer {token}"},
                            timeout=60).status_code in (401, 403)
        with checkpoint.open("rb") as fh:
            queued = requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                                   files={"file": ("model.safetensors", fh)}, timeout=60)
        assert queued.status_code == 202, queued.text
        run = subprocess.run(
            [*PODIUM, "worker", "--server", server.url, "--token", WORKER_TOKEN, "--poll", "0.2", "--drain",
             "--device", "cpu", "--cache", str(tmp_path / "worker-cache")],
            capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        with server.app.app_context():
            row = db.session.get(Submission, queued.json()["id"])
            status, public, private = row.status, row.public_score, row.private_score
        expected = score_file(checkpoint, comp, device="cpu")
        assert status == "scored", (status, run.stderr[-2000:])
        assert public == pytest.approx(expected.primary("public")) and private == pytest.approx(expected.primary("private"))
    finally:
        server.stop()
