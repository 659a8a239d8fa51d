"""The ``podium`` command: one thin CLI over the three packages.

Subcommands live beside the code they call (``harness/cli.py``, ``baseline/cli.py``,
``leaderboard/cli.py``, ``leaderboard/client/``) and are imported only when run, so ``podium score
sub.csv`` never pays for torch or Flask. A user's mistake (``PodiumError``) is printed without a
traceback and exits 2; anything else is a bug in podium and exits 1 with its traceback. A command
whose declared dependency (pyproject.toml) is not installed says which one and how to install it;
any other ImportError (inside podium, or of a module podium does not declare) is a bug and
surfaces as one, with its traceback.
"""
from __future__ import annotations

import importlib
import re
import sys

import click

# Declared dependencies whose import name is not their distribution's name.
IMPORT_NAMES = {"sklearn": "scikit-learn", "PIL": "pillow", "pytorch_grad_cam": "grad-cam",
                "markdown_it": "markdown-it-py"}

COMMANDS = {
    "init": ("kagglebridge.cli", "init_command", "Build a competition directory from a dataset."),
    "score": ("harness.cli", "score_command", "Score one submission (CSV or checkpoint)."),
    "evaluate": ("harness.cli", "evaluate_command", "Score a drop-box folder DIR/<team>/<file> and rank teams."),
    "pack": ("harness.cli", "pack_command", "Convert a .pt/.pth state dict into a .safetensors checkpoint."),
    "baseline": ("baseline.cli", "baseline_command", "Train the reference baseline and write a run directory."),
    "diagnose": ("baseline.cli", "diagnose_command", "Read a history.csv and print the over/underfitting diagnosis."),
    "lr-find": ("baseline.cli", "lr_find_command", "Learning-rate range test: plot the loss against the rate, suggest one."),
    "tune": ("baseline.cli", "tune_command", "Search the baseline's hyperparameters with Optuna (validation split only)."),
    "explain": ("baseline.cli", "explain_command", "Grad-CAM heat maps of a checkpoint's most confident mistakes."),
    "serve": ("leaderboard.cli", "serve_command", "Run the leaderboard web server."),
    "team": ("leaderboard.cli", "team_group", "Manage teams (add, list)."),
    "audit": ("leaderboard.cli", "audit_command", "Organizer's audit: shared errors, duplicates, odd scores."),
    "submit": ("leaderboard.client.submit", "submit_command", "Upload a submission to a leaderboard server."),
    "worker": ("leaderboard.client.worker", "worker_command", "Score checkpoint jobs for a leaderboard server."),
    "db": ("leaderboard.dbadmin", "db_group", "The leaderboard database's schema (upgrade, current, revision)."),
    "backup": ("leaderboard.backup", "backup_command", "Write a consistent backup of a leaderboard instance."),
    "restore": ("leaderboard.backup", "restore_command", "Restore a leaderboard instance from a backup."),
    "gc": ("leaderboard.cli", "gc_command", "Remove stored files no submission keeps (refused, orphaned)."),
    "demo": ("leaderboard.demo", "demo_command", "Build, train, submit and serve a living demo board."),
    "kaggle": ("kagglebridge.cli", "kaggle_group", "Talk to Kaggle: export a competition, submit, fetch its board."),
}


def declared_requirement(module: str) -> str | None:
    """The distribution podium declares (dependencies or extras) that provides top-level ``module``, or None."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("podium") or []
    except PackageNotFoundError:  # run from a checkout that was never installed
        return None
    wanted = _normalise(IMPORT_NAMES.get(module, module))
    for line in declared:
        name = re.split(r"[\s\[<>=!~;(]", line, maxsplit=1)[0]
        if _normalise(name) == wanted:
            return name
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            requirement = declared_requirement((exc.name or "").partition(".")[0])
            if requirement is None:
                raise  # podium's own module, or one podium does not declare: a bug, with its traceback
            raise click.ClickException(
                f"podium {name} is not available in this installation: it needs the package {requirement!r}, "
                f"which is not installed (pip install {requirement})."
            ) from None
        return getattr(loaded, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text from the table, so `podium --help` imports nothing heavy.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="podium")
def cli() -> None:
    """podium: a self-hosted, Kaggle-style competition harness and leaderboard."""


def main(argv: list[str] | None = None) -> int:
    from harness.cli_runner import run_click

    return run_click(cli, argv, prog_name="podium")


if __name__ == "__main__":
    sys.exit(main())
