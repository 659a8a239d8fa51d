"""The lazy command table: a missing third-party package reads as "not available"; a broken import
inside podium surfaces as the bug it is (exit 1 and a traceback, never a polite message)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import podium_cli


@pytest.fixture
def fake_commands(tmp_path, monkeypatch):
    (tmp_path / "podium_fake_optional.py").write_text("import package_that_is_not_installed_xyz\n")
    (tmp_path / "podium_fake_broken.py").write_text("from harness.errors import NoSuchError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(podium_cli.COMMANDS, "optional", ("podium_fake_optional", "command", "needs a package"))
    monkeypatch.setitem(podium_cli.COMMANDS, "broken", ("podium_fake_broken", "command", "has a bug"))
    monkeypatch.setitem(podium_cli.COMMANDS, "gone", ("leaderboard.no_such_module", "command", "has a bug"))


def test_missing_optional_package_is_not_available(fake_commands, capsys):
    assert podium_cli.main(["optional"]) == 1
    err = capsys.readouterr().err
    assert "podium optional is not available in this installation" in err
    assert "package_that_is_not_installed_xyz" in err


@pytest.mark.parametrize("name,error", [("broken", ImportError), ("gone", ModuleNotFoundError)])
def test_import_error_inside_podium_is_a_bug(fake_commands, name, error):
    with pytest.raises(error):
        podium_cli.main([name])


def test_every_command_imports():
    """Each entry of the table names a module and attribute that exist (run in a fresh process)."""
    code = ("import importlib, podium_cli\n"
            "for name, (module, attr, _) in podium_cli.COMMANDS.items():\n"
            "    assert callable(getattr(importlib.import_module(module), attr)), name\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
