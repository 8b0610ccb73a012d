"""Import PyBullet once without its "pybullet build time: ..." banner.

The banner is written by PyBullet's C module at import time, straight to file descriptor 2, so it
cannot be silenced from Python's `sys.stderr`; descriptors 1 and 2 are pointed at /dev/null for the
duration of the import (and of a flush of C's stdio buffers) only. Every module of `envs` imports
`pybullet` after this one (it runs first from `envs/__init__.py`), so no CLI prints the banner.
An import error still raises as usual.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _quiet_import() -> None:
    if "pybullet" in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "w") as null:
            for fd in saved:
                os.dup2(null.fileno(), fd)
            import pybullet  # noqa: F401  (cached in sys.modules for every later import)

            ctypes.CDLL(None).fflush(None)  # anything left in C's buffers goes to /dev/null too
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


_quiet_import()
