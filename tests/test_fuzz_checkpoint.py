"""Fuzzing PalmE.from_pretrained: every mutated checkpoint either loads and runs, or is refused in one line.

A tiny model (every object feature on, so every part has weights) is saved once; each
mutation works on a fresh copy of that folder: bytes flipped (half of the safetensors flips land in
its header), files truncated, deleted or copied over one another, JSON values replaced by another
type, deleted, added, made huge, negative or NaN, tensors made NaN / inf / huge, reshaped, retyped,
dropped or added. Outcomes:
- refused: a ValueError whose message is one line and names the checkpoint folder;
- accepted: every weight finite, the training loss on a small batch finite, `generate` a string.
Any other exception, or an accepted checkpoint that does not run, fails the test.
"""

from __future__ import annotations

import collections
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from agent.model import PalmE, make_model
from agent.prompts import Example
from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row, zone_row

TINY = {
    "llm": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 400},
    "vision": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "image_size": 16, "patch_size": 8},
    "state": {"hidden": 32, "features": ["words", "size_word", "words_above", "words_below", "zone_words"]},
    "prompt": {"history_window": 2},
}
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
JSON_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json")
OTHER_VALUES = ("a string", "", 3, 0, -1, 2.5, True, False, None, [1, 2], [], {"k": 1}, {})
HUGE = (4_000_000, 2**31, 2**63, 10**30, 1e300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "base"
    model = make_model("palme-small", **TINY)
    model.save_pretrained(folder)
    return folder


def scene_example(rng: np.random.Generator) -> Example:
    """A planning prompt with an image, two stacked cubes, a zone and the robot."""
    objects = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    objects[0] = object_row([0.5, 0.0, 0.02], [0, 0, 0, 1], 0.04, ObjectDesc("red"))
    objects[1] = object_row([0.5, 0.0, 0.06], [0, 0, 0, 1], 0.04, ObjectDesc("blue"))
    zones = np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
    zones[0] = zone_row("green", [0.4, 0.2, 0.0], 0.1)
    return Example(
        "", "pick up the blue cube", image=rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), objects=objects,
        robot=rng.normal(size=ROBOT_DIM).astype(np.float32), zones=zones,
    )


def runs(model: PalmE, rng: np.random.Generator) -> None:
    """An accepted checkpoint must run: finite weights, finite loss, a generated string."""
    for name, tensor in model.state_dict().items():
        assert not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()), f"accepted non-finite {name}"
    ex = scene_example(rng)
    ex.prompt = model.prompt_builder.planning("stack the blue cube on the red cube", [("pick up x", "ok")], 2, 1)
    with torch.no_grad():
        loss = model(model.collate([ex], train=True))
    assert math.isfinite(float(loss)), f"accepted, but the loss is {float(loss)}"
    out = model.generate([ex], max_new_tokens=4)
    assert len(out) == 1 and isinstance(out[0], str)


# ---------------------------------------------------------------------------------------------
# mutations: each changes a copy of the folder and says what it did


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, allow_nan=True))


def flip_bytes(folder: Path, rng: np.random.Generator) -> str:
    name = str(rng.choice(FILES))
    data = bytearray((folder / name).read_bytes())
    n = int(rng.integers(1, 9))
    end = len(data)
    if name == "model.safetensors" and rng.random() < 0.5:  # the header: names, dtypes, shapes, offsets
        end = min(end, 8 + int.from_bytes(data[:8], "little"))
    for pos in rng.integers(0, end, n):
        data[pos] ^= int(rng.integers(1, 256))
    (folder / name).write_bytes(bytes(data))
    return f"flip {n} bytes of {name}"


def truncate(folder: Path, rng: np.random.Generator) -> str:
    name = str(rng.choice(FILES))
    data = (folder / name).read_bytes()
    cut = int(rng.integers(0, len(data)))
    (folder / name).write_bytes(data[:cut])
    return f"truncate {name} to {cut} bytes"


def delete(folder: Path, rng: np.random.Generator) -> str:
    name = str(rng.choice(FILES))
    (folder / name).unlink()
    return f"delete {name}"


def duplicate(folder: Path, rng: np.random.Generator) -> str:
    a, b = (str(x) for x in rng.choice(FILES, 2, replace=False))
    if rng.random() < 0.5:
        shutil.copyfile(folder / a, folder / b)
        return f"copy {a} over {b}"
    shutil.copyfile(folder / a, folder / f"copy_of_{a}")
    return f"copy {a} to copy_of_{a}"


def _containers(data, depth: int) -> list[tuple[object, object]]:
    """(container, key) of every entry down to `depth` levels."""
    out = []
    todo = [(data, 0)]
    while todo:
        node, level = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            out.append((node, key))
            if level + 1 < depth:
                todo.append((value, level + 1))
    return out


def edit_json(folder: Path, rng: np.random.Generator) -> str:
    name = str(rng.choice(JSON_FILES, p=[0.6, 0.2, 0.2]))
    path = folder / name
    data = json.loads(path.read_text())
    entries = _containers(data, depth=int(rng.choice([1, 2, 3, 8])))
    container, key = entries[int(rng.integers(len(entries)))]
    old = container[key]
    op = str(rng.choice(["type", "delete", "add", "huge", "negative", "nan", "zero"]))
    if op == "delete" and isinstance(container, dict):
        del container[key]
    elif op == "add":
        target = container if isinstance(container, dict) else data
        target[f"unknown_{int(rng.integers(100))}"] = OTHER_VALUES[int(rng.integers(len(OTHER_VALUES)))]
    elif op == "huge":
        container[key] = HUGE[int(rng.integers(len(HUGE)))]
    elif op == "negative":
        container[key] = -old if type(old) in (int, float) and old else -1
    elif op == "nan":
        container[key] = float(rng.choice([math.nan, math.inf, -math.inf]))
    elif op == "zero":
        container[key] = 0
    else:
        container[key] = OTHER_VALUES[int(rng.integers(len(OTHER_VALUES)))]
    _write_json(path, data)
    return f"{name}: {op} at {key!r} (was {json.dumps(old)[:30]})"


def edit_tensor(folder: Path, rng: np.random.Generator) -> str:
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    names = sorted(tensors)
    name = names[int(rng.integers(len(names)))]
    t = tensors[name]
    op = str(rng.choice(["nan", "inf", "huge", "reshape", "dtype", "drop", "extra"]))
    if op in ("nan", "inf", "huge"):
        t = t.clone()
        t.view(-1)[int(rng.integers(t.numel()))] = {"nan": math.nan, "inf": -math.inf, "huge": 1e30}[op]
    elif op == "reshape":
        t = t.reshape(-1)[: max(1, t.numel() - 1)].clone()
    elif op == "dtype":
        t = t.to([torch.float16, torch.float64, torch.int64, torch.bfloat16][int(rng.integers(4))])
    if op == "drop":
        del tensors[name]
    elif op == "extra":
        tensors[f"extra.{name}"] = t.clone()
    else:
        tensors[name] = t.contiguous()
    save_file(tensors, str(path), metadata=metadata)
    return f"tensor {name}: {op}"


MUTATIONS = {"flip": flip_bytes, "truncate": truncate, "delete": delete, "duplicate": duplicate,
             "json": edit_json, "tensor": edit_tensor}
WEIGHTS = {"flip": 0.25, "truncate": 0.1, "delete": 0.05, "duplicate": 0.05, "json": 0.4, "tensor": 0.15}


def refusal_kind(message: str) -> str:
    """What a refusal is about, from its message (for the counts)."""
    for pattern, kind in [(r"is missing|does not exist|is a file", "missing file"),
                          (r"not UTF-8|not valid JSON|JSON object at the top", "not JSON"),
                          (r"safetensors file|holds no tensors", "bad safetensors"),
                          (r"does not fit config.json", "header vs config"),
                          (r"holds NaN|holds inf|magnitude", "bad weights"),
                          (r"does not match this code", "versions"),
                          (r"names Python code|tokenizer class", "code"),
                          (r"cannot be built", "unbuildable config"),
                          (r"tokenizer\.json|tokenizer_config\.json", "tokenizer"),
                          (r"config\.json", "config field")]:
        if re.search(pattern, message):
            return kind
    return "other"


def fuzz(base: Path, work: Path, n: int, seed: int) -> dict[str, collections.Counter]:
    """Apply `n` seeded mutations, one per fresh copy of `base`; counts of outcomes, failures listed.

    Runs torch on one thread: tiny models gain nothing from more, and the machine is shared.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fuzz(base, work, n, np.random.default_rng(seed))
    finally:
        torch.set_num_threads(threads)


def _fuzz(base: Path, work: Path, n: int, rng: np.random.Generator) -> dict[str, collections.Counter]:
    kinds = list(MUTATIONS)
    counts: dict[str, collections.Counter] = {"accepted": collections.Counter(), "refused": collections.Counter()}
    failures: list[str] = []
    for i in range(n):
        folder = work / f"m{i}"
        shutil.copytree(base, folder)
        kind = str(rng.choice(kinds, p=[WEIGHTS[k] for k in kinds]))
        what = MUTATIONS[kind](folder, rng)
        try:
            model = PalmE.from_pretrained(folder)
        except ValueError as err:
            message = str(err)
            if "\n" in message or str(folder) not in message:
                failures.append(f"{what}: refusal not one line naming the folder: {message!r}")
            counts["refused"][refusal_kind(message)] += 1
        except Exception as err:  # noqa: BLE001 - any other type is a failure to report
            failures.append(f"{what}: {type(err).__name__}: {err}")
        else:
            try:
                runs(model, rng)
                counts["accepted"][kind] += 1
            except Exception as err:  # noqa: BLE001
                failures.append(f"{what}: accepted but does not run: {type(err).__name__}: {err}")
        shutil.rmtree(folder)
    counts["failures"] = collections.Counter(failures)
    return counts


def test_the_unmutated_checkpoint_loads_and_runs(saved):
    runs(PalmE.from_pretrained(saved), np.random.default_rng(0))


def test_fuzzed_checkpoints_load_and_run_or_are_refused_in_one_line(saved, tmp_path):
    counts = fuzz(saved, tmp_path, n=60, seed=17)
    assert not counts["failures"], "\n".join(counts["failures"])
    assert sum(counts["refused"].values()) > 10


@pytest.mark.slow
def test_fuzz_1000_mutations(saved, tmp_path):
    counts = fuzz(saved, tmp_path, n=1000, seed=2024)
    print({k: dict(v) for k, v in counts.items()})  # the counts, for the record (pytest -s)
    assert not counts["failures"], "\n".join(counts["failures"])
