"""Team tokens are checked with PBKDF2 once per process: later requests with the same token compare
a SHA-256 digest; a wrong or rotated token is still refused, and logging in works the same way."""
from __future__ import annotations

import pytest
import werkzeug.security

from leaderboard import auth
from leaderboard.services import create_team, reset_token
from tests.live import make_test_app


@pytest.fixture
def pbkdf2_calls(monkeypatch):
    """Counts the real PBKDF2 checks (the function still runs)."""
    calls = []
    real = werkzeug.security.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: calls.append(1) or real(h, p))
    auth._verified.clear()
    yield calls
    auth._verified.clear()


def test_a_token_is_hashed_once_then_remembered_and_a_wrong_or_rotated_one_refused(tmp_path, digits_competition,
                                                                                 pbkdf2_calls):
    app = make_test_app(tmp_path, digits_competition.root, TESTING=True)
    client = app.test_client()
    with app.app_context():
        team, token = create_team("Cachers")
        team_id = team.id
    me = {"Authorization": f"Bearer {token}"}
    for _ in range(5):
        assert client.get(f"/api/teams/{team.slug}/submissions", headers=me).status_code == 200
    assert len(pbkdf2_calls) == 1, "the same token was hashed again"
    wrong = {"Authorization": f"Bearer {team_id}.{'x' * 43}"}
    assert client.get(f"/api/teams/{team.slug}/submissions", headers=wrong).status_code == 404  # not this team: no existence leak
    assert len(pbkdf2_calls) == 1, "a wrong token against a remembered hash needs no PBKDF2"
    with app.app_context():
        _, new_token = reset_token(team_id)
    assert client.get(f"/api/teams/{team.slug}/submissions", headers=me).status_code == 404  # the old token is gone
    assert client.get(f"/api/teams/{team.slug}/submissions",
                      headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    assert len(pbkdf2_calls) == 3  # the old token against the new hash, then the new token: each hashed once


def test_the_remembered_tokens_are_bounded(monkeypatch, pbkdf2_calls):
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    hashes = [(auth.hash_token(f"token-{k}"), f"token-{k}") for k in range(5)]
    for stored, token in hashes:
        assert auth.token_matches(stored, token)
    assert len(auth._verified) == 3 and hashes[0][0] not in auth._verified
    assert auth.token_matches(*hashes[0]) and not auth.token_matches(hashes[1][0], "token-0")
