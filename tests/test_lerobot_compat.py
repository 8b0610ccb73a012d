"""Issue #22 item 7: palme-collect folders open in LeRobot's own reader, 0.4.x included.

LeRobot 0.4.x (the newest on Python 3.11) has no "language" feature dtype, so the language rows are written as
JSON text in `language_persistent_json` (dtype "string"); folders written before, with LeRobot 0.6's
`language_persistent` (dtype "language"), still validate, load and take appends in their own form.

The slow test builds a throwaway venv with `lerobot-dataset==0.4.4` (pinned, with the CPU torch 2.13.0) and
compares every frame LeRobot reads with ours (benchmarks/lerobot_compat.py); it skips only when pip cannot
reach the package index.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dataset import FEATURES, make_episode

from training.collect import CollectConfig, collect
from training.dataset import DatasetWriter, LogDataset, encode_episode, validate
from training.dataset.schema import LANGUAGE_KEY, LEGACY_LANGUAGE_KEY, data_path, episodes_path

REPO = Path(__file__).resolve().parents[1]
PALME = {"world": "pickplace", "control_hz": 20}
# LeRobot 0.4.4's reader; lerobot-dataset imports torchvision without declaring it: 0.28.0 pairs with torch 2.13.0
LEROBOT_PINS = ("torch==2.13.0", "torchvision==0.28.0", "lerobot-dataset==0.4.4")
UNREACHABLE = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
               "Name or service not known", "Network is unreachable", "Connection refused", "ConnectTimeoutError",
               "ReadTimeoutError", "ProxyError", "Could not fetch URL")
LEGACY = {(LEGACY_LANGUAGE_KEY if k == LANGUAGE_KEY else k): ({**ft, "dtype": "language"} if k == LANGUAGE_KEY else ft)
          for k, ft in FEATURES.items()}  # the features of a folder written before (LeRobot 0.6's language column)


def _write(root: Path, features: dict, seeds: list[int], episode_features: dict | None = None) -> None:
    with DatasetWriter(root, features, fps=5, palme=PALME) as w:
        for s in seeds:
            w.add(encode_episode(make_episode(s), episode_features or features))


def test_new_folders_store_the_language_rows_as_json_text_that_lerobot_04_can_type(tmp_path):
    _write(tmp_path / "new", FEATURES, [0, 1])
    info = json.loads((tmp_path / "new/meta/info.json").read_text())
    assert info["features"][LANGUAGE_KEY] == {"dtype": "string", "shape": [1], "names": None}
    assert LEGACY_LANGUAGE_KEY not in info["features"]  # LeRobot >= 0.6 claims that name for its own row structs
    assert all(ft["dtype"] in ("image", "float32", "int64", "bool", "string") for ft in info["features"].values())
    table = pq.read_table(tmp_path / "new" / data_path(0))
    assert table.schema.field(LANGUAGE_KEY).type == pa.string()
    rows = json.loads(table.column(LANGUAGE_KEY)[0].as_py())
    ds = LogDataset(tmp_path / "new", images=True)
    assert rows == ds.episodes[0].language and validate(tmp_path / "new") == []
    assert [r["style"] for r in rows][:2] == ["plan", "subtask"]
    assert not any(k.startswith(f"stats/{LANGUAGE_KEY}/") for k in pq.read_schema(tmp_path / "new" / episodes_path(0)).names)


def test_folders_written_before_with_the_language_dtype_still_load_validate_and_append_in_their_form(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _write(old, LEGACY, [0, 1])
    _write(new, FEATURES, [0, 1, 2])
    assert validate(old) == []
    _write(old, FEATURES, [2])  # palme-collect now passes the new features: the folder keeps its own form
    info = json.loads((old / "meta/info.json").read_text())
    assert info["features"][LEGACY_LANGUAGE_KEY]["dtype"] == "language" and LANGUAGE_KEY not in info["features"]
    assert pq.read_schema(old / data_path(2)).field(LEGACY_LANGUAGE_KEY).type == pq.read_schema(old / data_path(0)).field(
        LEGACY_LANGUAGE_KEY).type
    assert validate(old) == []
    a, b = LogDataset(old, images=True), LogDataset(new, images=True)
    assert [e.language for e in a.episodes] == [e.language for e in b.episodes]
    assert [e.plans() for e in a.episodes] == [e.plans() for e in b.episodes]
    _write(new, LEGACY, [3], episode_features=LEGACY)  # and the other way round
    assert validate(new) == [] and pq.read_schema(new / data_path(3)).field(LANGUAGE_KEY).type == pa.string()


def _set_language(root: Path, ep: int, text: str) -> None:
    """Replace episode `ep`'s language text on every frame and re-record the checksum (as a faulty writer would)."""
    path = root / data_path(ep)
    table = pq.read_table(path)
    idx = table.schema.get_field_index(LANGUAGE_KEY)
    pq.write_table(table.set_column(idx, table.schema.field(idx), pa.array([text] * table.num_rows, pa.string())), path)
    meta = root / episodes_path(ep)
    rows = pq.read_table(meta).to_pylist()
    rows[0]["data/sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(meta)), meta)


@pytest.mark.parametrize(("text", "needle"), [
    ('{"not json', "language_persistent_json is not valid JSON"),
    ("[" * 5000, "language_persistent_json is not valid JSON (JSON nested too deeply)"),
    ('{"a": 1}', "language_persistent_json is dict, expected a JSON list of rows"),
    ("[1]", "language_persistent_json row 0 is 1, expected an object with the keys"),
    ('[{"role": "assistant", "content": "x", "style": "plan", "timestamp": NaN, "camera": null, "tool_calls": null}]',
     "expected role/content/style strings, a finite timestamp"),
    ('[{"role": "assistant", "content": "x", "style": "plan", "timestamp": 0, "camera": null, "tool_calls": [1]}]',
     "expected role/content/style strings, a finite timestamp"),
    ("[]", "language_persistent_json has no plan row"),
])
def test_bad_language_text_is_refused_with_the_episode_and_file(tmp_path, text, needle):
    root = tmp_path / "ds"
    _write(root, FEATURES, [0, 1])
    _set_language(root, 1, text)
    errors = [p for p in validate(root) if p.level == "error"]
    assert len(errors) == 1 and errors[0].episode == 1 and errors[0].file == data_path(1), [str(p) for p in errors]
    assert needle in errors[0].message and "\n" not in errors[0].message
    ds = LogDataset(root, on_error="skip")
    assert [e.seed for e in ds.episodes] == [0] and ds.skipped[0].episode == 1


def test_language_text_that_differs_between_frames_is_refused(tmp_path):
    root = tmp_path / "ds"
    _write(root, FEATURES, [0])
    path = root / data_path(0)
    table = pq.read_table(path)
    values = table.column(LANGUAGE_KEY).to_pylist()
    values[-1] = json.dumps(json.loads(values[-1])[:-1])
    idx = table.schema.get_field_index(LANGUAGE_KEY)
    pq.write_table(table.set_column(idx, table.schema.field(idx), pa.array(values, pa.string())), path)
    messages = [p.message for p in validate(root) if p.level == "error"]
    assert any("language_persistent_json differs between frames" in m for m in messages), messages


# ---- LeRobot 0.4.4's own reader, in a venv of its own ---------------------------------------------------


def _pip_install(python: Path) -> None:
    """Install LEROBOT_PINS into the venv of `python`; skip when pip cannot reach the index, fail otherwise."""
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--retries", "2", "--timeout", "60",
           *LEROBOT_PINS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode == 0:
        return
    out = proc.stdout + proc.stderr
    if any(m in out for m in UNREACHABLE):
        pytest.skip(f"pip cannot reach the package index to install {' '.join(LEROBOT_PINS)}: "
                    + next(line for line in out.splitlines() if any(m in line for m in UNREACHABLE))[:300])
    pytest.fail(f"pip install {' '.join(LEROBOT_PINS)} failed (exit {proc.returncode}):\n{out[-3000:]}")


@pytest.mark.slow
def test_lerobot_0_4_4_opens_a_palme_collect_folder_and_reads_every_frame_as_we_do(tmp_path):
    t0 = time.monotonic()
    root = tmp_path / "stack"
    collect(CollectConfig(env="pickplace", task="stack", episodes=3, workers=1, fps=2, image_size=[32, 32],
                          progress=False, out=str(root)), log=lambda *_: None)
    assert validate(root) == []
    total = json.loads((root / "meta/info.json").read_text())["total_frames"]
    with tempfile.TemporaryDirectory(prefix="lerobot044-") as tmp:  # ~2 GB: removed at once, not kept by pytest
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        _pip_install(venv / "bin/python")
        env = {**os.environ, "HF_HOME": str(Path(tmp) / "hf"), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks/lerobot_compat.py"), "compare", str(root),
                               "--lerobot-python", str(venv / "bin/python")],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"lerobot-dataset 0.4.4: opened 3 episodes / {total} frames; all {total} frames equal" in proc.stdout, out
    print(f"\n{proc.stdout.strip()} ({time.monotonic() - t0:.0f} s with the venv)")
