"""Dataset checks of files: links in the folder walk, plain/parquet reads, PNG frames (see `checks`)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.dataset.checks_core import (
    _PNG_SIGNATURE,
    Problem,
    one_line,
)
from training.dataset.episode import decode_png
from training.dataset.schema import (
    IMAGE_KEY,
)

MAX_LISTED_LINKS = 20  # link_problems names this many entries, then counts the rest


def _kind_of(mode: int) -> str:
    """What a file of st_mode `mode` is, in words."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def link_problems(root: str | Path) -> list[Problem]:
    """An error for every symbolic link, FIFO, device or socket inside the dataset folder (links not followed).

    A dataset folder holds its own files: the writer writes and deletes only inside it, and a
    link (`data/chunk-000 -> /elsewhere`) would take its deletions elsewhere; a FIFO or a device
    would block or never end a read. The folder `root` itself may be a link.
    """
    found = []
    for parent, dirs, files in os.walk(root):  # followlinks=False: a linked folder is listed, not entered
        for name in sorted(dirs + files):
            path = Path(parent) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue  # removed meanwhile
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                target = f" to {os.readlink(path)!r:.80}" if stat.S_ISLNK(mode) else ""
                found.append((path.relative_to(root).as_posix(), f"is {_kind_of(mode)}{target}"))
    problems = [Problem("error", f"{why}: a dataset folder holds regular files and folders only (links are not "
                        "followed; copy the files in, e.g. cp -rL)", None, rel) for rel, why in found[:MAX_LISTED_LINKS]]
    if len(found) > MAX_LISTED_LINKS:
        problems.append(Problem("error", f"and {len(found) - MAX_LISTED_LINKS} more links or special files", None, None))
    return problems


def read_plain_file(path: Path) -> bytes:
    """The bytes of a regular file that is not a symbolic link (opened with O_NOFOLLOW, non-blocking).

    Raises FileNotFoundError when missing, OSError (its strerror says why: "is a symbolic link",
    "is a FIFO (named pipe)", ...) for anything else: a link is not followed, a FIFO or device not read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW on a link
            raise OSError(errno.ELOOP, "is a symbolic link (not followed)", str(path)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"is {'a folder' if stat.S_ISDIR(mode) else _kind_of(mode)}", str(path))
        return f.read()


def read_parquet(root: Path, rel: str, columns: list[str] | None = None) -> tuple[pa.Table | None, str | None, str]:
    """(table, None, sha256 of the bytes) or (None, why it could not be read: missing, a link or special file,
    truncated, corrupt, "")."""
    path = root / rel
    try:
        data = read_plain_file(path)
    except FileNotFoundError:
        return None, "file is missing", ""
    except OSError as err:
        return None, f"cannot be read ({err.strerror or type(err).__name__})", ""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        return pf.read(columns=columns, use_threads=False), None, hashlib.sha256(data).hexdigest()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for truncated / corrupt files
        return None, f"unreadable parquet (truncated or corrupt): {type(err).__name__}: {one_line(err)[:160]}", ""



def check_images(table: pa.Table, info: dict[str, Any], ep: int, rel: str) -> list[Problem]:
    """Decode every frame's PNG and check its shape."""
    shape = tuple(info["features"][IMAGE_KEY]["shape"])
    problems = []
    for i, cell in enumerate(table.column(IMAGE_KEY).to_pylist()):
        why = image_problem(cell, shape)
        if why:
            problems.append(Problem("error", f"frame {i} image: {why}", ep, rel, frame=i))
    return problems


def decode_checked(data: bytes | None, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """(H, W, 3) uint8 RGB of stored PNG bytes, or (None, why it is unusable). The PNG header's size is
    checked before decoding, so a header claiming a huge image is refused without allocating it."""
    if not data:
        return None, "missing (no PNG bytes)"
    if data[:8] != _PNG_SIGNATURE or len(data) < 24 or data[12:16] != b"IHDR":
        return None, "not a readable PNG image"
    w, h = struct.unpack(">II", data[16:24])
    if (h, w) != tuple(shape[:2]):
        return None, f"shape {(h, w, shape[2])}, expected {shape}"
    try:
        img = decode_png(data)
    except ValueError as e:
        return None, str(e)
    return (img, "") if img.shape == shape else (None, f"shape {img.shape}, expected {shape}")


def image_problem(cell: dict[str, Any] | None, shape: tuple[int, ...]) -> str | None:
    """Why a stored image cell is unusable, or None."""
    img, why = decode_checked((cell or {}).get("bytes"), shape)
    return None if img is not None else why
