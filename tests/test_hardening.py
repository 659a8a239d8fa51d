"""Issue 9 (hardening), against a real waitress server on 127.0.0.1 with real requests: security
headers, revocable sessions, rate limits. (Body limits, files and processes: test_hardening_limits.py,
test_hardening_files.py; framing in Chromium: test_browser.py.)"""
from __future__ import annotations

import re
import shutil

import pytest
import requests

from leaderboard.services import create_team
from leaderboard.limits import gate_waitress
from tests.live import LiveServer, make_test_app

pytestmark = pytest.mark.usefixtures("each_database")  # every test on SQLite and on PostgreSQL

ADMIN = "organizer-token-" + "x" * 32


@pytest.fixture
def site(tmp_path, digits_competition):
    competition = tmp_path / "digits"
    shutil.copytree(digits_competition.root, competition)
    apps = []

    def start(**overrides):
        overrides.setdefault("ADMIN_TOKEN", ADMIN)
        app = make_test_app(tmp_path, competition, **overrides)
        server = LiveServer(app)
        gate_waitress(server.server, app)  # as podium serve: bodies checked from their headers
        apps.append(server.start())
        return app, apps[-1]

    yield start
    for server in apps:
        server.stop()


def csrf(session: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', session.get(url, timeout=10).text).group(1)


def team_login(url: str, name: str, token: str) -> requests.Session:
    browser = requests.Session()
    r = browser.post(f"{url}/login", data={"name": name, "token": token, "csrf_token": csrf(browser, f"{url}/login")},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text[:300]
    return browser


def admin_login(url: str, token: str = ADMIN) -> requests.Session:
    browser = requests.Session()
    r = browser.post(f"{url}/admin/login", data={"token": token, "csrf_token": csrf(browser, f"{url}/admin/login")},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text[:300]
    return browser


def logged_in(browser: requests.Session, url: str) -> bool:
    r = browser.get(f"{url}/upload", allow_redirects=False, timeout=10)
    assert r.status_code in (200, 302)
    return r.status_code == 200


def admin_in(browser: requests.Session, url: str) -> bool:
    r = browser.get(f"{url}/admin/", allow_redirects=False, timeout=10)
    assert r.status_code in (200, 302)
    return r.status_code == 200


# ---- 4. security headers ----------------------------------------------------------------------

def test_every_response_carries_a_strict_csp_and_no_framing_headers(site):
    app, server = site()
    with app.app_context():
        team, token = create_team("Alpha")
    browser = team_login(server.url, "Alpha", token)
    for path in ("/", "/login", "/upload", "/finals", "/api/leaderboard", "/nothing-here", "/static/podium.css"):
        r = browser.get(server.url + path, timeout=10)
        csp = r.headers.get("Content-Security-Policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ") if d}
        assert directives.get("frame-ancestors") == ["'none'"], (path, csp)
        assert directives.get("script-src") == ["'self'"], (path, csp)  # no 'unsafe-inline', no nonce for scripts
        assert "'unsafe-inline'" not in directives.get("style-src", []), (path, csp)
        assert directives.get("default-src") == ["'none'"], (path, csp)
        assert r.headers.get("X-Frame-Options") == "DENY", path
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path
        assert r.headers.get("Referrer-Policy") == "same-origin", path


def test_no_inline_script_in_any_page_and_the_style_element_carries_the_nonce(site):
    app, server = site()
    with app.app_context():
        team, token = create_team("Alpha")
    browser = team_login(server.url, "Alpha", token)
    r = browser.get(server.url + "/", timeout=10)
    nonce = re.search(r"'nonce-([^']+)'", r.headers["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in r.text  # the viewer's row highlight still applies
    assert "<script" not in r.text.lower()
    again = re.search(r"'nonce-([^']+)'", browser.get(server.url + "/", timeout=10).headers["Content-Security-Policy"])
    assert again.group(1) != nonce  # a fresh nonce per response


# ---- 3. revocable sessions ---------------------------------------------------------------------

def test_a_team_cookie_copied_before_logout_no_longer_works(site):
    app, server = site()
    with app.app_context():
        _, token = create_team("Alpha")
    browser = team_login(server.url, "Alpha", token)
    stolen = requests.Session()
    stolen.cookies.update(browser.cookies)
    assert logged_in(stolen, server.url)
    r = browser.post(f"{server.url}/logout", data={"csrf_token": csrf(browser, f"{server.url}/upload")}, timeout=10)
    assert r.status_code == 200
    assert not logged_in(stolen, server.url)
    assert logged_in(team_login(server.url, "Alpha", token), server.url)  # a new login works


def test_rotating_a_team_token_ends_the_sessions_opened_before(site):
    app, server = site()
    with app.app_context():
        team, token = create_team("Alpha")
    member = team_login(server.url, "Alpha", token)
    organizer = admin_login(server.url)
    r = organizer.post(f"{server.url}/admin/teams/{team.id}/token",
                       data={"csrf_token": csrf(organizer, f"{server.url}/admin/")}, timeout=10)
    assert r.status_code == 200
    assert not logged_in(member, server.url)


def test_organizer_sessions_end_on_logout_and_when_the_admin_token_changes(site, tmp_path):
    app, server = site()
    organizer = admin_login(server.url)
    copy = requests.Session()
    copy.cookies.update(organizer.cookies)
    assert admin_in(copy, server.url)
    organizer.post(f"{server.url}/admin/logout", data={"csrf_token": csrf(organizer, f"{server.url}/admin/")},
                   timeout=10)
    assert not admin_in(copy, server.url)

    organizer = admin_login(server.url)
    assert admin_in(organizer, server.url)
    server.stop()
    app2, server2 = site(ADMIN_TOKEN="another-organizer-token-" + "y" * 32)  # same instance, same secret key
    cookies = {c.name: c.value for c in organizer.cookies}
    restarted = requests.Session()
    for name, value in cookies.items():
        restarted.cookies.set(name, value)
    assert not admin_in(restarted, server2.url)


def test_sessions_expire_after_their_lifetime_and_are_not_renewed(site):
    import time

    app, server = site(TEAM_SESSION_LIFETIME=2, ADMIN_SESSION_LIFETIME=2)
    with app.app_context():
        _, token = create_team("Alpha")
    member = team_login(server.url, "Alpha", token)
    organizer = admin_login(server.url)
    member.get(f"{server.url}/upload", timeout=10)  # the first page puts the CSRF token in the session
    r = member.get(f"{server.url}/upload", timeout=10)
    assert "Set-Cookie" not in r.headers  # not renewed on every request
    assert logged_in(member, server.url) and admin_in(organizer, server.url)
    time.sleep(2.5)
    assert not logged_in(member, server.url)
    assert not admin_in(organizer, server.url)


def test_session_lifetimes_run_on_the_apps_clock(site):
    import datetime as dt

    moment = {"now": dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.timezone.utc)}
    app, server = site(NOW=lambda: moment["now"])
    with app.app_context():
        _, token = create_team("Alpha")
    member = team_login(server.url, "Alpha", token)
    organizer = admin_login(server.url)
    moment["now"] += dt.timedelta(hours=11, minutes=59)
    assert logged_in(member, server.url) and admin_in(organizer, server.url)
    moment["now"] += dt.timedelta(minutes=2)  # 12 h and a minute after the logins
    assert logged_in(member, server.url) and not admin_in(organizer, server.url)
    moment["now"] += dt.timedelta(days=7)
    assert not logged_in(member, server.url)


def test_default_lifetimes_are_12_hours_for_the_organizer_and_7_days_for_teams(site):
    app, server = site()
    with app.app_context():
        _, token = create_team("Alpha")
    assert app.config["ADMIN_SESSION_LIFETIME"].total_seconds() == 12 * 3600
    assert app.config["TEAM_SESSION_LIFETIME"].total_seconds() == 7 * 86400
    member = team_login(server.url, "Alpha", token)
    cookie = next(c for c in member.cookies)
    import time

    assert cookie.expires is not None and cookie.expires - time.time() < 7 * 86400 + 60  # not 31 days


# ---- 5. rate limits ----------------------------------------------------------------------------

def test_team_login_is_rate_limited_per_account_with_retry_after(site):
    app, server = site(RATELIMIT_FAILED_PER_ACCOUNT="5 per minute", RATELIMIT_FAILED_PER_ADDRESS="1000 per minute")
    with app.app_context():
        _, token = create_team("Alpha")
        create_team("Beta")
    guesser = requests.Session()
    form = {"name": "Alpha", "token": "1.wrong", "csrf_token": csrf(guesser, f"{server.url}/login")}
    codes = [guesser.post(f"{server.url}/login", data=form, timeout=10).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3, codes
    r = guesser.post(f"{server.url}/login", data=form, timeout=10)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in r.text
    # the right token is refused too while the account is locked: guessing gains nothing
    right = dict(form, token=token)
    assert guesser.post(f"{server.url}/login", data=right, allow_redirects=False, timeout=10).status_code == 429
    # another account is not locked by Alpha's failures
    other = dict(form, name="Beta")
    assert guesser.post(f"{server.url}/login", data=other, timeout=10).status_code == 401


def test_failed_attempts_are_limited_per_address_across_accounts_and_endpoints(site):
    app, server = site(RATELIMIT_FAILED_PER_ACCOUNT="1000 per minute", RATELIMIT_FAILED_PER_ADDRESS="6 per minute")
    guesser = requests.Session()
    token = csrf(guesser, f"{server.url}/login")
    codes = []
    for i in range(4):
        codes.append(guesser.post(f"{server.url}/login", data={"name": f"T{i}", "token": "x", "csrf_token": token},
                                  timeout=10).status_code)
        codes.append(requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {i}.guess"},
                                   files={"file": ("a.csv", b"id,label\n")}, timeout=10).status_code)
    assert codes[:6] == [401] * 6 and set(codes[6:]) == {429}, codes


def test_bearer_token_guesses_are_limited_per_team_and_a_valid_token_is_not_counted(site, digits_solution, tmp_path):
    app, server = site(RATELIMIT_FAILED_PER_ACCOUNT="4 per minute", RATELIMIT_FAILED_PER_ADDRESS="1000 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
    body = b"id,label\n"
    ok = [requests.get(f"{server.url}/api/teams/{team.slug}/submissions", headers={"Authorization": f"Bearer {token}"},
                       timeout=10).status_code for _ in range(10)]
    assert ok == [200] * 10
    codes = [requests.post(f"{server.url}/api/submissions", headers={"Authorization": f"Bearer {team.id}.guess{i}"},
                           files={"file": ("a.csv", body)}, timeout=10).status_code for i in range(6)]
    assert codes == [401] * 4 + [429] * 2, codes


def test_organizer_login_is_rate_limited(site):
    app, server = site(RATELIMIT_FAILED_PER_ACCOUNT="3 per minute", RATELIMIT_FAILED_PER_ADDRESS="1000 per minute")
    guesser = requests.Session()
    form = {"token": "guess", "csrf_token": csrf(guesser, f"{server.url}/admin/login")}
    codes = [guesser.post(f"{server.url}/admin/login", data=form, timeout=10).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429], codes


# ---- 5. team names and the organizer token ------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("Alpha\u202eahplA", "bidi override"),
    ("Al\u200bpha", "zero-width space"),
    ("Alpha\x07", "control character"),
    ("\u0410lpha", "Cyrillic A looks like Latin A"),
    ("ALPHA", "case only"),
    ("A1pha", "digit one for l"),
    ("AIpha", "capital I for l"),
    ("Ａlpha", "full-width A"),
    ("Al\u034fpha", "combining grapheme joiner (default-ignorable)"),
    ("\u115fAlpha", "Hangul choseong filler"),
    ("Alpha\u1160", "Hangul jungseong filler"),
    ("Alpha\u3164", "Hangul filler"),
    ("Alpha\uffa0", "halfwidth Hangul filler"),
    ("Alpha\u2800", "Braille pattern blank"),
    ("Alpha\ufe00", "variation selector 1"),
    ("Alpha\ufe0f", "variation selector 16"),
    ("Alpha\U000e0100", "variation selector 17"),
    ("Al\u00adpha", "soft hyphen"),
    ("Alpha\U000e0041", "tag character"),
    ("Alpha\u00a0One", "no-break space"),
    ("Alpha\u3000One", "ideographic space"),
])
def test_team_names_with_invisible_characters_or_look_alikes_are_refused(site, name, why):
    app, server = site()
    organizer = admin_login(server.url)
    token = csrf(organizer, f"{server.url}/admin/")
    assert organizer.post(f"{server.url}/admin/teams", data={"name": "Alpha", "csrf_token": token},
                          timeout=10).status_code == 200
    page = organizer.post(f"{server.url}/admin/teams", data={"name": name, "csrf_token": token}, timeout=10)
    assert page.status_code == 200
    assert "looks like the existing team" in page.text or "invisible or text-direction" in page.text, why
    board = requests.get(f"{server.url}/api/leaderboard", timeout=10).json()
    with app.app_context():
        from leaderboard.extensions import db
        from leaderboard.models import Team

        assert [t.name for t in db.session.query(Team)] == ["Alpha"], why
    assert board is not None


@pytest.mark.parametrize("existing, name", [
    ("Team Rocket", "Tearn Rocket"),  # rn for m: a multi-character confusable
    ("Tearn Rocket", "TEAM ROCKET"),
    ("fish", "\ufb01sh"),  # the fi ligature
    ("Team Rocket", "Team  Rocket"),  # two spaces
    ("Alpha", "\u0391\u0406\u0440\u04bb\u0430"),  # Greek A, Ukrainian I, Cyrillic er, shha, a
])
def test_names_that_only_multi_character_or_other_look_alikes_tell_apart_are_refused(site, existing, name):
    from harness.errors import PodiumError

    app, _ = site()
    with app.app_context():
        create_team(existing)
        with pytest.raises(PodiumError, match="looks like the existing team"):
            create_team(name)


def test_ordinary_distinct_names_are_still_accepted(site):
    app, server = site()
    with app.app_context():
        for name in ("Alpha", "Beta", "Gradient Descenders", "Équipe Été", "チーム", "team 1", "team 2",
                     "Rocket", "Racket", "Team Rocket", "Dream Team"):
            create_team(name)


def test_podium_serve_refuses_an_admin_token_shorter_than_32_characters(tmp_path, digits_competition):
    import subprocess

    from tests.conftest import PODIUM

    run = subprocess.run([*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance",
                          str(tmp_path / "inst"), "--admin-token", "x" * 31, "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "at least 32 characters" in run.stderr and "Traceback" not in run.stderr


def test_behind_a_proxy_the_limits_count_the_forwarded_address_and_otherwise_ignore_it(site):
    def failures(server, forwarded_for):
        return requests.post(f"{server.url}/api/submissions", headers={"Authorization": "Bearer 9.guess",
                             "X-Forwarded-For": forwarded_for}, files={"file": ("a.csv", b"x")}, timeout=10).status_code

    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="3 per minute", RATELIMIT_FAILED_PER_ACCOUNT="1000 per minute",
                       TRUSTED_PROXIES=1)
    assert [failures(server, "10.0.0.1") for _ in range(4)] == [401, 401, 401, 429]
    assert failures(server, "10.0.0.2") == 401  # another client behind the same proxy
    server.stop()
    app, direct = site(RATELIMIT_FAILED_PER_ADDRESS="3 per minute", RATELIMIT_FAILED_PER_ACCOUNT="1000 per minute")
    codes = [failures(direct, f"10.0.0.{i}") for i in range(4)]  # a forged header does not reset the count
    assert codes == [401, 401, 401, 429]


def test_token_guesses_on_the_read_api_count_too_though_it_answers_404(site):
    app, server = site(RATELIMIT_FAILED_PER_ACCOUNT="3 per minute", RATELIMIT_FAILED_PER_ADDRESS="1000 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
    guess = {"Authorization": f"Bearer {team.id}.guess"}
    codes = [requests.get(f"{server.url}/api/teams/{team.slug}/submissions", headers=guess, timeout=10).status_code
             for _ in range(4)]
    assert codes == [404, 404, 404, 429], codes
    assert requests.get(f"{server.url}/api/submissions/1", headers=guess, timeout=10).status_code == 429
