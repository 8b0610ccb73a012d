"""Reading the files of a model folder: regular files only, size caps, JSON objects, no code named.

Part of the checks described in `agent.model.checkpoint_checks` (which re-exports every name here).
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

CODE_KEYS = ("auto_map", "custom_pipelines")  # keys through which transformers imports Python files from a folder
# Size caps of the JSON files of a model folder, checked before a byte is parsed (a 2 GB config.json
# would otherwise take a minute and GBs of memory to refuse). A config.json, tokenizer_config.json,
# generation_config.json or preprocessor_config.json is a few KB (a chat template adds some 100 KB):
# 16 MiB is far above any; tokenizer.json holds the vocabulary and merges: Llama-3's (128k tokens)
# is 9 MB, Gemma-3's (262k) 33 MB, so 64 MiB.
MAX_JSON_BYTES = 16 * 2**20
MAX_TOKENIZER_JSON_BYTES = 64 * 2**20


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error's text on one line (whitespace runs collapsed), cut at `limit` characters."""
    text = " ".join(str(err).split())
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """`value` as shown in a message: its JSON text (cut) and its type."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({type(value).__name__})"


# ---------------------------------------------------------------------------------------------
# files


def _file_kind(mode: int) -> str:
    """What a file of st_mode `mode` is, in words ("a FIFO (named pipe)", "a character device", ...)."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a file, or None for a regular file (symlinks followed).

    "is missing" (also a dangling symlink), or "is a FIFO (named pipe), not a regular file" and the
    like: reading a FIFO blocks until someone writes, reading /dev/zero never ends. Never opens it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or one_line(err)})"
    return None if stat.S_ISREG(mode) else f"is {_file_kind(mode)}, not a regular file"


def json_size_cap(path: str | Path) -> int:
    """The size cap of a model folder's JSON file: MAX_TOKENIZER_JSON_BYTES for tokenizer.json, else MAX_JSON_BYTES."""
    return MAX_TOKENIZER_JSON_BYTES if Path(path).name == "tokenizer.json" else MAX_JSON_BYTES


def read_file_capped(path: str | Path, cap: int) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), refused in one line past `cap` bytes.

    Checked before reading: the file is regular (a FIFO, device, socket or folder is refused without
    being read: one would block, /dev/zero never ends) and at most `cap` bytes (its size and the cap
    are named); it is opened non-blocking and checked again, so a file swapped in between is refused
    too. Raises ValueError naming the file.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise ValueError(f"{path} {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ValueError(f"{path} cannot be read: {err.strerror or one_line(err)}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is {_file_kind(st.st_mode)}, not a regular file")
        size = st.st_size
        data = b"" if size > cap else f.read(cap + 1)
    if size > cap or len(data) > cap:
        raise ValueError(f"{path} is {max(size, len(data)):,} bytes, over the {cap:,}-byte cap for this file "
                         f"({cap // 2**20} MiB): no such file of a model is that large")
    return data


def read_json_object(path: str | Path, cap: int | None = None) -> dict[str, Any]:
    """A JSON file holding an object, parsed; ValueError naming the file if missing, not a regular file, larger
    than `cap` bytes (default `json_size_cap`), not UTF-8, not JSON (an integer of more than 4300 digits
    included), not an object."""
    path = Path(path)
    raw = read_file_capped(path, json_size_cap(path) if cap is None else cap)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}): "
                         "expected a JSON file") from None
    try:
        data = json.loads(text)
    except ValueError as err:  # JSONDecodeError, and an integer too long to convert (over 4300 digits)
        raise ValueError(f"{path} is not valid JSON: {one_line(err)}") from None
    except RecursionError:
        raise ValueError(f"{path} nests JSON too deeply to be a config") from None
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object at the top level, got {_kind(data)}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    return data


def check_folder(path: str | Path, files: Collection[str], what: str) -> Path:
    """`path` as a folder holding every name of `files`; ValueError saying which is not there."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder; expected a folder holding {list(files)}")
    problems = {name: file_problem(path / name) for name in files}
    missing = [name for name, problem in problems.items() if problem == "is missing"]
    if missing:
        raise ValueError(f"{what} {path} is missing {', '.join(missing)}; it needs {list(files)}")
    for name, problem in problems.items():
        if problem:
            raise ValueError(f"{what} {path}: {name} {problem}")
    return path


def _walk(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key path, value) of every entry of nested JSON objects and lists, depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, value
            yield from _walk(value, path)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, f"{prefix}[{i}]")


@functools.lru_cache(1)
def _tokenizer_class_names() -> frozenset[str]:
    """Tokenizer class names transformers ships (what a tokenizer_config.json may name)."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    names = {"PreTrainedTokenizerFast", "PreTrainedTokenizer", "TokenizersBackend"}
    for value in TOKENIZER_MAPPING_NAMES.values():
        for name in value if isinstance(value, (tuple, list)) else (value,):
            if name:
                names.update((name, name.removesuffix("Fast"), name.removesuffix("Fast") + "Fast"))
    return frozenset(names)


def refuse_code(folder: str | Path) -> None:
    """Refuse a folder whose JSON files would make transformers import Python code from it, without asking.

    Every top-level `*.json` file is read (files that are not JSON are left to their own loader):
    an `auto_map` or `custom_pipelines` key at any depth (config.json, its nested llm_config /
    vision_config, tokenizer_config.json, preprocessor_config.json, generation_config.json, ...) is
    refused, and so is a `tokenizer_class` that transformers does not ship. Every top-level entry
    must be a regular file or a folder (symlinks followed): a FIFO or a device (`ln -s /dev/zero
    notes.json`) is refused before anything reads it, and a JSON file past its size cap
    (`json_size_cap`: 16 MiB, 64 MiB for tokenizer.json) before it is parsed.
    Raises ValueError naming the file and the key (or what the file is, or its size and the cap).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a dangling symlink: whoever needs the file says it is missing
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is {_file_kind(mode)}, not a regular file: a model folder holds files and "
                             "folders only (reading it would block or never end)")
        if path.suffix != ".json":
            continue
        try:
            text = read_file_capped(path, json_size_cap(path)).decode("utf-8")
        except UnicodeDecodeError:
            continue  # not JSON: whoever reads it refuses it; it cannot name code to anyone
        if "\\u" not in text and not any(k in text for k in (*CODE_KEYS, "tokenizer_class")):
            continue  # no such key, even escaped: nothing to parse (the common case, and fast)
        suspects: list[str] = []

        def note(pairs: list[tuple[str, Any]], suspects: list[str] = suspects) -> dict[str, Any]:
            suspects += [k for k, v in pairs if k in CODE_KEYS or (k == "tokenizer_class" and v is not None)]
            return dict(pairs)

        try:
            data = json.loads(text, object_pairs_hook=note)
        except (ValueError, RecursionError):
            continue
        if not suspects:
            continue
        for key, value in _walk(data):
            name = key.rsplit(".", 1)[-1]
            if name in CODE_KEYS:
                raise ValueError(f"{path}: key {key} names Python code to run ({_kind(value)}); "
                                 "code from a model folder is never run: remove the key")
            if name == "tokenizer_class" and value is not None and (
                    not isinstance(value, str) or value not in _tokenizer_class_names()):
                raise ValueError(f"{path}: {key} {_kind(value)} is not a tokenizer class transformers ships; "
                                 "custom tokenizer classes are refused (use a tokenizer.json)")
