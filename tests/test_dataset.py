"""Demonstration-log storage: LeRobot v3.0 layout, round trip, appends, crash leftovers, corruption reports."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, OBJ_FIELDS, ROBOT_DIM, ROBOT_FIELDS, zone_row
from training.dataset import (
    SCHEMA_VERSION,
    DatasetError,
    DatasetWriter,
    EpisodeData,
    Frame,
    LogDataset,
    NotADatasetError,
    PlanStep,
    encode_episode,
    make_features,
    validate,
)
from training.dataset.schema import data_path, episodes_path
from training.dataset_cli import main as cli

FEATURES = make_features((24, 32), ["dx", "dy", "dz", "grip"])


def _rows(rng: np.random.Generator) -> np.ndarray:
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i in range(3):
        rows[i, :3] = [0.4 + 0.1 * i, rng.uniform(-0.2, 0.2), 0.025]
        rows[i, 6], rows[i, 7], rows[i, 8], rows[i, 10] = 1.0, 0.05, i, 1.0
    return rows


def _zones(rng) -> np.ndarray:
    rows = np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
    rows[:2] = [zone_row(c, (*rng.uniform(0.3, 0.6, 2), 0.0), 0.15) for c in ("red", "blue")]
    return rows


def make_episode(seed: int, n: int = 5, task: str = "stack", success: bool = True) -> EpisodeData:
    """A synthetic episode: random frames, three plan steps, frames at every step start and end."""
    rng = np.random.default_rng(seed)
    frames = [
        Frame(t=3 * i, rgb=rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
              robot=rng.normal(size=ROBOT_DIM).astype(np.float32), objects=_rows(rng),
              zones=_zones(rng) if i % 2 else None,
              action=rng.normal(size=4).astype(np.float32), success=success and i == n - 1)
        for i in range(n)
    ]
    last = 3 * (n - 1)
    steps = [PlanStep("pick up the red cube", 0, 3, True, "ok"),
             PlanStep("place the red cube on the blue cube", 3, last, True, "ok"),
             PlanStep("done", last, last, True, "done")]
    return EpisodeData(
        world="pickplace", task=task, seed=seed, split="train", instruction=f"stack the red cube on the blue cube ({seed % 2})",
        control_hz=20, frames=frames, steps=steps, plans=[(0, [s.text for s in steps])], success=success,
        objects=[{"color": c, "shape": "cube", "size": None} for c in ("red", "green", "blue")],
        names=["red cube", "green cube", "blue cube"],
    )


def write(root, seeds, **kw) -> list[int | None]:
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        return [w.add(encode_episode(make_episode(s, **kw), FEATURES)) for s in seeds]


@pytest.fixture
def ds_root(tmp_path):
    root = tmp_path / "logs"
    write(root, [0, 1, 2])
    return root


def test_round_trip_keeps_frames_states_plan_and_v3_layout(ds_root):
    ds = LogDataset(ds_root)
    assert [e.seed for e in ds.episodes] == [0, 1, 2]
    src = make_episode(1)
    ep = ds.episodes[1]
    assert np.array_equal(ds.image(1, 2), src.frames[2].rgb)
    assert np.allclose(ep.env_state[3], src.frames[3].objects) and np.allclose(ep.robot[0], src.frames[0].robot)
    assert np.allclose(ep.zones[3], src.frames[3].zones) and not ep.zones[2].any()  # a frame without zones: zero rows
    assert [s["text"] for s in ep.steps] == [s.text for s in src.steps]
    styles = [(r["style"], r["timestamp"]) for r in ep.language]
    assert ("plan", 0.0) in styles and ("subtask", np.float32(3 / 20)) in styles
    info = json.loads((ds_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3 and info["total_frames"] == 15
    for key in ("fps", "chunks_size", "data_path", "robot_type", "splits", "features", "total_tasks"):
        assert key in info
    feats = info["features"]
    assert feats["observation.images.front"] == {"dtype": "image", "shape": [24, 32, 3], "names": ["height", "width", "channels"]}
    assert feats["observation.environment_state"]["names"][:OBJ_DIM] == [f"obj1.{f}" for f in OBJ_FIELDS]
    assert feats["observation.state"]["names"] == list(ROBOT_FIELDS)
    table = pq.read_table(ds_root / data_path(2))
    assert table.schema.field("timestamp").type == pa.float32()
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert table.schema.field(key).type == pa.int64()
    assert table.column("index").to_pylist() == list(range(10, 15))
    img = table.column("observation.images.front")[0].as_py()
    assert img["bytes"][:8] == b"\x89PNG\r\n\x1a\n"  # PNG bytes in the parquet, HF Image struct
    tasks = pq.read_table(ds_root / "meta/tasks.parquet")
    assert b"pandas" in tasks.schema.metadata and tasks.num_rows == info["total_tasks"] == 2
    stats = json.loads((ds_root / "meta/stats.json").read_text())
    assert stats["observation.images.front"]["mean"][0] == [[pytest.approx(stats["observation.images.front"]["mean"][0][0][0])]]
    assert stats["index"]["max"] == [14.0] and stats["action"]["count"] == [15]


def test_reappending_skips_existing_episodes_and_continues_indices(ds_root):
    assert write(ds_root, [1, 2, 3, 4]) == [None, None, 3, 4]
    ds = LogDataset(ds_root)
    assert [e.seed for e in ds.episodes] == [0, 1, 2, 3, 4]
    assert ds.info["total_frames"] == 25 and validate(ds_root) == []


def test_interrupted_write_leftovers_are_ignored_then_removed(ds_root):
    # a crash after the data file of episode 3 was written but before info.json counted it
    shutil.copy(ds_root / data_path(2), ds_root / data_path(3))
    problems = validate(ds_root)
    assert [p.level for p in problems] == ["warning"] and problems[0].episode == 3
    assert len(LogDataset(ds_root)) == 3
    assert write(ds_root, [7]) == [3]
    assert validate(ds_root) == [] and LogDataset(ds_root).episodes[3].seed == 7


def _errors(root, checksum: bool = True):
    return [p for p in validate(root) if p.level == "error" and (checksum or "checksum" not in p.message)]


def test_corrupt_bytes_in_a_data_file_are_reported_with_episode_and_file(ds_root):
    path = ds_root / data_path(1)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(raw))
    errors = _errors(ds_root)
    assert errors and {(p.episode, p.file) for p in errors} == {(1, data_path(1))}
    with pytest.raises(DatasetError, match=r"episode 1.*file-001\.parquet"):
        LogDataset(ds_root)
    ds = LogDataset(ds_root, on_error="skip")
    assert [e.seed for e in ds.episodes] == [0, 2] and len(ds.skipped) == 1


def test_truncated_parquet_is_reported(ds_root):
    path = ds_root / data_path(2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    errors = _errors(ds_root)
    assert len(errors) == 1 and errors[0].episode == 2 and "truncated or corrupt" in errors[0].message


def _rewrite_column(path, key, fn):
    table = pq.read_table(path)
    values = table.column(key).to_pylist()
    fn(values)
    idx = table.schema.get_field_index(key)
    pq.write_table(table.set_column(idx, table.schema.field(key), pa.array(values, table.schema.field(key).type)), path)


def _reseal(root, ep):
    path = root / episodes_path(ep)
    row = pq.read_table(path).to_pylist()
    row[0]["data/sha256"] = hashlib.sha256((root / data_path(ep)).read_bytes()).hexdigest()
    pq.write_table(pa.Table.from_pylist(row, schema=pq.read_schema(path)), path)


def test_missing_and_corrupt_frames_are_reported_by_frame(ds_root):
    def damage(values):
        values[1] = {"bytes": None, "path": None}
        values[3] = {"bytes": b"\x89PNG garbage", "path": None}

    _rewrite_column(ds_root / data_path(0), "observation.images.front", damage)
    messages = sorted(str(p) for p in _errors(ds_root, checksum=False))
    assert len(messages) == 2
    assert "episode 0: data/chunk-000/file-000.parquet] frame 1 image: missing" in messages[0]
    assert "frame 3 image: not a readable PNG" in messages[1]
    with pytest.raises(DatasetError, match="episode 0.*checksum"):
        LogDataset(ds_root)
    _reseal(ds_root, 0)  # as if a faulty writer had written the bad frames: found when the image is used
    ds = LogDataset(ds_root)
    with pytest.raises(DatasetError, match="episode 0.*frame 3 image"):
        ds.image(0, 3)


def test_deleted_frame_row_is_reported(ds_root):
    path = ds_root / data_path(2)
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table.slice(0, 2), table.slice(3)]), path)
    messages = [str(p) for p in _errors(ds_root, checksum=False)]
    assert any("episode 2: data/chunk-000/file-002.parquet] 4 frames in the file, episode metadata says 5" in m
               for m in messages), messages


def test_other_world_or_second_writer_cannot_append(ds_root):
    with pytest.raises(ValueError, match="holds the 'pickplace' world"):
        DatasetWriter(ds_root, FEATURES, fps=5, palme={"world": "push"})
    with DatasetWriter(ds_root), pytest.raises(ValueError, match="another writer"):
        DatasetWriter(ds_root)


def test_nan_state_is_reported_with_column_and_frame(ds_root):
    def nan(values):
        values[2][5] = float("nan")

    _rewrite_column(ds_root / data_path(1), "observation.environment_state", nan)
    (err,) = _errors(ds_root, checksum=False)
    assert err.episode == 1 and "observation.environment_state" in err.message and "frame 2, obj1.qz" in err.message


def test_wrong_schema_version_and_not_a_dataset(ds_root, tmp_path, capsys):
    info = json.loads((ds_root / "meta/info.json").read_text())
    info["palme"]["schema_version"] = 99
    (ds_root / "meta/info.json").write_text(json.dumps(info))
    (err,) = _errors(ds_root)
    assert f"schema_version 99, expected {SCHEMA_VERSION}" in err.message
    with pytest.raises(ValueError, match="schema_version 99"):
        LogDataset(ds_root)
    assert cli(["validate", str(ds_root)]) == 2
    with pytest.raises(NotADatasetError):
        validate(tmp_path / "nothing")
    capsys.readouterr()
    assert cli(["validate", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert out.err.strip().count("\n") == 0 and "not a dataset" in out.err


def test_images_are_decoded_once(ds_root):
    ds = LogDataset(ds_root)
    for _ in range(3):
        ds.image(0, 1), ds.image(2, 4)
    assert ds.decoded == 2


def test_cli_info_and_validate(ds_root, capsys):
    assert cli(["info", str(ds_root)]) == 0
    out = capsys.readouterr().out
    assert "episodes     3" in out and "frames       15" in out and "success      3/3" in out
    assert cli(["validate", str(ds_root)]) == 0
    assert "OK: 3 episodes, 15 frames" in capsys.readouterr().out


def test_mixture_is_seeded_weighted_and_checks_its_config(ds_root):
    from training.batches import MixtureStream
    from training.examples import ExampleBuilder, mixture_weights

    def stream(seed, preset="full", weights=None):
        w = mixture_weights(preset, weights)
        specs = ExampleBuilder(LogDataset(ds_root)).all_sources(w)
        draws = MixtureStream({k: len(v) for k, v in specs.items()}, w, seed).next(300)
        return [(specs[s][i].source, specs[s][i].prompt, specs[s][i].answer) for s, i in draws]

    a, b, c = stream(3), stream(3), stream(4)
    assert a == b and a != c
    counts = {s: sum(x[0] == s for x in a) for s in {x[0] for x in a}}
    assert len(counts) >= 8 and counts["plan"] > counts["vqa_count"]  # full mixture: planning weighted most
    only = stream(0, preset="planning_only")
    assert {x[0] for x in only} == {"plan", "plan_full"}
    custom = stream(0, weights={"vqa_color": 1.0})
    assert {x[0] for x in custom} == {"vqa_color"}
    assert all(ans in ("red", "green", "blue") for _, _, ans in custom)
    with pytest.raises(ValueError, match="unknown mixture sources"):
        mixture_weights(weights={"webqa": 1.0})
