"""Errors a user can fix. Imports nothing from the project, so every layer can raise them.

Entry points (``tools/*.py``) run through :func:`run_main`: a :class:`UserError` prints its message
and exits with status 2, without a traceback; a :class:`TrainingStopped` (a training step failed on
one process, and every process stopped at that iteration) prints its message and exits with
status 1, the failing process's log keeping the traceback of the cause; any other exception is a
bug and keeps its traceback.
"""

import os
import sys
import time
from typing import Any, Callable, NoReturn, Optional

__all__ = ["UserError", "ConfigError", "DataError", "CheckpointError", "PathNotFoundError", "TrainingStopped",
           "run_main", "exit_now"]

_entry_point: Optional[str] = None  # ``prog`` of the run_main running in this process, if any


class UserError(Exception):
    """A mistake in what the user gave (config, override, file, dataset, checkpoint); the message
    says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """The config is inconsistent or cannot be loaded (missing file, bad override, wrong unit,
    class-count mismatch...)."""


class DataError(UserError, ValueError):
    """A dataset cannot be used as given (unreadable annotations, missing or undecodable images...)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""


class PathNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (on the command line, in a config) does not exist."""


class TrainingStopped(Exception):
    """Training stopped on every process at the same iteration because a step failed on one of
    them; the message names the iteration, the rank and the cause. Exit status 1."""


def run_main(main: Callable[[], Any], prog: Optional[str] = None) -> int:
    """Run an entry point's ``main()`` and return its exit status: ``main``'s int result, 0 for
    any other result. A :class:`UserError` prints ``<prog>: error: <message>`` on stderr and gives
    2, without a traceback; a :class:`TrainingStopped` prints the same way and gives 1; any other
    exception propagates with its traceback.

    Usage at the bottom of a tool: ``sys.exit(run_main(main))``.
    """
    global _entry_point
    prog = _entry_point = prog or os.path.basename(sys.argv[0])
    try:
        status = main()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 2
    except TrainingStopped as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 1
    return status if isinstance(status, int) else 0


def exit_now(error: Exception, launcher_wait_s: float = 60.0) -> NoReturn:
    """End this process now, reporting a :class:`TrainingStopped` or :class:`UserError` as
    :func:`run_main` would, with its status. A process started by ``--num-gpus`` has no entry
    point of its own: its launcher reports the failing process's error and ends the others, so it
    waits for that (at most ``launcher_wait_s``) rather than racing the failing process's report.

    For a thread that must stop the process while its main thread cannot return: waiting in a
    collective that a failed rank will never join."""
    if _entry_point is not None:
        print(f"{_entry_point}: error: {error}", file=sys.stderr, flush=True)
    else:
        time.sleep(launcher_wait_s)
    sys.stdout.flush()
    os._exit(2 if isinstance(error, UserError) else 1)
