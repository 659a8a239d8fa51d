"""The competition's pages in a real Chromium (Playwright) against a real server: the four tabs, a data
file downloaded and checked against the SHA-256 the page shows, and a hostile description.md that runs
no script. Needs /usr/bin/chromium; never ``playwright install``."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from tests.live import LiveServer, make_test_app
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]

HOSTILE = """# The hostile competition

Ordinary **Markdown** still works: [the docs](https://example.com/docs).

<script>window.pwned = 'script'; alert('script')</script>
<img src="x" onerror="window.pwned = 'onerror'; alert('onerror')">
<iframe src="data:text/html,<script>parent.pwned='iframe'</script>"></iframe>
<svg onload="window.pwned = 'svg'"></svg>
[click me](javascript:window.pwned='link') ![pic](javascript:window.pwned='img')
<a href="javascript:window.pwned='raw-link'">raw</a>
<details open ontoggle="window.pwned='toggle'">x</details>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, digits_competition):
    root = tmp_path_factory.mktemp("browser-pages")
    competition = root / "digits"
    shutil.copytree(digits_competition.root, competition)
    (competition / "description.md").write_text(HOSTILE, encoding="utf-8")
    server = LiveServer(make_test_app(root, competition)).start()
    yield {"url": server.url, "competition": competition}
    server.stop()


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs  # type: ignore[attr-defined]
        yield page
        context.close()
        browser.close()


def test_the_four_tabs_and_a_download_checked_against_its_sha256(page, site, tmp_path):
    url = site["url"]
    page.goto(url + "/")
    for tab, expected in (("Overview", "The hostile competition"), ("Data", "SHA-256"),
                          ("Evaluation", "Confidence interval"), ("Rules", "per UTC day")):
        page.click(f"nav.tabs >> text={tab}")
        page.wait_for_load_state()
        assert expected in page.inner_text("main"), tab
        assert page.locator("nav.tabs a[aria-current=page]").inner_text() == tab

    page.goto(url + "/data")
    row = page.locator("#data-files tbody tr", has_text="sample_submission.csv")
    shown = row.locator("code.sha256").inner_text().strip()
    with page.expect_download() as info:
        row.locator("a").click()
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename == "sample_submission.csv"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown
    assert saved.read_bytes() == (site["competition"] / "public" / "sample_submission.csv").read_bytes()

    # A larger binary file too: train.npz, byte for byte.
    row = page.locator("#data-files tbody tr", has_text="train.npz")
    shown = row.locator("code.sha256").inner_text().strip()
    with page.expect_download() as info:
        row.locator("a").click()
    saved = tmp_path / "train.npz"
    info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown


def test_a_hostile_description_runs_no_script(page, site):
    page.goto(site["url"] + "/overview")
    page.wait_for_load_state("load")
    page.wait_for_timeout(500)  # let an onerror or onload fire, if anything could
    description = page.locator("#description")
    assert "Ordinary Markdown still works" in description.inner_text()
    assert page.evaluate("() => window.pwned === undefined"), page.evaluate("() => window.pwned")
    assert page.dialogs == []
    counts = page.evaluate("""() => {
        const d = document.querySelector('#description');
        const handlers = [...d.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on')));
        const bad = [...d.querySelectorAll('[href],[src]')].filter(e => /^\\s*(javascript|data|vbscript):/i.test(e.getAttribute('href') || e.getAttribute('src') || ''));
        return {scripts: d.querySelectorAll('script, iframe, svg, object, embed, details').length,
                handlers: handlers.length, bad: bad.length,
                inlineScripts: [...document.scripts].filter(s => s.textContent.includes('pwned')).length};
    }""")
    assert counts == {"scripts": 0, "handlers": 0, "bad": 0, "inlineScripts": 0}, counts
    link = page.locator("#description a", has_text="the docs")
    assert link.get_attribute("rel") == "nofollow noopener" and link.get_attribute("href") == "https://example.com/docs"
    # The page's own links still work: clicking the disarmed "click me" text does nothing.
    page.locator("#description", has_text="click me").click()
    assert page.evaluate("() => window.pwned === undefined")
