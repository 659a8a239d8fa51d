"""The inference child dies with its parent: ``PR_SET_PDEATHSIG`` (Linux) set between fork and exec.

A scoring worker killed with SIGKILL cannot clean up; without this its child, re-parented to PID 1,
went on running a submitted model. The kernel sends the child SIGKILL when the thread that started
it exits, so the child must be started from a thread that lives as long as the job (the worker's
main thread does). If the parent died before the setting took effect, the child exits at once.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``; None where the platform has no such setting.

    prctl is looked up here, in the parent: between fork and exec the function only calls it and
    ``getppid`` (no import, no lock another thread could hold).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: nobody waits for us
            os._exit(1)

    return preexec
