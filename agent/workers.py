"""Worker processes of palme-eval and palme-collect: set-up failures stop the run, and workers die with their parent.

- `WorkerSetupError`: a worker could not set itself up (load its model, build its planner). The
  worker's initializer keeps the error and raises it for every job it is given, so the parent gets
  the message from the first future instead of a BrokenProcessPool (or worse, scored failures).
  It is a ValueError, so the CLIs report it in one line and exit 2.
- `parent_watch()` / `exit_with_parent(conn)`: a worker of a forkserver pool is the forkserver's
  child, not the parent's, and holds the pool's queues open, so when the parent is SIGKILLed
  nothing tells it to stop (and the forkserver, which waits for its children, stays too). The
  parent keeps the write end of a pipe that only it holds; each worker gets the read end and a
  daemon thread that blocks on it: end of file means the parent is gone, and the worker exits.
  The forkserver and the resource tracker then exit on their own (their last clients are gone).
  This works for any start method and leaves no polling.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any


class WorkerSetupError(ValueError):
    """A worker process failed to set itself up; the message says why (one line)."""


def setup_error(exc: BaseException) -> WorkerSetupError:
    """The WorkerSetupError for an exception raised while a worker set itself up.

    A ValueError (a user error: a bad checkpoint, a bad name) keeps its message; anything else is
    named by its type, and its traceback is printed to the worker's stderr (bugs keep tracebacks).
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError):
        return WorkerSetupError(text or type(exc).__name__)
    traceback.print_exception(exc, file=sys.stderr)
    return WorkerSetupError(f"worker set-up failed: {type(exc).__name__}: {text}")


_WATCH: dict[int, tuple[Connection, Connection]] = {}  # parent pid -> (read end for workers, write end kept here)


def parent_watch() -> Connection:
    """The read end of this process's parent-alive pipe, to pass in a pool's initargs (created once per process).

    Only this process holds the write end, for its whole life: it closes when the process ends,
    however it ends (SIGKILL included).
    """
    pid = os.getpid()
    if pid not in _WATCH:
        from multiprocessing import Pipe

        _WATCH[pid] = Pipe(duplex=False)
    return _WATCH[pid][0]


def exit_with_parent(conn: Any) -> None:
    """In a worker: end this process as soon as the parent's end of `conn` (from `parent_watch`) closes."""
    if conn is None:
        return

    def watch() -> None:
        try:
            conn.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(1)  # the parent is gone: nobody will read this worker's results

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
