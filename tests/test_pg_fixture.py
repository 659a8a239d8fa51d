"""Where the PostgreSQL binaries are missing, the PostgreSQL tests skip naming the package, except in
CI (CI=true or PODIUM_REQUIRE_POSTGRES=1), where they fail: CI cannot silently skip them."""
from __future__ import annotations

import pytest

from tests import pg


@pytest.fixture
def no_binaries(monkeypatch):
    monkeypatch.setattr(pg, "postgres_bin", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PODIUM_REQUIRE_POSTGRES", raising=False)
    return monkeypatch


def test_missing_binaries_skip_with_a_reason_naming_the_package(no_binaries):
    with pytest.raises(pytest.skip.Exception) as skipped:
        pg.start_cluster()
    assert "postgresql" in str(skipped.value) and "apt-get install postgresql" in str(skipped.value)


@pytest.mark.parametrize("name, value", [("CI", "true"), ("CI", "1"), ("PODIUM_REQUIRE_POSTGRES", "1")])
def test_in_ci_missing_binaries_fail_instead_of_skipping(no_binaries, name, value):
    no_binaries.setenv(name, value)
    with pytest.raises(pytest.fail.Exception) as failed:
        pg.start_cluster()
    assert "apt-get install postgresql" in str(failed.value)


def test_ci_false_still_skips(no_binaries):
    no_binaries.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        pg.start_cluster()
