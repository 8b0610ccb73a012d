"""Fuzzing the one gate: every mutation of a small dataset is either refused by `palme-dataset validate`
(exit status 2, one stderr line, no traceback, and palme-train refuses at start with the same problem) or
accepted, and then palme-train's data path builds every example, they collate and a tiny model takes a
training step on them, and the examples are those of the original dataset (a value that changes them is
accepted only where the format has no redundancy to check it against: the camera, table height and
workspace numbers of info.json).

Mutations: byte flips, truncations, deleted and duplicated files in the folder; edits of info.json and of
the episode metadata rows (deleted keys and columns, wrong types, nulls, huge / negative integers, NaN,
indices pointing nowhere, other values of the right type); garbage and edited values in the JSON-string
columns. The default suite runs a few dozen (seconds); `-m slow` runs 320 and prints the counts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from agent.model import make_model
from agent.prompts import PromptBuilder
from training.collect import CollectConfig, collect
from training.config import DataConfig
from training.data import DataValidationError, TrainData, load_data
from training.dataset import NotADatasetError, validate
from training.dataset.schema import data_path, episodes_path
from training.dataset_cli import main as cli
from training.sources import source_names

TINY = {"llm": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 300},
        "vision": {"image_size": 32, "patch_size": 16, "hidden": 32, "layers": 1, "heads": 2, "intermediate": 64},
        "state": {"hidden": 32}}
JSON_COLUMNS = ("objects", "names", "plan_steps", "frame_t")
# info.json values with nothing to check them against: a changed number is a different, valid dataset
FREE_INFO = ("palme.camera.view", "palme.camera.proj", "palme.table_z", "palme.workspace")
ODD_VALUES: list[Any] = [None, "fast", "", [], {}, True, 1.5, -1, 0, 2**63, 10**30, float("nan"), float("inf"),
                         [1, 2], {"a": 1}]
GARBAGE = ['{"not json', "", "null", "[" * 5000, "1e999", "NaN", '{"a": 1}', "[[]]", "\u00ff\u2028", '"text"', "[1, 2, 3]",
           '[{"color": "red"}]', "[-1, 0]"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    """The original dataset (two pick-and-place episodes at 32x32 from palme-collect's Python API), its
    examples through palme-train's data path, and a tiny model whose tokenizer knows their texts."""
    base = tmp_path_factory.mktemp("fuzz") / "grasp"
    collect(CollectConfig(env="pickplace", task="grasp", episodes=2, workers=1, fps=1, image_size=[32, 32],
                          progress=False, out=str(base)), log=lambda *_: None)
    probe = make_model("palme-small", **TINY)
    prompts = probe.prompt_builder
    data = _load(base, prompts)
    model = make_model("palme-small", tokenizer_texts=data.texts(), **TINY)
    model.fit_state_stats(data.state_examples())
    model.train()
    return {"base": base, "prompts": prompts, "model": model, "examples": examples_of(data),
            "info": json.loads((base / "meta/info.json").read_text())}


def _load(root: Path, prompts: PromptBuilder) -> TrainData:
    """palme-train's data setup, with every example source in the mixture."""
    return load_data(DataConfig(dirs=[str(root)], weights=dict.fromkeys(source_names(), 1.0)), prompts, seed=0,
                     log=lambda *_: None)


def _digest(ex) -> tuple:
    h = hashlib.sha256()
    for a in (ex.image, ex.objects, ex.robot, ex.zones):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    return ex.prompt, ex.answer, ex.kind, ex.prompt_loss, json.dumps(ex.meta, sort_keys=True, default=str), h.hexdigest()


def examples_of(data: TrainData) -> dict[tuple[str, str], list[tuple]]:
    """Every example (text and arrays) of every source, training and held out, in order."""
    return {(part, source): [_digest(data.example(r)) for r in refs]
            for part, by_source in (("train", data.train), ("heldout", data.heldout))
            for source, refs in sorted(by_source.items())}


# ---- mutations ------------------------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    """The dataset's files (not the writer's lock, which holds no data)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".writer.lock")


def _flat(obj: Any, prefix: str = "") -> dict[str, str]:
    """path -> JSON text of every leaf (NaN-safe comparison)."""
    if isinstance(obj, dict) and obj:
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(obj, list) and obj:
        return {k: v for i, val in enumerate(obj) for k, v in _flat(val, f"{prefix}.{i}").items()}
    return {prefix: json.dumps(obj)}


def _free_info_change(root: Path, original: dict[str, Any]) -> bool:
    """Whether info.json still parses and differs from the original only in FREE_INFO values."""
    try:
        now = json.loads((root / "meta/info.json").read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    a, b = _flat(original), _flat(now)
    changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    return bool(changed) and all(k.startswith(FREE_INFO) for k in changed)


def _odd(rng: np.random.Generator, value: Any) -> Any:
    """A value of another type, an extreme, or a neighbour of `value`."""
    if _is_number(value) and rng.random() < 0.4:
        return value + int(rng.choice([-1, 1])) if isinstance(value, int) else value * float(rng.choice([0.5, 2.0, -1.0]))
    if isinstance(value, str) and rng.random() < 0.4:
        return value[: int(rng.integers(len(value) + 1))] + str(rng.choice(["x", " ", ".", "Step 2.", "\n"]))
    return ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _edit_json(rng: np.random.Generator, obj: Any) -> tuple[Any, str]:
    """`obj` with one random node deleted, retyped or changed; returns (new object, path edited)."""
    path: list[Any] = []
    node = obj
    while isinstance(node, dict | list) and node and (not path or rng.random() < 0.75):
        key = list(node)[int(rng.integers(len(node)))] if isinstance(node, dict) else int(rng.integers(len(node)))
        path.append(key)
        node = node[key]
    if not path:
        return _odd(rng, obj), "<root>"
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.25:
        del parent[path[-1]]
    else:
        parent[path[-1]] = _odd(rng, parent[path[-1]])
    return obj, ".".join(str(k) for k in path)


def _write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, write_page_checksum=True)


def mutate(root: Path, rng: np.random.Generator, info: dict[str, Any]) -> tuple[str, str]:
    """Apply one random mutation to the dataset at `root`; returns (kind, description)."""
    kind = str(rng.choice(["flip", "truncate", "delete", "duplicate", "info", "row", "json"],
                          p=[0.22, 0.1, 0.08, 0.08, 0.2, 0.18, 0.14]))
    files = _files(root)
    total = info["total_episodes"]
    if kind == "flip":
        path = files[int(rng.integers(len(files)))]
        raw = bytearray(path.read_bytes())
        if not raw:
            return kind, f"{path.name} (empty)"
        for _ in range(int(rng.integers(1, 5))):
            raw[int(rng.integers(len(raw)))] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(raw))
        return kind, path.relative_to(root).as_posix()
    if kind == "truncate":
        path = files[int(rng.integers(len(files)))]
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[: int(rng.integers(size)) if size else 0])
        return kind, path.relative_to(root).as_posix()
    if kind == "delete":
        path = files[int(rng.integers(len(files)))]
        path.unlink()
        return kind, path.relative_to(root).as_posix()
    if kind == "duplicate":
        src = files[int(rng.integers(len(files)))]
        ep = int(rng.integers(total + 2))  # an existing episode's place, or past the committed ones
        dst = root / str(rng.choice([data_path(ep), episodes_path(ep), "meta/info.json", "meta/stats.json",
                                     "meta/tasks.parquet"]))
        if dst == src:
            dst = root / episodes_path(total)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return kind, f"{src.relative_to(root).as_posix()} -> {dst.relative_to(root).as_posix()}"
    if kind == "info":
        new, where = _edit_json(rng, json.loads((root / "meta/info.json").read_text()))
        (root / "meta/info.json").write_text(json.dumps(new))
        return kind, where
    ep = int(rng.integers(total))
    path = root / episodes_path(ep)
    table = pq.read_table(path)
    rows, schema = table.to_pylist(), table.schema
    if kind == "json":
        col = str(rng.choice(JSON_COLUMNS))
        if rng.random() < 0.4:
            rows[0][col] = GARBAGE[int(rng.integers(len(GARBAGE)))]
        else:
            new, where = _edit_json(rng, json.loads(rows[0][col]))
            rows[0][col] = json.dumps(new)
            col = f"{col}:{where}"
        _write_rows(path, rows, schema)
        return kind, f"episode {ep} {col}"
    col = schema.names[int(rng.integers(len(schema.names)))]
    how = str(rng.choice(["null", "value", "type", "drop", "rows"], p=[0.15, 0.5, 0.15, 0.1, 0.1]))
    if how == "drop":
        pq.write_table(table.drop_columns([col]), path)
    elif how == "rows":
        _write_rows(path, rows * 2 if rng.random() < 0.5 else [], schema)
    elif how == "type":
        rows[0][col] = json.dumps(rows[0][col])
        fields = [pa.field(f.name, pa.string()) if f.name == col else f for f in schema]
        _write_rows(path, rows, pa.schema(fields))
    else:
        value = rows[0][col]
        if how == "null":
            value = None
        elif value is None:
            value = str(rng.choice(["physics", "x", ""]))
        elif isinstance(value, bool):
            value = not value
        elif isinstance(value, int):
            value = int(rng.choice([value + 1, value - 1, -1, 2**62, 7, 0]))
        elif isinstance(value, float):
            value = float(rng.choice([float("nan"), -value, value + 1.0, 1e300]))
        elif isinstance(value, str):
            value = str(rng.choice(["", value + "x", "grasp", "train", "L1", "pickplace", value[::-1]]))
        elif isinstance(value, list):
            value = [] if rng.random() < 0.3 or not value else [*value, value[0]] if rng.random() < 0.5 else \
                [_odd(rng, v) if isinstance(v, float) else v for v in value[:-1]] + [float("nan")]
        try:
            rows[0][col] = value
            _write_rows(path, rows, schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            rows[0][col] = None
            _write_rows(path, rows, schema)
            how = "null"
    return kind, f"episode {ep} {col} ({how})"


# ---- the property ---------------------------------------------------------------------------------


def check_one(world: dict[str, Any], root: Path, seed: int, capsys) -> tuple[str, str, str | None]:
    """Mutate a fresh copy, then (outcome, kind, failure or None): outcome is "accepted" or "refused:<kind>"."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(world["base"], root)
    kind, what = mutate(root, np.random.default_rng([seed, 17]), world["info"])
    label = f"seed {seed} {kind} {what}"
    capsys.readouterr()
    try:
        rc = cli(["validate", str(root)])
    except SystemExit as e:
        rc = e.code
    except Exception as e:  # noqa: BLE001 - any escape from the CLI is a failure of the gate
        return "crash", kind, f"{label}: validate raised {type(e).__name__}: {e}"
    err = capsys.readouterr().err
    if rc == 2:
        if err.count("\n") != 1 or not err.startswith("palme-dataset: error: ") or "Traceback" in err:
            return "refused", kind, f"{label}: refusal is not one error line: {err!r}"
        try:
            problems = [p for p in validate(root) if p.level == "error"][:1]
            first = [str(p) for p in problems]
            area = _area(problems[0].file) if problems else "?"
        except NotADatasetError as e:
            first, area = [str(e)], "info.json unreadable"
        try:
            _load(root, world["prompts"])
        except DataValidationError as e:
            if first and first[0] not in str(e):
                return "refused", kind, f"{label}: training refused with another problem: {e} (validate: {first[0]})"
        except Exception as e:  # noqa: BLE001
            return "refused", kind, f"{label}: training raised {type(e).__name__} on a refused folder: {e}"
        else:
            return "refused", kind, f"{label}: validate refused it but training loaded it"
        return f"refused:{area}", kind, None
    if rc != 0:
        return "crash", kind, f"{label}: validate exit status {rc}: {err!r}"
    try:
        data = _load(root, world["prompts"])
        got = examples_of(data)
        train = [data.example(r) for refs in data.train.values() for r in refs[:3]][:8]
        model = world["model"]
        model.zero_grad(set_to_none=True)
        loss = model(model.collate(train, train=True))
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    except Exception as e:  # noqa: BLE001 - validate accepted it: nothing may fail later
        return "accepted", kind, f"{label}: validate accepted it, then training failed: {type(e).__name__}: {e}"
    if got != world["examples"] and not _free_info_change(root, world["info"]):
        diff = next(k for k in set(got) | set(world["examples"]) if got.get(k) != world["examples"].get(k))
        return "accepted", kind, f"{label}: validate accepted it, but the examples of {diff} changed (trained on silently)"
    return "accepted", kind, None


def _area(file: str | None) -> str:
    """Where a refusal's first problem is: info.json, tasks, stats, an episode's metadata row or data file."""
    if not file:
        return "?"
    for prefix, name in (("data/", "episode data file"), ("meta/episodes/", "episode metadata row"),
                         ("meta/info.json", "info.json"), ("meta/tasks", "tasks.parquet"), ("meta/stats", "stats.json")):
        if file.startswith(prefix):
            return name
    return file


def run_fuzz(world: dict[str, Any], tmp_path: Path, seeds: range, capsys) -> tuple[Counter, Counter, list[str]]:
    """(outcome counts per mutation kind, refusal reasons, failures) over the mutations of `seeds`."""
    by_kind, reasons, failures = Counter(), Counter(), []
    for seed in seeds:
        outcome, kind, failure = check_one(world, tmp_path / "mut", seed, capsys)
        by_kind[(kind, outcome.split(":")[0])] += 1
        if outcome.startswith("refused:"):
            reasons[outcome.split(":", 1)[1]] += 1
        if failure:
            failures.append(failure)
    return by_kind, reasons, failures


def test_the_original_dataset_is_accepted_and_trains(world, tmp_path, capsys):
    assert [p for p in validate(world["base"]) if p.level == "error"] == []
    sources = {s for (_, s), v in world["examples"].items() if v}
    assert {"plan", "plan_full", "vqa_color", "vqa_table", "vqa_zone", "success", "skill_success", "goal"} <= sources


def test_fuzz_quick(world, tmp_path, capsys):
    by_kind, _, failures = run_fuzz(world, tmp_path, range(40), capsys)
    assert not failures, "\n".join(failures)
    outcomes = Counter(o for (_, o), n in by_kind.items() for _ in range(n))
    assert outcomes["accepted"] and outcomes["refused"]


@pytest.mark.slow
def test_fuzz_many(world, tmp_path, capsys):
    by_kind, reasons, failures = run_fuzz(world, tmp_path, range(1000, 1320), capsys)
    with capsys.disabled():
        total = sum(by_kind.values())
        print(f"\nfuzz: {total} mutations, {len(failures)} failures")
        for kind in sorted({k for k, _ in by_kind}):
            print(f"  {kind:10s} accepted {by_kind[(kind, 'accepted')]:3d}  refused {by_kind[(kind, 'refused')]:3d}"
                  + (f"  crashed {by_kind[(kind, 'crash')]}" if by_kind[(kind, "crash")] else ""))
        print("  refused, by where the first problem is: " + "; ".join(f"{r} {n}" for r, n in reasons.most_common()))
        for f in failures:
            print("  FAIL", f)
    assert not failures, "\n".join(failures[:20])
