"""Issue 9 in a real Chromium: the pages cannot be framed by another site (a page on another port
of the same host framed /finals and changed a team's finals with one click), and the strict CSP
blocks nothing the pages need (charts, the heat map, the board's highlight)."""
from __future__ import annotations

import http.server
import shutil
import threading

import pytest

from tests.conftest import noisy_predictions, write_submission
from leaderboard.services import create_team
from leaderboard.intake import Upload, accept
from tests.live import LiveServer, make_test_app
from tests.test_browser import CHROMIUM, browser, log_in  # noqa: F401  (the browser fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]

HISTORY = b"epoch,train_loss,val_loss,train_acc,val_acc\n" + b"".join(
    f"{e},{2.0 / e:.3f},{2.2 / e + 0.01 * e:.3f},{0.5 + e / 40:.3f},{0.45 + e / 45:.3f}\n".encode() for e in range(1, 11))


@pytest.fixture
def site(tmp_path, digits_competition, digits_solution):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    app = make_test_app(tmp_path, competition)
    with app.app_context():
        team, token = create_team("Framed Team")
        csv = write_submission(tmp_path / "s.csv", digits_solution.ids,
                               [digits_competition.classes[p] for p in noisy_predictions(digits_solution, 0.7, seed=3)])
        sub = accept(team, Upload("s.csv", csv.read_bytes(), history=HISTORY))
        assert sub.status == "scored"
    server = LiveServer(app).start()
    yield {"url": server.url, "token": token, "submission": sub.id}
    server.stop()


@pytest.fixture
def attacker(site):
    """A page on another port of the same host that frames the board's forms."""
    page = (f'<html><body><iframe id="f" src="{site["url"]}/finals" width="800" height="600"></iframe>'
            f'<iframe id="u" src="{site["url"]}/upload" width="800" height="600"></iframe></body></html>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_the_finals_and_upload_forms_cannot_be_framed_by_another_site(browser, site, attacker):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in(page, site["url"], "Framed Team", site["token"])
    page.goto(f"{site['url']}/finals")
    assert page.locator("form button[type=submit]").count() >= 1  # the form is there outside a frame
    page.goto(attacker)
    page.wait_for_timeout(1500)
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 2
    for frame in frames:
        # Chromium replaces a refused frame with its error page: no form, no page of ours in it
        assert frame.locator("form").count() == 0, frame.url
        assert frame.locator("input[name=csrf_token]").count() == 0, frame.url
    context.close()


def test_the_csp_blocks_nothing_the_pages_use(browser, site):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, site["url"], "Framed Team", site["token"])
    page.goto(f"{site['url']}/submissions/{site['submission']}")
    assert page.locator("svg").count() >= 2  # the learning curves
    key = page.locator("figcaption .key span").first
    assert key.evaluate("e => getComputedStyle(e).color") != "rgb(0, 0, 0)"  # the series colour applies
    cell = page.locator("table td[style]").first
    assert "rgba(37, 99, 235" in cell.evaluate("e => getComputedStyle(e).backgroundColor")  # the heat map
    page.goto(f"{site['url']}/")
    row = page.locator("tr#team-framed-team")
    assert row.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(239, 246, 255)"  # nonce'd style
    assert violations == []
    context.close()
