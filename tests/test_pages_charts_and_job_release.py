"""Pages and job release: readable training-curve ticks, the per-class table and heat map of every
split after reveal (and of none but the public one before), a worker that gives its job back when
stopped, and every page in a real Chromium at desktop and phone widths.

The pages are screenshotted at 1280 and 390 px; set ``PODIUM_SCREENSHOTS=DIR`` to keep the PNGs.
"""
from __future__ import annotations

import html
import io
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa
from safetensors.numpy import save as save_safetensors

from tests.conftest import PODIUM, noisy_predictions, write_submission
from tests.live import LiveServer, make_test_app
from harness.competition import PRIVATE, PUBLIC
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept
from leaderboard.models import ScoringJob, Submission, Team
from leaderboard.charts import epoch_ticks, line_chart

ADMIN = "pages-admin-token"
WORKER = "pages-worker-token"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = {"desktop": 1280, "phone": 390}


# --- helpers --------------------------------------------------------------------------------------

def make_app(root: Path, competition_dir: Path, **extra):
    return make_test_app(root, competition_dir, ADMIN_TOKEN=ADMIN, WORKER_TOKEN=WORKER, **extra)


def served(app) -> LiveServer:
    return LiveServer(app, threads=4).start()


def history_csv(epochs: int) -> bytes:
    """A plausible training history: train loss falling, validation flattening out."""
    rows = ["epoch,train_loss,train_acc,val_loss,val_acc"]
    for e in range(1, epochs + 1):
        t = e / epochs
        rows.append(f"{e},{2.2 * (1 - t) + 0.05:.4f},{0.3 + 0.68 * t:.4f},{1.6 * (1 - t) ** 2 + 0.35:.4f},{0.35 + 0.55 * t:.4f}")
    return ("\n".join(rows) + "\n").encode()


def csv_of(solution, classes, predictions) -> bytes:
    return ("id,label\n" + "".join(f"{i},{classes[p]}\n" for i, p in zip(solution.ids, predictions))).encode()


def fake_checkpoint(seed: int) -> bytes:
    """A file with a valid card: enough to become a queued job (no worker here runs it)."""
    weights = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return save_safetensors({"w": weights}, metadata={"library": "torchvision", "arch": "resnet18", "num_classes": "10"})


def tick_labels(page: str) -> list[tuple[int, float, list[tuple[float, str, str]]]]:
    """(width, font size, x tick labels (x, text, anchor)) of every chart on a page, in SVG units."""
    charts = []
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        width = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))
        font = re.search(r'<svg[^>]*font-size="(\d+)"', svg)
        font = float(font.group(1)) if font else 12.0  # the stylesheet's size for .tick otherwise
        bottom_row = re.findall(r'<text class="tick" x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)">([^<]*)</text>', svg)
        ys = [float(y) for _, y, _, _ in bottom_row]
        low = max(ys)  # the x axis labels sit below every y axis label
        charts.append((width, font, [(float(x), html.unescape(text), anchor) for x, y, anchor, text in bottom_row if float(y) == low]))
    return charts


def extents(ticks, font: float) -> list[tuple[float, float]]:
    """Where each label starts and ends; a system-ui glyph is at most about 0.62 em wide."""
    out = []
    for x, text, anchor in ticks:
        w = len(text) * 0.62 * font
        start = x if anchor == "start" else (x - w if anchor == "end" else x - w / 2)
        out.append((start, start + w))
    return out


# --- 1. the training curves' x axis ---------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 3, 8, 9, 10, 12, 25, 40, 100, 1000])
def test_epoch_ticks_are_few_whole_and_round(epochs):
    ticks = epoch_ticks([float(e) for e in range(1, epochs + 1)])
    assert 1 <= len(ticks) <= 8
    assert all(isinstance(t, int) and 1 <= t <= epochs for t in ticks)
    steps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert len(steps) <= 1 and all(re.fullmatch(r"[125]0*", str(s)) for s in steps)
    if epochs <= 8:
        assert ticks == list(range(1, epochs + 1))


def test_fractional_epochs_get_whole_ticks_only():
    assert epoch_ticks([0.5, 1.0, 1.5, 2.0, 2.5]) == [1, 2]
    assert epoch_ticks([0.25, 0.5]) == []  # nothing whole to label; the points' tooltips still say


@pytest.mark.parametrize("epochs", [3, 10, 12, 40, 250, 1700])
def test_submission_page_curve_labels_do_not_overlap(tmp_path, digits_competition, digits_solution, epochs):
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Curves")
    client = app.test_client()
    client.post("/login", data={"name": "Curves", "token": token})
    pred = noisy_predictions(digits_solution, 0.8)
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, pred)), "sub.csv"),
        "history": (io.BytesIO(history_csv(epochs)), "history.csv"),
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.location).get_data(as_text=True)
    charts = tick_labels(page)
    assert len(charts) == 2
    for width, font, ticks in charts:
        assert 1 <= len(ticks) <= 8
        assert all(re.fullmatch(r"\d+", text) for _, text, _ in ticks)  # whole epochs, no "epoch " prefix
        spans = extents(ticks, font)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start - end >= font / 2, f"{epochs} epochs: tick labels {ticks} overlap or touch"
        assert spans[0][0] >= 0 and spans[-1][1] <= width
    assert "x axis: epoch" in page and f"epoch {epochs}" in page  # the axis is named; tooltips too


@pytest.mark.parametrize("values", [(0.05, 2.25), (0.9012, 0.9031), (0.3, 0.98), (0.5, 0.5), (120.0, 80000.0), (0.0, 1e-4),
                                    (0.5, 0.5 + 1.3e-12), (1e-300, 3e-300), (0.0, 0.0)])
def test_y_ticks_are_round_never_below_zero_for_positive_data_and_fit_left_of_the_axis(values):
    chart = line_chart([("s", [(1.0, values[0]), (2.0, values[1])])])
    texts = [text for _, text in chart.yticks]
    numbers = [float(t) for t in texts]
    assert 2 <= len(texts) <= 5 and len(set(texts)) == len(texts)  # distinct labels, none repeated by rounding
    assert numbers[0] <= min(values) and numbers[-1] >= max(values) and numbers[0] >= 0
    steps = {round(b - a, 12) for a, b in zip(numbers, numbers[1:])}
    assert len(steps) == 1 and re.fullmatch(r"(1|2|2\.5|5)(e[-+]?\d+)?", f"{steps.pop() / 10 ** np.floor(np.log10(numbers[1] - numbers[0])):g}")
    font = chart.tick_font
    for text in texts:  # each label ends 4 units left of the axis and must start inside the picture
        assert chart.left - 4 - len(text) * 0.62 * font >= 0, text


def test_a_history_with_extreme_losses_still_shows_its_page(tmp_path, digits_competition, digits_solution):
    """read_history accepts any finite loss; 1e308 beside -1e308 overflowed the y axis (OverflowError: a 500 on the
    team's and the organizer's submission page)."""
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Extremes")
    client = app.test_client()
    client.post("/login", data={"name": "Extremes", "token": token})
    history = b"epoch,train_loss,train_acc,val_loss,val_acc\n1,1e308,0.5,0.8,0.5\n2,-1e308,0.6,0.7,0.6\n3,0.4,0.7,0.6,0.65\n"
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, noisy_predictions(digits_solution, 0.8))), "s.csv"),
        "history": (io.BytesIO(history), "history.csv"),
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(response.location)
    assert page.status_code == 200 and page.get_data(as_text=True).count("<svg") == 2


# --- 2. the per-class table and heat map of each split --------------------------------------------

def rendered_cm(page: str) -> list[list[int]]:
    table = re.search(r'<table class="cm">.*?<tbody>(.*?)</tbody>', page, flags=re.S).group(1)
    return [[int(v) for v in re.findall(r"<td[^>]*>(\d+)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]


def rendered_support(page: str) -> list[int]:
    table = re.search(r'<table class="per-class">.*?<tbody>(.*?)</tbody>', page, flags=re.S).group(1)
    return [int(row[-1]) for row in (re.findall(r'<td class="num">([^<]*)</td>', r) for r in re.findall(r"<tr>(.*?)</tr>", table))]


def test_every_split_has_its_table_and_heat_map_after_reveal_and_only_public_before(tmp_path, digits_competition, digits_solution):
    app = make_app(tmp_path, digits_competition.root, WTF_CSRF_ENABLED=False, TESTING=True)
    with app.app_context():
        _, token = create_team("Splitters")
    client = app.test_client()
    client.post("/login", data={"name": "Splitters", "token": token})
    pred = noisy_predictions(digits_solution, 0.7, seed=3)
    response = client.post("/upload", content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_of(digits_solution, digits_competition.classes, pred)), "sub.csv")})
    sub_url = response.location
    with app.app_context():
        result = db.session.scalar(sa.select(Submission)).result_json
    cms = {split: result[split]["confusion_matrix"] for split in ("public", "private", "all")}
    supports = {split: [c["support"] for c in result[split]["per_class"]] for split in cms}
    assert len({str(cm) for cm in cms.values()}) == 3 and len({str(s) for s in supports.values()}) == 3
    private_n = str(int((digits_solution.usage == PRIVATE).sum()))
    assert private_n != str(int((digits_solution.usage == PUBLIC).sum()))

    # Before reveal: the public split only, whatever the address asks for; no switcher.
    for query in ("", "?split=private", "?split=all", "?split=nonsense"):
        page = client.get(sub_url + query).get_data(as_text=True)
        assert rendered_cm(page) == cms["public"] and rendered_support(page) == supports["public"], query
        assert "Per class (public)" in page and "Confusion matrix (public)" in page
        assert 'class="splits"' not in page and "split=private" not in page and "(private)" not in page
        assert f'<td class="num">{private_n}</td>' not in page  # the private row count is not shown either

    client_admin = app.test_client()
    client_admin.post("/admin/login", data={"token": ADMIN})
    assert client_admin.post("/admin/reveal", data={"reveal": "1"}).status_code == 302

    page = client.get(sub_url).get_data(as_text=True)  # still public by default, with the switcher
    assert rendered_cm(page) == cms["public"]
    links = re.findall(r'href="([^"]*split=(\w+)#breakdown)"', page)
    assert sorted(name for _, name in links) == ["all", "private"]
    assert '<strong aria-current="page">public</strong>' in page
    for href, name in links:
        shown = client.get(html.unescape(href)).get_data(as_text=True)
        assert rendered_cm(shown) == cms[name] and rendered_support(shown) == supports[name], name
        label = {"private": "private", "all": "all rows"}[name]
        assert f"Per class ({label})" in shown and f"Confusion matrix ({label})" in shown
        assert f'<strong aria-current="page">{label}</strong>' in shown
        # the organizer sees the same page
        assert rendered_cm(client_admin.get(html.unescape(href)).get_data(as_text=True)) == cms[name]

    # Another team never opens it, split or not.
    with app.app_context():
        _, rival_token = create_team("Rivals")
    rival = app.test_client()
    rival.post("/login", data={"name": "Rivals", "token": rival_token})
    assert rival.get(sub_url + "?split=private").status_code == 404


# --- 3. a stopping worker gives its job back ------------------------------------------------------

def queue_one_checkpoint(app, team_name: str, seed: int = 0) -> int:
    with app.app_context():
        team, _ = create_team(team_name)
        team = db.session.get(Team, team.id)
        return accept(team, Upload(f"m{seed}.safetensors", fake_checkpoint(seed))).id


def job_of(app, submission_id: int) -> ScoringJob:
    with app.app_context():
        job = db.session.scalars(sa.select(ScoringJob).where(ScoringJob.submission_id == submission_id)).one()
        db.session.expunge(job)
        return job


def submission_of(app, submission_id: int) -> Submission:
    with app.app_context():
        row = db.session.get(Submission, submission_id)
        db.session.expunge(row)
        return row


def test_release_endpoint_puts_the_job_back_for_its_lease_holder_only(tmp_path, digits_competition, digits_solution):
    app = make_app(tmp_path, digits_competition.root, JOB_LEASE_SECONDS=300, JOB_MAX_ATTEMPTS=3)
    sub_id = queue_one_checkpoint(app, "Givers")
    with app.app_context():
        _, team_token = create_team("Not A Worker")
    http = app.test_client()
    auth = {"Authorization": f"Bearer {WORKER}"}

    def claim(name="w1"):
        reply = http.post("/api/jobs/claim", json={"worker": name}, headers=auth)
        assert reply.status_code == 200
        return reply.get_json()

    job = claim()
    assert job["release_url"] == f"/api/jobs/{job['id']}/release" and job["attempt"] == 1
    lease = {**auth, "X-Podium-Lease": job["lease"]}
    # Only the lease holder, with the workers' token, may give it back.
    assert http.post(job["release_url"], headers={**auth, "X-Podium-Lease": "0" * 64}).status_code == 409
    assert http.post(job["release_url"], headers=auth).status_code == 409
    assert http.post(job["release_url"], headers={"Authorization": f"Bearer {team_token}",
                                                  "X-Podium-Lease": job["lease"]}).status_code == 401
    assert http.post(job["release_url"], headers={"X-Podium-Lease": job["lease"]}).status_code == 401
    assert job_of(app, sub_id).status == "running"

    reply = http.post(job["release_url"], headers=lease)
    assert reply.status_code == 200 and reply.get_json() == {"status": "queued"}
    row = job_of(app, sub_id)
    assert (row.status, row.attempts, row.worker_name, row.lease_expires_at) == ("queued", 0, None, None)
    assert "given back by worker w1" in row.last_error
    assert submission_of(app, sub_id).status == "queued"
    # The lease given back is dead: no second release, heartbeat, download or result under it.
    assert http.post(job["release_url"], headers=lease).status_code == 409
    assert http.post(job["heartbeat_url"], headers=lease).status_code == 409
    assert http.get(job["file_url"], headers=lease).status_code == 409
    predictions = [int(v) for v in np.where(digits_solution.labels < 0, 0, digits_solution.labels)]
    assert http.post(job["result_url"], json=predictions, headers=lease).status_code == 409

    # Given back more times than max_attempts: never failed, never counted against the team.
    for _ in range(5):
        again = claim("w1")  # the same worker name and attempt number as before ...
        assert again["attempt"] == 1 and again["lease"] != job["lease"]  # ... but a fresh key
        assert http.post(again["release_url"], headers={**auth, "X-Podium-Lease": again["lease"]}).status_code == 200
    row = job_of(app, sub_id)
    assert (row.status, row.attempts) == ("queued", 0)
    final = claim("finisher")
    done = http.post(final["result_url"], json=predictions, headers={**auth, "X-Podium-Lease": final["lease"]})
    assert done.status_code == 200 and done.get_json()["status"] == "done"
    scored = submission_of(app, sub_id)
    assert scored.status == "scored" and scored.public_score == 1.0 and scored.counts_toward_limit
    assert (job_of(app, sub_id).attempts, job_of(app, sub_id).status) == (1, "done")
    assert http.post(final["release_url"], headers={**auth, "X-Podium-Lease": final["lease"]}).status_code == 409


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_worker_process_gives_its_job_back_at_once(tmp_path, digits_competition, signum):
    # A 10-minute lease: if the job comes back, the worker gave it back; expiry cannot explain it.
    app = make_app(tmp_path, digits_competition.root, JOB_LEASE_SECONDS=600)
    sub_id = queue_one_checkpoint(app, "Stoppers")
    server = served(app)
    worker = subprocess.Popen(
        [*PODIUM, "worker", "--server", server.url, "--token", WORKER, "--poll", "0.2", "--name", "stopping"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PODIUM_WORKER_PAUSE_AFTER_CLAIM": "300"},  # holds the job, heartbeating
    )
    try:
        deadline = time.monotonic() + 60
        while job_of(app, sub_id).status != "running":
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.1)
        held = job_of(app, sub_id)
        assert (held.worker_name, held.attempts) == ("stopping", 1)
        stopped_at = time.monotonic()
        worker.send_signal(signum)
        code = worker.wait(timeout=30)
        took = time.monotonic() - stopped_at
        log = worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        worker.stderr.close()
    try:
        assert code == 128 + signum, log[-3000:]
        assert took < 15, f"the worker took {took:.1f}s to stop"
        assert "given back to the queue" in log and f"stopped by {signal.Signals(signum).name}" in log, log[-3000:]
        row = job_of(app, sub_id)
        assert (row.status, row.attempts, row.worker_name, row.lease_expires_at) == ("queued", 0, None, None)
        assert submission_of(app, sub_id).status == "queued"
        # The next worker gets it straight away, as its first attempt.
        reply = requests.post(f"{server.url}/api/jobs/claim", json={"worker": "next"}, timeout=30,
                              headers={"Authorization": f"Bearer {WORKER}", "Connection": "close"})
        assert reply.status_code == 200 and reply.json()["submission_id"] == sub_id and reply.json()["attempt"] == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_an_idle_worker_stops_cleanly_on_sigterm(tmp_path, digits_competition):
    app = make_app(tmp_path, digits_competition.root)
    server = served(app)
    worker = subprocess.Popen(
        [*PODIUM, "worker", "--server", server.url, "--token", WORKER, "--poll", "0.2", "--name", "idle"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = ""
        while "serving" not in seen:
            line = worker.stderr.readline()
            assert line, "the worker exited: " + seen
            seen += line
        time.sleep(0.5)  # polling an empty queue
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 128 + signal.SIGTERM
        assert "Traceback" not in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        worker.stderr.close()
        server.stop()


# --- 4. every page in Chromium, desktop and phone -------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory, digits_competition, digits_solution):
    """A board with three teams, a history attached, a refused CSV, a queued checkpoint, a worker."""
    root = tmp_path_factory.mktemp("pages-site")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_app(root, competition)
    classes = digits_competition.classes
    with app.app_context():
        owls, owls_token = create_team("Overfitting Owls")
        long_team, _ = create_team("The Extremely Long Team Name of the Stochastic Gradient Descenders")
        third, _ = create_team("Tiny")
        for team, acc, seed in ((owls, 0.93, 1), (owls, 0.88, 2), (long_team, 0.9, 3), (third, 0.6, 4)):
            team = db.session.get(Team, team.id)
            history = history_csv(12) if seed == 1 else None
            sub = accept(team, Upload(f"s{seed}.csv", csv_of(digits_solution, classes, noisy_predictions(digits_solution, acc, seed)),
                                      note="resnet, 12 epochs, cosine" if seed == 1 else "", history=history))
            assert sub.status == "scored"
        owls = db.session.get(Team, owls.id)
        accept(owls, Upload("queued.safetensors", fake_checkpoint(7)))
        history_sub = db.session.scalar(sa.select(Submission.id).where(Submission.history_csv.is_not(None)))
        slug = owls.slug
    server = served(app)
    requests.post(f"{server.url}/api/jobs/claim", json={"worker": "gpu-box-1"},
                  headers={"Authorization": f"Bearer {WORKER}"}, timeout=30)
    bad = write_submission(root / "bad.csv", ["nope", "nope"], ["seven", "3"])
    yield {"url": server.url, "token": owls_token, "team": "Overfitting Owls", "slug": slug,
           "history_sub": history_sub, "bad": bad, "app": app}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _log_in_team(page, site):
    page.goto(f"{site['url']}/login")
    page.fill("input[name=name]", site["team"])
    page.fill("input[name=token]", site["token"])
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def _log_in_admin(page, site):
    page.goto(f"{site['url']}/admin/login")
    page.fill("input[name=token]", ADMIN)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def _upload_bad(page, site):
    page.goto(f"{site['url']}/upload")
    page.set_input_files("input[name=file]", str(site["bad"]))
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()
    assert page.locator(".error-box").is_visible()


def _reveal(page, site, reveal: bool):
    page.goto(f"{site['url']}/admin/")
    button = page.locator("form[action$='/admin/reveal'] button")
    if ("Reveal" in button.inner_text()) == reveal:
        button.click()
        page.wait_for_load_state()


PAGE_CHECK = """() => {
  const out = {overflow: document.documentElement.scrollWidth - window.innerWidth, problems: []};
  // Text that spills out of its box outside any horizontal scroll container.
  for (const el of document.querySelectorAll('main h1, main h2, main p, main li, main label, header a, header .brand, figcaption')) {
    if (el.closest('.scroll')) continue;
    const r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 1) out.problems.push('sticks out: ' + el.tagName + ' ' + el.textContent.slice(0, 40));
  }
  // The x tick labels of each chart, as laid out: none may overlap, none be tiny.
  for (const svg of document.querySelectorAll('figure.chart svg')) {
    const texts = [...svg.querySelectorAll('text.tick')].map(t => t.getBoundingClientRect());
    const bottom = Math.max(...texts.map(r => r.top));
    const row = texts.filter(r => Math.abs(r.top - bottom) < 1).sort((a, b) => a.left - b.left);
    for (let i = 1; i < row.length; i++) if (row[i].left < row[i - 1].right + 2) out.problems.push('x tick labels overlap');
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text.tick')) {
      const px = parseFloat(getComputedStyle(t).fontSize) * scale;
      if (px < 10.5) out.problems.push('tick label drawn at ' + px.toFixed(1) + 'px');
    }
  }
  // A label's text stays one flowing sentence (not one grid cell per <code>).
  for (const code of document.querySelectorAll('form label code'))
    if (getComputedStyle(code.parentElement).display === 'grid') out.problems.push('label text cut into grid cells');
  // The board's score and a submission's metrics are on screen without scrolling a table sideways.
  const score = document.querySelector('table.board thead th.num');
  if (score && score.getBoundingClientRect().right > window.innerWidth) out.problems.push('board score column off screen');
  for (const th of document.querySelectorAll('table.scores thead th')) {
    const r = th.getBoundingClientRect();
    if (r.width > 0 && r.right > window.innerWidth) out.problems.push('metric off screen: ' + th.textContent);
  }
  // Buttons and links in the navigation big enough to hit with a thumb.
  for (const el of document.querySelectorAll('header nav a, header nav button, .splits a')) {
    const r = el.getBoundingClientRect();
    if (r.height < 24 && window.innerWidth < 500) out.problems.push('small target: ' + el.textContent.trim());
  }
  return out;
}"""


def test_every_page_reads_well_on_a_desktop_and_a_phone(browser, site, tmp_path):
    keep = os.environ.get("PODIUM_SCREENSHOTS")
    shots_dir = Path(keep) if keep else tmp_path
    shots_dir.mkdir(parents=True, exist_ok=True)
    url, sub = site["url"], site["history_sub"]
    problems: list[str] = []
    taken: list[Path] = []
    dialogs: list[str] = []

    def new_page(width):
        page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
        page.set_default_timeout(15_000)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        return page

    def shot(page, name, width_name):
        page.wait_for_load_state()
        found = page.evaluate(PAGE_CHECK)
        if found["overflow"] > 1:
            problems.append(f"{width_name} {name}: the page is {found['overflow']}px wider than the screen")
        problems.extend(f"{width_name} {name}: {m}" for m in found["problems"])
        path = shots_dir / f"{name}-{width_name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)

    for width_name, width in WIDTHS.items():
        visitor, team, admin = new_page(width), new_page(width), new_page(width)  # three cookie jars
        _log_in_admin(admin, site)
        _log_in_team(team, site)
        try:
            _reveal(admin, site, False)
            visitor.goto(url + "/")
            shot(visitor, "board-hidden", width_name)
            visitor.goto(url + "/login")
            shot(visitor, "login", width_name)
            team.goto(f"{url}/teams/{site['slug']}")
            shot(team, "team", width_name)
            team.goto(f"{url}/submissions/{sub}")
            shot(team, "submission-hidden", width_name)
            _upload_bad(team, site)
            shot(team, "upload-errors", width_name)
            team.goto(f"{url}/finals")
            shot(team, "finals", width_name)
            admin.goto(f"{url}/admin/")
            shot(admin, "admin", width_name)
            _reveal(admin, site, True)
            visitor.goto(url + "/")
            shot(visitor, "board-revealed", width_name)
            team.goto(f"{url}/submissions/{sub}?split=private")
            assert team.locator(".splits").is_visible()
            shot(team, "submission-revealed-private", width_name)
            team.goto(f"{url}/teams/{site['slug']}")
            shot(team, "team-revealed", width_name)
        finally:
            _reveal(admin, site, False)
            for page in (visitor, team, admin):
                page.context.close()
    assert dialogs == []
    for path in taken:
        assert path.stat().st_size > 5_000, path  # a rendered page, not a blank image
    assert problems == []
