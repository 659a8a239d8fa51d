"""Every page in a real Chromium at desktop and phone widths (1280 and 390 px): no overflow, the
forms and charts present. Set ``PODIUM_SCREENSHOTS=DIR`` to keep the PNGs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import noisy_predictions, write_submission
from leaderboard.services import create_team
from leaderboard.extensions import db
from leaderboard.intake import Upload, accept
from leaderboard.models import Submission, Team

from tests.site import (ADMIN, CHROMIUM, CHROMIUM_ARGS, WIDTHS, WORKER, csv_of, fake_checkpoint, history_csv, make_app,
                        served)


# --- every page in Chromium, desktop and phone -------------------------------------------------

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
