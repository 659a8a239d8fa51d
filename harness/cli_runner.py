"""Running a click command as a process's entry point: the one place that turns errors into exit codes.

Used by ``podium`` (``podium_cli.main``) and ``python -m baseline`` (``baseline.cli.main``, for
torchrun). Imports only click and ``harness.errors``, so ``podium --help`` and ``podium score``
stay fast.
"""
from __future__ import annotations

import click

from harness.errors import PodiumError


def run_click(command: click.Command, argv: list[str] | None, prog_name: str) -> int:
    """Run ``command`` on ``argv`` (``None``: ``sys.argv[1:]``) and return the process's exit code.

    A user's mistake (``PodiumError``) prints ``error: ...`` lines on stderr and gives 2; a usage
    error is shown by click with its own code; Ctrl-C prints ``aborted`` and gives 130; an ``int``
    returned by the command is the exit code (anything else is 0). Any other exception is a bug
    and propagates with its traceback.
    """
    try:
        rv = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except PodiumError as exc:
        for message in exc.messages:
            click.echo(f"error: {message}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return rv if isinstance(rv, int) else 0
