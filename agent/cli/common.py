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


def cli_schema(config_name: str) -> type | None:
    """The dataclass schema of a CLI config (`<config_name>_schema` in hydra's ConfigStore, which the CLI's
    `register_configs()` fills and its configs/<config_name>.yaml names first); None when not registered."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    try:
        node = ConfigStore.instance().load(config_path=f"{config_name}_schema.yaml").node
    except Exception:  # noqa: BLE001 - not registered (an app that is not one of ours): nothing to check
        return None
    schema = OmegaConf.get_type(node)
    return schema if dataclasses.is_dataclass(schema) else None


def config_groups() -> set[str]:
    """The config groups under configs/ (folders of yaml files, e.g. `model`, `experiment`): `group=name` selects one."""
    from importlib.resources import files

    out: set[str] = set()
    todo = [(files("configs"), "")]
    while todo:
        folder, prefix = todo.pop()
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                out.add(prefix + entry.name)
                todo.append((entry, f"{prefix}{entry.name}/"))
    return out


def check_overrides(prog: str, overrides: list[str], schema: type) -> list[str]:
    """The command line's overrides checked against a CLI's schema, with one value for a list key made a list.

    Every key (`key=v`, `+key=v`, `++key=v`, `~key`) must be a key of the schema (nested ones dotted:
    `train.lr`), an entry under a dict-typed key (`+data.weights.<name>=v`: free-form names, checked later by
    their registry), or a config group (`model=palme-tiny`, `experiment=NAME`); `hydra.*` overrides pass
    unchecked. A `key=value` for a list-typed key whose value is one element (not a list, null, a sweep or an
    interpolation) becomes `key=[value]`. Raises ValueError (one line) naming the first unknown key and the
    closest known one; an override that does not parse is returned as is (hydra reports it).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    from agent.cli.help import schema_fields, suggest

    fields = {f.key: f for f in schema_fields(schema)}
    groups = config_groups()
    parser = OverridesParser.create()
    out: list[str] = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except HydraException:
            out.append(text)
            continue
        key = override.key_or_group
        if override.is_hydra_override():
            out.append(text)
            continue
        under_dict = any(key.startswith(k + ".") and f.is_dict for k, f in fields.items())
        if key not in fields and key not in groups and not under_dict:
            near = suggest(key, [k for k, f in fields.items() if not f.is_group] + sorted(groups))
            hint = f"; did you mean {near!r}?" if near else ""
            raise ValueError(f"unknown key {key!r} in {text!r}{hint} ({prog} --help lists the keys)")
        f = fields.get(key)
        value = override.value() if override.value_type == ValueType.ELEMENT else None
        if (f is not None and f.is_list and not override.is_delete() and value is not None
                and not isinstance(value, list | dict) and "${" not in text):
            head, _, raw = text.partition("=")
            text = f"{head}=[{raw}]"
        out.append(text)
    return out


def _checked_argv(prog: str, argv: list[str], config_name: str) -> list[str] | None:
    """argv with its overrides checked and list keys given one value made lists (`check_overrides`); prints the
    help and returns None for `--help` / `-h`. Arguments hydra's own parser refuses are left to hydra."""
    from hydra._internal.utils import get_args_parser

    schema = cli_schema(config_name)
    if schema is None:
        return argv
    try:
        args, _ = get_args_parser().parse_known_args(argv[1:])
    except SystemExit:  # hydra's parser would refuse it too: let hydra say so
        return argv
    checked = check_overrides(prog, list(args.overrides), schema)
    if args.help:
        print(cli_help(prog, config_name, schema, checked))
        return None
    rewritten = dict(zip(args.overrides, checked, strict=True))
    return [argv[0]] + [rewritten.get(a, a) for a in argv[1:]]


def cli_help(prog: str, config_name: str, schema: type, overrides: list[str]) -> str:
    """`<prog> --help`: every key with its type, the value the CLI's config (with `overrides`) gives it, and its
    description (the schema field's comment; agent.cli.help)."""
    import inspect
    from importlib.resources import files

    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from agent.cli.help import render_help, schema_fields

    fields = schema_fields(schema)
    user = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    with initialize_config_module(config_module="configs", version_base=None):
        composed = compose(config_name=config_name, overrides=user, return_hydra_config=True)
    choices = {g: c for g, c in composed.hydra.runtime.choices.items() if not g.startswith("hydra") and g in config_groups()}
    with open_dict(composed):
        del composed["hydra"]
    raw = OmegaConf.to_container(composed, resolve=False)  # an interpolation shows as written
    defaults: dict[str, Any] = {}
    for f in fields:
        cur: Any = raw
        for part in f.key.split("."):
            cur = cur.get(part, f.default) if isinstance(cur, dict) else f.default
        defaults[f.key] = cur
    doc = (inspect.getdoc(schema) or "").split("\n\n")[0].replace("\n", " ")
    groups = {g: (c, sorted(f.name.removesuffix(".yaml") for f in files("configs").joinpath(g).iterdir()
                            if f.name.endswith(".yaml"))) for g, c in choices.items()}
    return render_help(prog, fields, defaults, doc, groups)


def run_cli(prog: str, app: Callable[[], Any], config_name: str | None = None) -> Any:
    """Run a CLI's entry point (a `@hydra.main` function or any callable) under `user_errors(prog)`.

    Before hydra runs, the command line's overrides are checked against the CLI's schema
    (`check_overrides`: an unknown key, with or without `+`, is refused naming the closest known key; one
    value for a list key becomes a list), and `--help` / `-h` prints every key with its type, value and
    description and returns. The schema is `<config_name>_schema` in hydra's ConfigStore; `config_name`
    defaults to `prog` without its `palme-` (palme-run -> configs/run.yaml, run_schema).

    HYDRA_FULL_ERROR is set for the call so that hydra re-raises instead of printing its own report:
    errors in composing the config (before the job runs) then reach `user_errors` too, and a bug
    shows its whole traceback. Decorate the job function itself with `user_errors(prog)` as well
    (see the module docstring): hydra prints a line of its own before re-raising a job's error.
    """
    config_name = config_name or prog.removeprefix("palme-")
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    argv = sys.argv
    try:
        with user_errors(prog):
            checked = _checked_argv(prog, list(argv), config_name)
            if checked is None:  # --help
                return None
            sys.argv = checked
            return app()
    finally:
        sys.argv = argv
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

