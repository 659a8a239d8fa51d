"""The competition's pages on the board (leaderboard/pages.py), the hidden test set on the board, and
the Grad-CAM view of a team's own checkpoint (leaderboard/explanations.py), through Flask's test client."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time

import pytest

from harness.build import build_competition
from harness.competition import load_competition
from harness.pages import public_files
from leaderboard.extensions import db
from leaderboard.models import Submission
from leaderboard.services import create_team
from tests.live import make_test_app

WORKER = "pages-worker-token"
ADMIN = "pages-admin-token"
HOSTILE_MD = """# Welcome

<script>window.pwned = 1</script>
<img src=x onerror="window.pwned = 2">
<iframe src="https://example.com/"></iframe>
[click me](javascript:window.pwned=3) [docs](https://example.com/docs)
<a href="https://example.com" onmouseover="window.pwned=4">hover</a>
"""


def app_for(tmp_path, competition_root, **overrides):
    config = {"WORKER_TOKEN": WORKER, "ADMIN_TOKEN": ADMIN, "WTF_CSRF_ENABLED": False, **overrides}
    return make_test_app(tmp_path, competition_root, **config)


@pytest.fixture
def digits(tmp_path, digits_competition):
    root = tmp_path / "digits"
    shutil.copytree(digits_competition.root, root)
    return root


def test_the_four_pages_and_the_tabs(tmp_path, digits):
    client = app_for(tmp_path, digits).test_client()
    overview = client.get("/overview").get_data(as_text=True)
    assert "Handwritten digits" in overview and 'aria-current="page">Overview' in overview
    evaluation = client.get("/evaluation").get_data(as_text=True)
    assert "<strong>accuracy</strong>" in evaluation and "95 %" in evaluation and "id,label" in evaluation
    rules = client.get("/rules").get_data(as_text=True)
    assert "<strong>5</strong> times per UTC day" in rules
    data = client.get("/data").get_data(as_text=True)
    for name in ("train.npz", "test.npz", "sample_submission.csv"):
        assert f'href="/data/{name}"' in data
    board = client.get("/").get_data(as_text=True)
    for href in ("/overview", "/data", "/evaluation", "/rules"):
        assert f'href="{href}"' in board
    assert "hidden-test" not in board and "test set is <strong>hidden" not in board


def test_a_hostile_description_renders_without_script_and_is_cached_per_mtime(tmp_path, digits, monkeypatch):
    from leaderboard import pages

    (digits / "description.md").write_text(HOSTILE_MD, encoding="utf-8")
    client = app_for(tmp_path, digits).test_client()
    calls = []
    real = pages.render_markdown
    monkeypatch.setattr(pages, "render_markdown", lambda text: calls.append(1) or real(text))
    html = client.get("/overview").get_data(as_text=True)
    body = html[html.index('id="description"'):html.index("</article>")]
    tags = {t.lower() for t in re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", body)}
    assert tags <= {"h1", "p", "a"}, tags  # no script, img, iframe element: only the Markdown's own
    assert not re.search(r"<[^>]*\son\w+\s*=", body)  # no event handler on any real element
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", body, re.I)
    assert '<a href="https://example.com/docs" rel="nofollow noopener">docs</a>' in body
    assert "&lt;script&gt;" in body  # shown as text
    client.get("/overview")
    assert len(calls) == 1  # the second view is served from the cache
    path = digits / "description.md"
    path.write_text("# Changed\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert "<h1>Changed</h1>" in client.get("/overview").get_data(as_text=True) and len(calls) == 2


def test_data_files_download_whole_and_match_their_sha256_and_size(tmp_path, digits):
    client = app_for(tmp_path, digits).test_client()
    page = client.get("/data").get_data(as_text=True)
    listed = public_files(load_competition(digits))
    for f in listed:
        assert f.sha256 in page and f'data-bytes="{f.size}"' in page
        with client.get(f"/data/{f.path}") as reply:
            assert reply.status_code == 200 and "attachment" in reply.headers["Content-Disposition"]
            body = reply.get_data()
        assert len(body) == f.size and hashlib.sha256(body).hexdigest() == f.sha256
    sums = client.get("/data/SHA256SUMS").get_data(as_text=True)
    assert sums == "".join(f"{f.sha256}  {f.path}\n" for f in listed)
    # Conditional and partial requests: send_file streams the file from disk.
    with client.get("/data/train.npz") as first:
        etag = first.headers["ETag"]
    with client.get("/data/train.npz", headers={"If-None-Match": etag}) as cached:
        assert cached.status_code == 304
    with client.get("/data/train.npz", headers={"Range": "bytes=0-9"}) as part:
        assert part.status_code == 206 and part.get_data() == (digits / "public" / "train.npz").read_bytes()[:10]


def test_nothing_outside_public_is_served_and_no_link_escapes(tmp_path, digits):
    os.symlink(digits / "private" / "solution.csv", digits / "public" / "answers.csv")
    os.symlink(digits / "private", digits / "public" / "more")
    (digits / "public" / ".secret").write_text("x")
    (digits / "public" / "notes").mkdir()
    (digits / "public" / "notes" / "readme.txt").write_text("fine")
    client = app_for(tmp_path, digits).test_client()
    page = client.get("/data").get_data(as_text=True)
    assert "answers.csv" not in page and "more/" not in page and ".secret" not in page and "notes/readme.txt" in page
    with client.get("/data/notes/readme.txt") as reply:
        assert reply.get_data() == b"fine"
    for url in ("/data/answers.csv", "/data/more/solution.csv", "/data/.secret", "/data/../private/solution.csv",
                "/data/%2e%2e/private/solution.csv", "/data/notes/../../private/solution.csv", "/data//etc/passwd",
                "/data/notes", "/data/", "/data/..%2fprivate%2fsolution.csv", "/data/notes%5c..%5c..%5cprivate"):
        with client.get(url, follow_redirects=True) as reply:  # //etc/passwd: a redirect to /data/etc/passwd
            assert reply.status_code == 404, (url, reply.status_code)
            assert b"Usage" not in reply.get_data()


def test_a_hidden_test_set_can_never_be_downloaded_and_the_pages_say_so(tmp_path):
    comp = build_competition("digits", tmp_path / "comps", name="hidden", seed=3, hidden_test=True)
    app = app_for(tmp_path, comp.root)
    with app.app_context():
        team, token = create_team("Peekers")
    client = app.test_client()
    assert client.post("/login", data={"name": "Peekers", "token": token}).status_code == 302
    board = client.get("/").get_data(as_text=True)
    assert "test set is <strong>hidden</strong>" in board
    data = client.get("/data").get_data(as_text=True)
    assert "The test set is hidden (checkpoints only)" in data and "test.npz" not in data
    test_bytes = (comp.root / "private" / "test.npz").read_bytes()
    bearer = {"Authorization": f"Bearer {token}"}
    for url, headers in [
        ("/data/test.npz", {}), ("/data/../private/test.npz", {}), ("/data/%2e%2e/private/test.npz", {}),
        ("/static/../private/test.npz", {}), ("/static/%2e%2e/private/test.npz", {}),
        ("/api/jobs/test-data", {}), ("/api/jobs/test-data", bearer),
        ("/api/jobs/1/file", bearer), ("/submissions/1/file", {}), ("/data/SHA256SUMS", {}),
    ]:
        with client.get(url, headers=headers, follow_redirects=True) as reply:
            body = reply.get_data()
        assert test_bytes not in body and b"test.npz" not in body, url
        if url != "/data/SHA256SUMS":
            assert reply.status_code in (401, 403, 404), (url, reply.status_code)
    # The worker protocol answers the worker token only: a team cannot claim a job to get its data.
    assert client.post("/api/jobs/claim", json={"worker": "me"}, headers=bearer).status_code in (401, 403)
    assert client.post("/api/jobs/claim", json={"worker": "me"}).status_code in (401, 403)
    # A prediction CSV is refused with the reason, on the page and through the API: 422, never a 500.
    csv = b"id,label\n" + b"".join(f"x{i},0\n".encode() for i in range(3))
    page = client.post("/upload", data={"file": (io.BytesIO(csv), "guess.csv")}, content_type="multipart/form-data")
    assert page.status_code == 422
    text = page.get_data(as_text=True)
    assert "hidden" in text and "checkpoint" in text
    api = app.test_client().post("/api/submissions", headers=bearer, data={"file": (io.BytesIO(csv), "g.csv")},
                                 content_type="multipart/form-data")
    assert api.status_code == 422 and any("hidden" in m for m in api.get_json()["errors"])


def test_a_large_image_folders_competition_lists_folders_and_hashes_nothing_per_view(tmp_path, monkeypatch):
    """Beyond 500 files the Data page lists the top files and a row per folder; the listing comes from
    the digests `podium init images` wrote, is kept between views, and follows changes."""
    from harness import pages as harness_pages
    from harness.images import build_images_competition
    from tests.test_init_images import make_tree

    tree = make_tree(tmp_path / "src", per_class=170, test_per_class=10)  # 510 + 30 images, 3 manifests
    comp, _ = build_images_competition(tree["train"], tree["test"], tree["labels"], tmp_path / "comps", "many",
                                       image_size=16, workers=1)
    public = comp.root / "public"
    on_disk = {p.relative_to(public).as_posix(): p.read_bytes() for p in public.rglob("*") if p.is_file()}
    assert len(on_disk) == 543
    hashed, scans = [], []
    real_hash, real_scan = harness_pages.sha256_file, harness_pages.scan_public
    monkeypatch.setattr(harness_pages, "sha256_file", lambda path: hashed.append(path) or real_hash(path))
    monkeypatch.setattr(harness_pages, "scan_public", lambda path: scans.append(path) or real_scan(path))
    client = app_for(tmp_path, comp.root).test_client()

    page = client.get("/data").get_data(as_text=True)
    assert hashed == [] and len(scans) == 1  # every digest came from the build's listing
    assert "543 files" in page and "SHA256SUMS" in page
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        assert f'href="/data/{name}"' in page and hashlib.sha256(on_disk[name]).hexdigest() in page
    folders = re.findall(r'<code>(\w+)/</code></td>\s*<td class="num" data-files="(\d+)">[^<]*</td>\s*'
                         r'<td class="num" data-bytes="(\d+)">', page)
    size = lambda prefix: sum(len(b) for n, b in on_disk.items() if n.startswith(prefix))  # noqa: E731
    assert folders == [("test", "30", str(size("test/"))), ("train", "510", str(size("train/")))]
    assert "train/ant/0.jpg" not in page  # no row per image
    sums = client.get("/data/SHA256SUMS").get_data(as_text=True)
    assert sums == "".join(f"{hashlib.sha256(on_disk[n]).hexdigest()}  {n}\n" for n in sorted(on_disk))
    with client.get("/data/train/ant/0.jpg") as reply:  # every image stays downloadable, streamed
        assert reply.status_code == 200 and reply.get_data() == on_disk["train/ant/0.jpg"]
    client.get("/data")
    assert len(scans) == 1 and hashed == []  # the second view stats a few folders and reads nothing

    (public / "train" / "ant" / "extra.jpg").write_bytes(on_disk["train/ant/0.jpg"] + b"more")  # a file added
    (public / "train.csv").write_text("file,label\n", encoding="utf-8")  # a manifest rewritten in place
    page = client.get("/data").get_data(as_text=True)
    assert len(scans) == 2 and sorted(p.name for p in hashed) == ["extra.jpg", "train.csv"]  # only what changed
    assert "544 files" in page and 'data-files="511"' in page
    assert hashlib.sha256(b"file,label\n").hexdigest() in page


def status(client, url: str) -> int:
    with client.get(url) as reply:
        return reply.status_code


def _scored_checkpoint(app, comp, team_id, tmp_path) -> int:
    """A resnet18 checkpoint accepted and scored through the job protocol (predictions from the harness)."""
    import torch
    import torchvision

    from harness.checkpoint import predict_checkpoint, save_checkpoint
    from leaderboard.intake import Upload, accept

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", library="torchvision", arch="resnet18", num_classes=10)
    from leaderboard.models import Team

    with app.app_context():
        sub_id = accept(db.session.get(Team, team_id), Upload("m.safetensors", path.read_bytes())).id
    worker = app.test_client()
    auth = {"Authorization": f"Bearer {WORKER}"}
    job = worker.post("/api/jobs/claim", json={"worker": "w"}, headers=auth).get_json()
    predictions = [int(v) for v in predict_checkpoint(path, comp, device="cpu")]
    reply = worker.post(job["result_url"], json={"predictions": predictions},
                        headers={**auth, "X-Podium-Lease": job["lease"]})
    assert reply.status_code == 200 and reply.get_json()["status"] == "done", reply.get_data(as_text=True)
    return sub_id


@pytest.mark.slow
def test_grad_cam_of_a_teams_own_checkpoint_on_validation_images(tmp_path, digits):
    from leaderboard.explanations import EXPLAIN_IMAGES, wait_for_explanations

    comp = load_competition(digits)
    app = app_for(tmp_path, digits)
    with app.app_context():
        owner, owner_token = create_team("Owners")
        owner_id = owner.id
        _, other_token = create_team("Others")
    sub_id = _scored_checkpoint(app, comp, owner_id, tmp_path)
    team = app.test_client()
    team.post("/login", data={"name": "Owners", "token": owner_token})
    other = app.test_client()
    other.post("/login", data={"name": "Others", "token": other_token})
    anonymous = app.test_client()

    page = team.get(f"/submissions/{sub_id}").get_data(as_text=True)
    assert "Grad-CAM on validation images" in page and "Compute Grad-CAM" in page
    for outsider in (other, anonymous):
        assert outsider.post(f"/submissions/{sub_id}/gradcam").status_code == 404
    assert team.post(f"/submissions/{sub_id}/gradcam").status_code == 302
    with app.app_context():
        wait_for_explanations(300)
    page = team.get(f"/submissions/{sub_id}").get_data(as_text=True)
    assert "gradcam_grid.png" in page, page[page.find('id="gradcam"'):][:2000]
    with app.app_context():
        sub = db.session.get(Submission, sub_id)
        from leaderboard.explanations import explanation_dir

        folder = explanation_dir(sub)
    summary = json.loads((folder / "explain.json").read_text())
    assert len(summary["items"]) == EXPLAIN_IMAGES
    # Validation images only: every explained image is a row of public/train.npz's held-out split.
    from baseline.data import stratified_split
    from harness.competition import load_train

    _, val_idx = stratified_split(load_train(comp)[1], 0.1, 42)
    assert summary["validation split"].startswith(f"{len(val_idx)} images (fraction 0.1, seed 42")
    assert {item["train_index"] for item in summary["items"]} <= set(int(i) for i in val_idx)
    with team.get(f"/submissions/{sub_id}/gradcam/gradcam_grid.png") as grid:
        assert grid.status_code == 200 and grid.get_data()[:8] == b"\x89PNG\r\n\x1a\n"
    assert status(team, f"/submissions/{sub_id}/gradcam/overlays/001.png") == 200
    admin = app.test_client()
    admin.post("/admin/login", data={"token": ADMIN})
    assert status(admin, f"/submissions/{sub_id}/gradcam/gradcam_grid.png") == 200
    for outsider in (other, anonymous):
        assert status(outsider, f"/submissions/{sub_id}/gradcam/gradcam_grid.png") == 404
    for name in ("explain.json", "index.html", "../../../digits/private/solution.csv", "overlays/999.png"):
        assert status(team, f"/submissions/{sub_id}/gradcam/{name}") == 404
    # Cached: asking again starts nothing.
    started = time.monotonic()
    assert team.post(f"/submissions/{sub_id}/gradcam").status_code == 302
    with app.app_context():
        wait_for_explanations(5)
    assert time.monotonic() - started < 5
