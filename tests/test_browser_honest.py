"""The honest board in a real Chromium (Playwright) against a real server: tiers, rank ranges and
the shake-up forecast at 1280 and 390 px without horizontal overflow, before and after the reveal,
medals after it, the organizer's audit page; no inline script anywhere (a strict CSP may forbid it)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leaderboard.intake import Upload, accept
from leaderboard.services import create_team, reveal
from tests.conftest import noisy_predictions, write_submission
from tests.live import LiveServer, make_test_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = {"wide": 1280, "phone": 390}
SHOTS = os.environ.get("PODIUM_SCREENSHOTS")  # a folder to keep the screenshots in (optional)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory, digits_competition, digits_solution):
    root = tmp_path_factory.mktemp("browser_honest")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    toml = competition / "competition.toml"
    toml.write_text(toml.read_text().replace("daily_limit = 5\n", "daily_limit = 5\nmedals = { gold = 0.1, silver = 0.2, bronze = 0.4 }\n"))
    app = make_test_app(root, competition, ADMIN_TOKEN="organizer")
    with app.app_context():
        for k, acc in enumerate([0.98, 0.97, 0.9, 0.88, 0.86, 0.7, 0.69, 0.5, 0.45, 0.3]):
            team, _ = create_team(f"Team with a rather long name {k}")
            csv = write_submission(root / f"t{k}.csv", digits_solution.ids,
                                   [digits_competition.classes[p] for p in noisy_predictions(digits_solution, acc, seed=k)])
            assert accept(team, Upload("t.csv", csv.read_bytes())).status == "scored"
    server = LiveServer(app).start()
    yield {"url": server.url, "app": app, "root": root}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def check_page(browser, url: str, width: int, shot: Path, login_token: str | None = None) -> dict:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    if login_token:
        page.goto(url.split("/admin")[0] + "/admin/login")
        page.fill("input[name=token]", login_token)
        page.click("button[type=submit]")
        page.wait_for_load_state()
    page.goto(url)
    page.wait_for_load_state()
    facts = page.evaluate("""() => {
        const visible = (sel) => [...document.querySelectorAll(sel)].filter(e => e.offsetWidth > 0 && e.offsetHeight > 0).length;
        return {
            overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            inline_scripts: document.querySelectorAll('script:not([src])').length,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
            tiers: visible('td.tier'), ranges: visible('.range'), forecasts: visible('td.forecast'),
            tbodies: document.querySelectorAll('tbody.tier').length, medals: visible('td.medal span'),
            rows: document.querySelectorAll('table.board tbody tr').length,
            flagged_sections: document.querySelectorAll('section[id^=audit-]').length,
        };
    }""")
    page.screenshot(path=str(shot), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(SHOTS) / shot.name)
    context.close()
    return facts


@pytest.mark.parametrize("width_name", WIDTHS)
def test_board_pages_show_tiers_ranges_and_forecast_without_overflow(site, browser, tmp_path, width_name):
    width = WIDTHS[width_name]
    with site["app"].app_context():
        reveal(False)
    public = check_page(browser, site["url"] + "/", width, tmp_path / f"board-public-{width_name}.png")
    assert public["overflow"] <= 0 and public["inline_scripts"] == 0 and public["handlers"] == 0
    assert public["rows"] == 10 and public["tiers"] == 10 and public["ranges"] == 10 and public["forecasts"] == 10
    assert 2 <= public["tbodies"] <= 10  # tier bands: 0.98/0.97 cannot share a tier with 0.3
    with site["app"].app_context():
        reveal(True)
    try:
        private = check_page(browser, site["url"] + "/", width, tmp_path / f"board-private-{width_name}.png")
    finally:
        with site["app"].app_context():
            reveal(False)
    assert private["overflow"] <= 0 and private["inline_scripts"] == 0
    assert private["tiers"] == 10 and private["ranges"] >= 10 and private["forecasts"] == 10
    assert private["medals"] == 4  # 10 teams: gold 1, silver 1, bronze 2
    audit = check_page(browser, site["url"] + "/admin/audit", width, tmp_path / f"audit-{width_name}.png",
                       login_token="organizer")
    assert audit["overflow"] <= 0 and audit["inline_scripts"] == 0 and audit["flagged_sections"] == 4
