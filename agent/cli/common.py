"""What every CLI shares: user errors become one line `<prog>: error: <message>` and exit status 2.

A user error is a `ValueError` (our convention: a one-line message naming the key / file / value
and what was expected), a configuration error found by hydra or OmegaConf (an override that does
not parse, a misspelt key, `episodes=abc` for an int, a failed interpolation), or an `OSError` that
the user's paths cause (missing, not a folder, not writable, read-only file system). Anything else
is a bug and keeps its traceback.

    def main() -> None:
        @hydra.main(config_path="pkg://configs", config_name="collect", version_base="1.3")
        @user_errors("palme-collect")  # errors in the job itself (hydra would first print its own line)
        def _app(dcfg) -> None:
            collect(OmegaConf.to_object(dcfg))

        run_cli("palme-collect", _app)  # errors in composing the config from the command line

`run_cli` covers what hydra does before the job runs (composing the config from the command line):
hydra normally prints those errors over several lines (and exceptions from the job as a traceback
after an "Error executing job" line) and exits 1; with HYDRA_FULL_ERROR set for the call it
re-raises them, and they are reported here. `user_errors` on the job function reports the job's
own errors before hydra adds its line.

A refused start leaves no run folder behind: hydra creates its output folder (`hydra.run.dir`) and
writes `.hydra/` and `<job>.log` there before the job runs; when the job is refused with a user
error, `user_errors` removes that folder if this run created it (`HydraRunFolder`, a hydra callback
every CLI config names, notes which folders did not exist before) and it holds nothing but hydra's
own files (`remove_bare_hydra_folder`), then the parent folders the run created, if empty.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

EXIT_USAGE = 2  # the exit status of a refused command line (argparse's and the shells' convention)

# OSErrors that come from the paths a user gave (not from the program): reported in one line.
USER_OS_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS,
    errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP,
})


def one_line(text: object) -> str:
    """`text` with its lines stripped and joined by spaces (library messages often span lines)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _omegaconf_line(err: Any) -> str:
    """An OmegaConf error in one line: its message without the `full_key:` / `object_type=` lines, the key and its type."""
    msg = getattr(err, "msg", None) or str(err)
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    head = " ".join(ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type=")))
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    expected = _field_type(getattr(err, "object_type", None), getattr(err, "key", None))
    if key and expected:
        return f"{head} (key {key!r} expects {expected})"
    if key and str(key) not in head:
        return f"{head} (key {key!r})"
    return head


def _field_type(schema: Any, key: Any) -> str | None:
    """The declared type of field `key` of a dataclass schema, as written in the source (e.g. `int`, `list[int] | None`)."""
    if schema is None or key is None or not dataclasses.is_dataclass(schema):
        return None
    for f in dataclasses.fields(schema):
        if f.name == str(key):
            return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return None


def error_line(err: BaseException) -> str | None:
    """The one-line message of a user error, or None when `err` is a bug (which keeps its traceback)."""
    from hydra.errors import CompactHydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, CompactHydraException):  # composing the config: an override, a key, a type
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith("See http")]
        cause = err.__cause__
        if isinstance(cause, OmegaConfBaseException):  # the first line names the override, the cause what is wrong
            return f"{(lines[0] if lines else type(err).__name__).rstrip('.')}: {_omegaconf_line(cause)}"
        text = " ".join(lines) or type(err).__name__
        if isinstance(err, OverrideParseException):
            return f"cannot parse the command line: {text}"
        return f"{text}: {one_line(cause)}" if cause is not None and str(cause).strip() else text
    if isinstance(err, OmegaConfBaseException):  # OmegaConf.to_object: a type, a missing value, an interpolation
        return _omegaconf_line(err)
    if isinstance(err, ValueError):
        return one_line(err) or type(err).__name__
    if isinstance(err, OSError) and err.errno in USER_OS_ERRNOS:
        where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return f"{err.strerror or one_line(err)}: {where}" if where else one_line(err)
    return None


# hydra run folder (absolute) -> the topmost folder of it that did not exist before this run (the folder
# itself or a parent), None when it existed: noted by HydraRunFolder before hydra creates it
_NEW_RUN_FOLDERS: dict[str, Path | None] = {}


class HydraRunFolder(Callback):
    """Hydra callback (`hydra.callbacks.run_folder` in every CLI config): notes whether the run's output folder
    and its parents exist before hydra creates them, so a refused start removes only what it created."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        try:
            folder = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir", throw_on_missing=True))))
        except Exception:  # noqa: BLE001 - an unresolvable run.dir: nothing noted, nothing will be removed
            return
        top = None
        for path in (folder, *folder.parents):
            if path.exists():
                break
            top = path
        _NEW_RUN_FOLDERS[str(folder)] = top


def remove_bare_hydra_folder(folder: Path, output_subdir: str | None, job_name: str) -> bool:
    """Remove hydra's output folder when it holds nothing but hydra's own files; return whether it did.

    Hydra's own files: `<output_subdir>/` (`.hydra/`: config.yaml, hydra.yaml, overrides.yaml) and the
    job's log `<job_name>.log`. A folder holding anything else (checkpoints, logs of a run, a user's
    files) is kept whole.
    """
    own = {f"{job_name}.log"} | ({output_subdir} if output_subdir else set())
    hydra_files = {"config.yaml", "hydra.yaml", "overrides.yaml"}
    try:
        entries = set(os.listdir(folder))
        sub = folder / output_subdir if output_subdir else None
        if not entries <= own or (sub is not None and sub.is_dir() and not set(os.listdir(sub)) <= hydra_files):
            return False
        if sub is not None:
            shutil.rmtree(sub, ignore_errors=True)
        (folder / f"{job_name}.log").unlink(missing_ok=True)
        folder.rmdir()
    except OSError:  # another rank removed it first, or it cannot be listed: leave it
        return False
    return True


def _remove_refused_run_folder() -> None:
    """In a hydra job refused with a user error: remove the run folder this run created if it holds only hydra's
    files, then the parents the run created that are now empty (never a folder that existed before)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    folder = Path(os.path.abspath(str(hc.runtime.output_dir)))
    top = _NEW_RUN_FOLDERS.pop(str(folder), None)
    if top is None or not remove_bare_hydra_folder(folder, hc.output_subdir, hc.job.name):
        return
    for parent in folder.parents:
        if parent != top and top not in parent.parents:
            break  # above what this run created
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Context manager (and decorator): a user error inside prints `<prog>: error: <one line>` and exits 2.

    Other exceptions (bugs), KeyboardInterrupt and SystemExit pass through unchanged. Inside a hydra
    job, a user error also removes the run folder hydra made for it if it holds only hydra's files
    (see the module docstring).
    """
    try:
        yield
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        _remove_refused_run_folder()
        print(f"{prog}: error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE) from None


def run_cli(prog: str, app: Callable[[], Any]) -> Any:
    """Run a CLI's entry point (a `@hydra.main` function or any callable) under `user_errors(prog)`.

    HYDRA_FULL_ERROR is set for the call so that hydra re-raises instead of printing its own report:
    errors in composing the config (before the job runs) then reach `user_errors` too, and a bug
    shows its whole traceback. Decorate the job function itself with `user_errors(prog)` as well
    (see the module docstring): hydra prints a line of its own before re-raising a job's error.
    """
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with user_errors(prog):
            return app()
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def check_writable(path: str | Path, what: str = "output folder") -> Path:
    """Create folder `path` (with its parents) if needed and prove it takes a file; returns it as a Path.

    Raises ValueError naming `what`, the path and the reason (read-only file system, permission
    denied, a file in the way, ...), so that a run is refused before its first episode rather than
    losing its results at the end.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".palme-write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r} is not writable: {err.strerror or one_line(err)}") from err
    return path

