"""Processes of a distributed run that end with the process that started them (Linux's parent-death signal).

    python -m models_mgmt.engine.lifeline PARENT_PID COMMAND [ARGUMENT...]

runs COMMAND in its place (execv) once the kernel is told to send it SIGTERM when its parent dies;
the signal survives the exec. run_distributed starts torchrun this way rather than with Popen's
`preexec_fn`, which is unsafe in a process with threads (the worker's heartbeat thread): the child of
a fork may only exec. The ranks (ddp_main) arm the same signal for themselves with `die_with_parent`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int, parent: int) -> bool:
    """Ask the kernel to send this process `sig` when its parent dies; False if `parent` (the pid the
    caller knows as its parent) has died already, before the signal was armed."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the callers' other watchdogs hold
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    if not die_with_parent(signal.SIGTERM, parent):
        return 1  # the launcher is gone: nothing to start for it
    os.execv(command[0], command)  # noqa: S606 -- the launcher's own command line (this interpreter, torchrun)
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
