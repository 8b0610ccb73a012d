"""The keys of a CLI's schema, read from its dataclasses: names, types, defaults and descriptions.

The schemas (agent.config.RunConfig, agent.evaluate.EvalConfig, training.collect.CollectConfig,
training.config.TrainConfig, and the dataclasses they nest or inherit) describe each field with a
trailing comment on its line in the source, which is the one place a description is written:

    task: str = "stack"  # task of the world (unknown names list the known ones)

`schema_fields` walks a schema into dotted keys (`train.lr`, `model.llm.hidden`) with that comment,
`render_help` turns them into the `--help` text (`key (type, default): description` lines), and
`suggest` finds the closest known key for a misspelt one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SchemaField:
    """One key of a schema: `key` dotted from the top, `type` as written in the source, the dataclass
    default (`MISSING` text when none), the description (the field's trailing comment, "" when none),
    and what kind of value it takes."""

    key: str
    type: str
    default: Any
    help: str
    is_list: bool = False  # a list[...] field (optionally `| None`): `key=value` means `key=[value]`
    is_dict: bool = False  # a dict[str, ...] field: its entries are free-form keys (`+key.name=value`)
    is_group: bool = False  # a nested dataclass: its own fields follow, prefixed with `key.`


def field_comments(cls: type) -> dict[str, str]:
    """{field name: the comment on its line} for the fields declared in `cls`'s own body (not its bases).

    The comment is the first `# ...` token on the lines the field's declaration spans. Source that
    cannot be read (a class built at run time) gives {}.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    return _comments_of(source)


@functools.cache
def _comments_of(source: str) -> dict[str, str]:
    import ast

    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments.setdefault(tok.start[0], tok.string.lstrip("#").strip())
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            end = node.end_lineno or node.lineno
            text = next((comments[n] for n in range(node.lineno, end + 1) if n in comments), "")
            out[node.target.id] = text
    return out


def _type_text(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _origins(hint: Any) -> set[Any]:
    """The generic origins of a type hint, looking through `X | None` / Optional."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return set().union(*(_origins(a) for a in args if a is not type(None)))
    return {typing.get_origin(hint) or hint}


def schema_fields(schema: type, prefix: str = "") -> list[SchemaField]:
    """Every key of a dataclass schema in declaration order (a base class's fields first), nested
    dataclasses as a group entry followed by their own keys (`model`, `model.name`, ...)."""
    comments: dict[str, str] = {}
    for klass in reversed(schema.__mro__):
        if dataclasses.is_dataclass(klass):
            comments.update(field_comments(klass))
    hints = typing.get_type_hints(schema)
    out: list[SchemaField] = []
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name, f.type)
        key = prefix + f.name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            doc = (inspect.getdoc(hint) or "").splitlines()
            out.append(SchemaField(key, hint.__name__, None, comments.get(f.name) or (doc[0] if doc else ""),
                                   is_group=True))
            out += schema_fields(hint, key + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "???"
        origins = _origins(hint)
        out.append(SchemaField(key, _type_text(f), default, comments.get(f.name, ""),
                               is_list=bool(origins & {list, tuple}), is_dict=dict in origins))
    return out


def suggest(key: str, known: list[str]) -> str | None:
    """The known key closest to a misspelt `key` (difflib), also matching its last part alone
    (`lr` -> `train.lr`); None when nothing is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    last = key.rsplit(".", 1)[-1]
    by_last = {k.rsplit(".", 1)[-1]: k for k in reversed(known)}  # the first key with that last part wins
    close = difflib.get_close_matches(last, list(by_last), n=1, cutoff=0.75)
    return by_last[close[0]] if close else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def render_help(prog: str, fields: list[SchemaField], defaults: dict[str, Any] | None = None,
                doc: str = "", groups: dict[str, tuple[Any, list[str]]] | None = None) -> str:
    """The `--help` text: a usage line, the schema's one-line summary, then `key (type, default): description`
    per key (nested groups as a heading line), then the config groups (`groups`: {group: (its choice, the
    names it offers)}). `defaults` ({dotted key: value}) replaces the dataclass defaults where given (the
    values the CLI's yaml config and the command line's overrides compose)."""
    defaults = defaults or {}
    lines = [f"usage: {prog} [key=value ...] [+group.entry=value ...] [hydra.run.dir=DIR] [--hydra-help]"]
    if doc:
        lines += ["", doc]
    lines += ["", "keys (a list key also takes one value: key=x means key=[x]):"]
    for f in fields:
        depth = f.key.count(".")
        indent = "  " * (depth + 1)
        if f.is_group:
            lines.append(f"{indent}{f.key}: {f.help}" if f.help else f"{indent}{f.key}:")
            continue
        default = defaults.get(f.key, f.default)
        lines.append(f"{indent}{f.key} ({f.type}, {_shown(default)})" + (f": {f.help}" if f.help else ""))
    if groups:
        lines += ["", "config groups (group=name):"]
        lines += [f"  {g} ({_shown(choice)}): {' | '.join(names)}" for g, (choice, names) in groups.items()]
    lines += ["", f"hydra's own options and overrides: {prog} --hydra-help; the composed config: {prog} --cfg job"]
    return "\n".join(lines)
