"""The progress lines of the tools: ``[tool HH:MM:SS] message``, flushed at once."""
from __future__ import annotations

import sys
import time
from typing import Callable

__all__ = ["tool_log"]


def tool_log(tool: str, to_stdout: bool = False) -> Callable[[str], None]:
    """``log(msg)`` printing ``[<tool> HH:MM:SS] msg`` on stderr (stdout with ``to_stdout``: the
    demo's progress is its output), flushed so that it interleaves correctly with subprocesses."""

    def log(msg: str) -> None:
        print(f"[{tool} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout if to_stdout else sys.stderr,
              flush=True)

    return log
