"""Children that die with their parent: an experiment's aggregator with its director, a
collaborator with its envoy.

The parent puts its pid in ``FX_PARENT_PID`` (``child_env``); the child, first thing in `fx`,
asks Linux to send it SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``) and exits if
the parent is already gone (``die_with_parent_from_env``). SIGTERM, not SIGKILL: the child stops
gracefully and saves its state, so a restarted parent resumes it.

Why not ``preexec_fn``: Python runs it in the forked child of a threaded parent, and a gRPC
server is one: gRPC's fork handlers are skipped while its threads are busy, and a child
launched that way was seen to abort at start with ``epoll_wait: Bad file descriptor``. Without
``preexec_fn`` the child is spawned with vfork/posix_spawn and no fork handler runs at all.
The death signal follows the *thread* that started the child, so start it from a thread that
lives as long as the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping, MutableMapping

PARENT_ENV = "FX_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) plus this process's pid as the child's parent."""
    out = dict(os.environ if env is None else env)
    out[PARENT_ENV] = str(os.getpid())
    return out


def die_with_parent_from_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """If started by a parent that asked for it: end with that parent (module docstring).
    The variable is removed, so this process's own children are not tied to its parent."""
    value = environ.pop(PARENT_ENV, "")
    if not value.isdigit():
        return
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM),
                                                    0, 0, 0)
    if os.getppid() != int(value):  # the parent died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
