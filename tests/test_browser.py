"""The pages in a real Chromium (Playwright, sync API) against a real server on 127.0.0.1.

Needs ``/usr/bin/chromium`` (Debian's package; CI installs it). Never ``playwright install``.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PODIUM, noisy_predictions, write_submission
from harness.scoring import score_predictions
from leaderboard.services import create_team
from leaderboard.intake import Upload, accept
from tests.live import LiveServer, make_test_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
XSS_NAME = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory, digits_competition, digits_solution):
    """A served board with two teams: an ordinary one (token known) and one named like an XSS payload
    that already has a scored CSV."""
    root = tmp_path_factory.mktemp("browser")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(root, competition, SECRET_KEY=None, WORKER_TOKEN="browser-worker-token", ADMIN_TOKEN="a")
    with app.app_context():
        _, token = create_team("Gradient Descenders")
        xss_team, xss_token = create_team(XSS_NAME)
        csv = write_submission(root / "xss.csv", digits_solution.ids,
                               [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.5, seed=9)])
        assert accept(xss_team, Upload("xss.csv", csv.read_bytes(), note=XSS_NAME)).status == "scored"
    server = LiveServer(app).start()
    yield {"url": server.url, "token": token, "xss_token": xss_token, "root": root,
           "worker_token": "browser-worker-token"}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()


def log_in(page, url: str, name: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.rstrip("/") != f"{url}/login", "the login was refused"


def upload(page, url: str, path: Path, note: str = "") -> None:
    page.goto(f"{url}/upload")
    page.set_input_files("input[name=file]", str(path))
    if note:
        page.fill("input[name=note]", note)
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()


def test_a_team_logs_in_uploads_a_csv_and_sees_its_score_on_the_board(page, site, digits_competition, digits_solution):
    predictions = noisy_predictions(digits_solution, 0.85, seed=21)
    csv = write_submission(site["root"] / "good.csv", digits_solution.ids,
                           [digits_competition.classes[p] for p in predictions])
    expected = f"{score_predictions(predictions, digits_solution, digits_competition).primary('public'):.4f}"

    log_in(page, site["url"], "Gradient Descenders", site["token"])
    upload(page, site["url"], csv, note="first try")
    assert "/submissions/" in page.url  # the new submission's page, scored at once
    assert expected in page.inner_text("main")

    page.goto(site["url"] + "/")
    row = page.locator("table.board tbody tr", has_text="Gradient Descenders")
    assert row.count() == 1
    assert expected in row.inner_text()
    assert page.dialogs == []


def test_a_bad_csv_shows_its_messages_on_the_page(page, site, digits_solution):
    ids = list(digits_solution.ids)
    labels = ["3"] * len(ids)
    ids[5] = ids[4]  # a duplicate (and so one id missing)
    labels[10] = "seven"
    bad = write_submission(site["root"] / "bad.csv", ids, labels)

    log_in(page, site["url"], "Gradient Descenders", site["token"])
    upload(page, site["url"], bad)
    box = page.locator(".error-box")
    assert box.is_visible()
    text = box.inner_text()
    assert "not accepted" in text
    assert f'line 7: id "{ids[4]}" appears twice (first on line 6)' in text
    assert 'line 12: "seven" is not a class' in text
    assert "is missing" in text
    assert "Traceback" not in page.content()


def test_a_checkpoint_uploaded_in_the_browser_is_scored_by_a_worker_process(page, site, digits_competition):
    import torch
    import torchvision

    from harness.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    path = save_checkpoint(model, site["root"] / "squeeze.safetensors", library="torchvision",
                           arch="squeezenet1_1", num_classes=10)
    log_in(page, site["url"], "Gradient Descenders", site["token"])
    upload(page, site["url"], path, note="a checkpoint")
    assert "/submissions/" in page.url
    assert page.inner_text("h1 .status") == "queued"
    assert "waiting for a scoring worker" in page.inner_text("main")

    worker = subprocess.run(
        [*PODIUM, "worker", "--server", site["url"], "--token", site["worker_token"], "--once"],
        capture_output=True, text=True, timeout=240,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    page.reload()
    assert page.inner_text("h1 .status") == "scored"
    assert "Confusion matrix" in page.inner_text("main")
    assert page.dialogs == []


def test_a_team_named_like_a_script_is_shown_as_text(page, site):
    page.goto(site["url"] + "/")
    cell = page.locator("table.board tbody td a", has_text=XSS_NAME)
    assert cell.count() == 1 and cell.inner_text() == XSS_NAME
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    cell.click()  # the team's own page, with the note
    page.wait_for_load_state()
    assert XSS_NAME in page.inner_text("main")
    log_in(page, site["url"], XSS_NAME, site["xss_token"])  # the name in the navigation bar, too
    page.goto(site["url"] + "/upload")
    assert XSS_NAME in page.inner_text("header")
    assert not page.evaluate("[...document.scripts].some(s => s.text.includes('alert(1)'))")
    assert page.dialogs == []


def test_the_board_looks_right_on_a_desktop_and_a_phone(browser, site, tmp_path):
    shots = {}
    for name, viewport in (("desktop", {"width": 1200, "height": 800}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(site["url"] + "/")
        assert page.locator("table.board tbody tr").count() >= 1
        # Nothing sticks out of a phone's screen except inside the table's own scroll box.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name}: the page is {overflow}px wider than the screen"
        shots[name] = tmp_path / f"board-{name}.png"
        page.screenshot(path=str(shots[name]), full_page=True)
        context.close()
    for path in shots.values():
        assert path.stat().st_size > 5_000  # a rendered page, not a blank image
