"""Writing files that readers share: atomic replacement, with the permissions the user's umask asks for.

`tempfile.mkstemp` creates its file with mode 0600 whatever the umask, and safetensors' writer does the
same; a file renamed into place from such a temp file keeps 0600, so datasets and models would be
unreadable to colleagues even under umask 022. Every writer of shared data goes through
`write_atomic` (or, for a file a library wrote itself, `apply_umask`): mode `0o666 & ~umask`.

This module sits in the lowest layer (`envs`) so that every package can use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PROC_STATUS = "/proc/self/status"


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which races
    with other threads creating files): Linux's /proc/self/status, else a probe file in a private folder."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    with tempfile.TemporaryDirectory(prefix="umask-probe-") as folder:
        probe = os.path.join(folder, "probe")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777))
        return 0o777 & ~os.stat(probe).st_mode


def file_mode() -> int:
    """Mode of a new regular file under the current umask (0o644 under umask 022, 0o600 under 077)."""
    return 0o666 & ~current_umask()


def apply_umask(path: str | Path) -> None:
    """Give a file that a library created with a fixed mode (e.g. safetensors' 0600) the umask's mode."""
    os.chmod(path, file_mode())


def write_atomic(path: str | Path, data: bytes | str, fsync: bool = True) -> None:
    """Write `data` (str as UTF-8) to `path` so readers see the old or the new content, never a torn one.

    A temp file in the same folder is written, flushed (and fsynced unless `fsync=False`), given mode
    `0o666 & ~umask`, and renamed over `path`. The parent folder is created when missing. Errors are
    the OSError of the failing call; the temp file is removed then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(raw)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
