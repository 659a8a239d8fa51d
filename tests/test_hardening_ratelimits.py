"""Issue 9, item 5, as the audit found it: rate limits on logins and token use only, never on the
public board; one hostile address cannot lock a team or the organizer out; a guess spread over many
addresses still meets a ceiling; every 429 says when to retry. Against a real waitress server (as
``podium serve`` builds it) with real requests from several loopback addresses (127.0.0.2 ... are
the same machine, but other client addresses to the server)."""
from __future__ import annotations

import datetime as dt
import json
import re
import socket

import pytest
import requests
from requests.adapters import HTTPAdapter

from leaderboard.services import create_team
from tests.conftest import noisy_predictions, write_submission
from tests.test_hardening import ADMIN, csrf, site  # noqa: F401  (site: the fixture)


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def client_from(address: str) -> requests.Session:
    """A browser (cookies and all) whose connections come from ``address`` (a loopback address)."""
    browser = requests.Session()
    browser.mount("http://", _FromAddress(address))
    return browser


def login(browser: requests.Session, url: str, name: str, token: str) -> int:
    form = {"name": name, "token": token, "csrf_token": csrf(browser, f"{url}/login")}
    return browser.post(f"{url}/login", data=form, allow_redirects=False, timeout=10).status_code


def organizer_login(browser: requests.Session, url: str, token: str) -> int:
    form = {"token": token, "csrf_token": csrf(browser, f"{url}/admin/login")}
    return browser.post(f"{url}/admin/login", data=form, allow_redirects=False, timeout=10).status_code


def upload(browser: requests.Session, url: str, token: str, body: bytes = b"id,label\n") -> requests.Response:
    return browser.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                        files={"file": ("s.csv", body)}, timeout=30)


def good_csv(tmp_path, competition, solution, seed: int = 1) -> bytes:
    labels = [competition.classes[p] for p in noisy_predictions(solution, 0.8, seed=seed)]
    return write_submission(tmp_path / f"s{seed}.csv", solution.ids, labels).read_bytes()


def retry_after(response: requests.Response) -> int:
    value = int(response.headers["Retry-After"])
    assert value >= 1, response.headers
    return value


# ---- only logins and token use are limited -------------------------------------------------------

def test_past_its_limit_an_address_still_reads_the_board_the_pages_and_its_session(site):
    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="3 per minute", RATELIMIT_FAILED_PER_ACCOUNT="1000 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
    member = requests.Session()
    assert login(member, server.url, "Alpha", token) == 302
    guesser = requests.Session()  # the same address as the member: 127.0.0.1
    assert [login(guesser, server.url, "Alpha", f"{team.id}.guess{i}") for i in range(5)] == [401] * 3 + [429] * 2
    for path in ("/", "/api/leaderboard", "/login", "/rules", "/static/podium.css", f"/teams/{team.slug}"):
        r = guesser.get(server.url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert member.get(f"{server.url}/upload", allow_redirects=False, timeout=10).status_code == 200  # its session
    # token use from the spent address is refused (a right guess must not stand out) ...
    r = requests.get(f"{server.url}/api/teams/{team.slug}/submissions", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)
    assert r.status_code == 429 and retry_after(r) <= 60
    # ... but not from another address
    r = client_from("127.0.0.2").get(f"{server.url}/api/teams/{team.slug}/submissions",
                                     headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_one_hostile_address_cannot_lock_a_team_or_the_organizer_out(site, tmp_path, digits_competition,
                                                                    digits_solution):
    app, server = site()  # the default limits
    with app.app_context():
        team, token = create_team("Alpha")
    attacker = client_from("127.0.0.2")
    codes = [upload(attacker, server.url, f"{team.id}.x{i}").status_code for i in range(12)]
    codes += [login(attacker, server.url, "Alpha", f"{team.id}.y{i}") for i in range(12)]
    codes += [organizer_login(attacker, server.url, f"guess-{i}") for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429, codes
    # brute force stays bounded: from the attacker's address even the right credentials are refused now
    assert upload(attacker, server.url, token).status_code == 429
    assert login(attacker, server.url, "Alpha", token) == 429
    assert organizer_login(attacker, server.url, ADMIN) == 429
    # the team and the organizer, from their own address, are not locked out
    victim = requests.Session()
    r = upload(victim, server.url, token, good_csv(tmp_path, digits_competition, digits_solution))
    assert r.status_code == 201, r.text
    assert login(victim, server.url, "Alpha", token) == 302
    assert organizer_login(requests.Session(), server.url, ADMIN) == 302
    r = victim.get(f"{server.url}/api/teams/{team.slug}/submissions", headers={"Authorization": f"Bearer {token}"},
                   timeout=10)
    assert r.status_code == 200 and len(r.json()["submissions"]) == 1, r.text


def test_a_guess_spread_over_many_addresses_meets_the_per_account_ceiling(site):
    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="1000 per minute", RATELIMIT_FAILED_PER_ACCOUNT="3 per minute",
                       RATELIMIT_FAILED_PER_ACCOUNT_TOTAL="6 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
        team_id = team.id
        other, other_token = create_team("Beta")
        other_slug = other.slug
    for address in ("127.0.0.2", "127.0.0.3"):
        assert [upload(client_from(address), server.url, f"{team_id}.guess").status_code
                for _ in range(3)] == [401] * 3, address
    fresh = client_from("127.0.0.4")
    r = upload(fresh, server.url, token)
    assert r.status_code == 429 and "locked for everyone" in r.json()["errors"][0]
    assert retry_after(r) <= 60
    assert login(fresh, server.url, "Alpha", token) == 429  # the login name and the token are one account
    r = fresh.get(f"{server.url}/api/teams/{other_slug}/submissions", headers={"Authorization": f"Bearer {other_token}"},
                  timeout=10)
    assert r.status_code == 200  # other teams are not affected


def test_successful_logins_and_token_uses_never_count(site):
    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="3 per minute", RATELIMIT_FAILED_PER_ACCOUNT="3 per minute",
                       RATELIMIT_FAILED_PER_ACCOUNT_TOTAL="3 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
    browser = requests.Session()
    assert [login(browser, server.url, "Alpha", token) for _ in range(10)] == [302] * 10
    assert [organizer_login(browser, server.url, ADMIN) for _ in range(10)] == [302] * 10
    reads = [requests.get(f"{server.url}/api/teams/{team.slug}/submissions",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code for _ in range(10)]
    assert reads == [200] * 10
    assert [login(browser, server.url, "Alpha", "1.wrong") for _ in range(4)] == [401] * 3 + [429]


def test_token_guesses_through_the_kaggle_api_count_too(site):
    """The Kaggle client's paths take team tokens as Basic credentials and in IntrospectToken's body."""
    import base64

    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="1000 per minute", RATELIMIT_FAILED_PER_ACCOUNT="3 per minute")
    with app.app_context():
        team, token = create_team("Alpha")
    basic = "Basic " + base64.b64encode(f"{team.slug}:{team.id}.guess".encode()).decode()
    answers = [requests.post(f"{server.url}/api/v1/competitions.CompetitionApiService/GetSubmission", json={"ref": 1},
                             headers={"Authorization": basic}, timeout=10) for _ in range(4)]
    assert [a.status_code for a in answers] == [403, 403, 403, 429], answers  # the Kaggle API answers a wrong key 403
    assert set(answers[-1].json()) == {"code", "message"} and answers[-1].json()["code"] == 429  # Kaggle's shape
    intro_codes = [requests.post(f"{server.url}/api/v1/security.OAuthService/IntrospectToken",
                                json={"token": f"{team.id + 1}.guess"}, timeout=10).status_code for _ in range(4)]
    assert intro_codes == [200, 200, 200, 429], intro_codes  # {"active": false} three times, then refused


# ---- Retry-After on every 429 --------------------------------------------------------------------

def raw_upload(url: str, token: str, declared: int = 5_000_000) -> bytes:
    """An upload whose body the gate must hold back: the answer comes from the headers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /api/submissions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {declared}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_every_rate_limit_429_carries_retry_after(site):
    app, server = site(RATELIMIT_FAILED_PER_ADDRESS="1000 per minute", RATELIMIT_FAILED_PER_ACCOUNT="2 per minute",
                       RATELIMIT_FAILED_PER_ACCOUNT_TOTAL="4 per minute")
    with app.app_context():
        create_team("Alpha")
        beta, _ = create_team("Beta")
        beta_id, beta_slug = beta.id, beta.slug
    seen = {}
    browser = requests.Session()
    for _ in range(3):
        r = browser.post(f"{server.url}/login", data={"name": "Alpha", "token": "x", "csrf_token": csrf(
            browser, f"{server.url}/login")}, timeout=10)
    seen["team login (account from one address)"] = r
    for _ in range(3):
        r = browser.post(f"{server.url}/admin/login", data={"token": "x", "csrf_token": csrf(
            browser, f"{server.url}/admin/login")}, timeout=10)
    seen["organizer login"] = r
    for _ in range(3):
        r = upload(browser, server.url, f"{beta_id}.guess")
    seen["bearer token (API)"] = r
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        for _ in range(2):
            r = client_from(address).get(f"{server.url}/api/teams/{beta_slug}/submissions",
                                         headers={"Authorization": f"Bearer {beta_id}.guess"}, timeout=10)
    seen["per-account ceiling"] = r
    for name, response in seen.items():
        assert response.status_code == 429, (name, response.status_code)
        assert 1 <= retry_after(response) <= 60, name
    assert "errors" in seen["bearer token (API)"].json()  # JSON under /api/
    # an upload refused by the gate from its headers (its body held back) says it too
    answer = raw_upload(server.url, f"{beta_id}.guess")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429"), answer[:300]
    assert re.search(rb"\r\nRetry-After: ([1-9][0-9]?)\r\n", head), head
    assert json.loads(body)["errors"]

    small = site(RATELIMIT_FAILED_PER_ADDRESS="2 per minute", RATELIMIT_FAILED_PER_ACCOUNT="1000 per minute")[1]
    for i in range(3):
        r = client_from("127.0.0.9").post(f"{small.url}/api/submissions", headers={"Authorization": f"Bearer {i}.x"},
                                          files={"file": ("a.csv", b"x")}, timeout=10)
    assert r.status_code == 429 and 1 <= retry_after(r) <= 60  # per address


class Clock:
    def __init__(self, at: dt.datetime):
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def test_the_daily_limit_429_says_when_the_count_resets(site, tmp_path, digits_competition, digits_solution):
    clock = Clock(dt.datetime(2026, 3, 1, 23, 59, 0, tzinfo=dt.timezone.utc))
    app, server = site(NOW=clock)
    with app.app_context():
        _, token = create_team("Alpha")
    bodies = [good_csv(tmp_path, digits_competition, digits_solution, seed) for seed in range(7)]
    codes = [upload(requests.Session(), server.url, token, body).status_code for body in bodies[:6]]
    assert codes == [201] * 5 + [429], codes
    r = upload(requests.Session(), server.url, token, bodies[6])
    assert r.status_code == 429 and r.headers["Retry-After"] == "60", r.headers  # 00:00 UTC by the app's clock
    browser = requests.Session()
    assert login(browser, server.url, "Alpha", token) == 302
    page = browser.post(f"{server.url}/upload", data={"csrf_token": csrf(browser, f"{server.url}/upload")},
                        files={"file": ("s.csv", bodies[6])}, timeout=30)
    assert page.status_code == 429 and page.headers["Retry-After"] == "60"
    assert "resets at 00:00 UTC" in page.text
    clock.at = dt.datetime(2026, 3, 2, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert upload(requests.Session(), server.url, token, bodies[6]).status_code == 201  # the next UTC day


@pytest.mark.parametrize("storage", ["redis://127.0.0.1:1", "nonsense://x"])
def test_an_unusable_rate_limit_store_is_a_clear_error_not_a_traceback(tmp_path, digits_competition, storage):
    import importlib.util
    import subprocess

    if storage.startswith("redis") and importlib.util.find_spec("redis") is not None:
        pytest.skip("the redis client is installed here, so a redis:// store is usable")

    from tests.conftest import PODIUM

    run = subprocess.run([*PODIUM, "serve", "--competition", str(digits_competition.root), "--instance",
                          str(tmp_path / "inst"), "--port", "0"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PODIUM_RATELIMIT_STORAGE_URI": storage})
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "RATELIMIT_STORAGE_URI" in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]


def test_the_per_address_limits_count_an_ipv6_host_by_its_64(tmp_path, digits_competition):
    """One IPv6 host (or home network) holds a whole /64: its addresses are one address to the limits."""
    from leaderboard.security import client_address
    from tests.live import make_test_app

    app = make_test_app(tmp_path, digits_competition.root)
    seen = {}
    for remote in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::1", "::ffff:192.0.2.7",
                   "192.0.2.7"):
        with app.test_request_context("/login", environ_base={"REMOTE_ADDR": remote}):
            seen[remote] = client_address()
    assert seen["2001:db8:1:2::1"] == seen["2001:db8:1:2:ffff:ffff:ffff:ffff"] == "2001:db8:1:2::/64"
    assert seen["2001:db8:1:3::1"] == "2001:db8:1:3::/64"
    assert seen["::ffff:192.0.2.7"] == seen["192.0.2.7"] == "192.0.2.7"
