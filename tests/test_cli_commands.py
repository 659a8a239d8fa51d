"""The lazy command table: a missing declared dependency reads as "not available" (with the
distribution to install); a broken import inside podium, or of a module podium never declared,
surfaces as the bug it is (an exception with its traceback, never a polite message)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import podium_cli


@pytest.fixture
def fake_commands(tmp_path, monkeypatch):
    (tmp_path / "podium_fake_optuna.py").write_text("import optuna\n")
    (tmp_path / "podium_fake_sklearn.py").write_text("from sklearn import metrics\n")
    (tmp_path / "podium_fake_typo.py").write_text("import numpyy\n")
    (tmp_path / "podium_fake_broken.py").write_text("from harness.errors import NoSuchError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, module in (("optional", "podium_fake_optuna"), ("sk", "podium_fake_sklearn"),
                         ("typo", "podium_fake_typo"), ("broken", "podium_fake_broken")):
        monkeypatch.setitem(podium_cli.COMMANDS, name, (module, "command", "a test command"))
    monkeypatch.setitem(podium_cli.COMMANDS, "gone", ("leaderboard.no_such_module", "command", "has a bug"))
    monkeypatch.setitem(podium_cli.COMMANDS, "gone-kaggle", ("kagglebridge.no_such_module", "command", "has a bug"))
    # As if optuna and scikit-learn (declared dependencies) were not installed: importing them fails.
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)


@pytest.mark.parametrize("name,requirement", [("optional", "optuna"), ("sk", "scikit-learn")])
def test_missing_declared_package_is_not_available(fake_commands, capsys, name, requirement):
    assert podium_cli.main([name]) == 1
    err = capsys.readouterr().err
    assert f"podium {name} is not available in this installation" in err
    assert f"needs the package '{requirement}'" in err and f"pip install {requirement})" in err


@pytest.mark.parametrize("name,error", [("broken", ImportError), ("gone", ModuleNotFoundError),
                                        ("gone-kaggle", ModuleNotFoundError), ("typo", ModuleNotFoundError)])
def test_import_error_inside_podium_is_a_bug(fake_commands, name, error):
    with pytest.raises(error):
        podium_cli.main([name])


def test_every_command_imports():
    """Each entry of the table names a module and attribute that exist (run in a fresh process)."""
    code = ("import importlib, podium_cli\n"
            "for name, (module, attr, _) in podium_cli.COMMANDS.items():\n"
            "    assert callable(getattr(importlib.import_module(module), attr)), name\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
