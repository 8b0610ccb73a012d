"""Open a palme log folder with LeRobot's own reader and compare its frames with ours.

Needs a Python with `lerobot` installed (not a project dependency; e.g. a throwaway venv that can
also import this repository). LeRobot < 0.6 predates the language columns: with `--strip-language`
the check runs on a copy without `language_persistent`.

    /path/to/lerobot-venv/bin/python benchmarks/lerobot_compat.py data/stack --strip-language
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--strip-language", action="store_true")
    ap.add_argument("--episodes", type=int, default=5, help="episodes to compare frame by frame")
    args = ap.parse_args()
    import lerobot
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from training.dataset import LogDataset

    ours = LogDataset(args.root)
    root = args.root
    if args.strip_language:
        root = Path(tempfile.mkdtemp()) / "copy"
        shutil.copytree(args.root, root, ignore=shutil.ignore_patterns(".writer.lock"))
        info = json.loads((root / "meta/info.json").read_text())
        info["features"].pop("language_persistent")
        (root / "meta/info.json").write_text(json.dumps(info))
        for f in (root / "data").glob("*/*.parquet"):
            pq.write_table(pq.read_table(f).drop(["language_persistent"]), f)
    theirs = LeRobotDataset("local/palme", root=root)
    assert theirs.num_episodes == len(ours) and theirs.num_frames == ours.info["total_frames"]
    compared = 0
    for pos, ep in enumerate(ours.episodes[: args.episodes]):
        start = int(ep.meta["dataset_from_index"])
        for i in range(ep.length):
            item = theirs[start + i]
            img = (item["observation.images.front"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
            assert np.array_equal(img, ours.image(pos, i)), (ep.index, i)
            assert np.allclose(item["observation.environment_state"].numpy(), np.concatenate([ep.env_state[i].reshape(-1), ep.zones[i].reshape(-1)]))
            assert np.allclose(item["observation.state"].numpy(), ep.robot[i])
            assert int(item["episode_index"]) == ep.index and int(item["frame_index"]) == i
            assert item["task"] == ep.instruction
            compared += 1
    version = getattr(lerobot, "__version__", "?")
    print(_language_check(args.root, ours))
    print(f"lerobot {version}: opened {theirs.num_episodes} episodes / {theirs.num_frames} frames; "
          f"{compared} frames equal to ours (image, states, indices, task)")


def _language_check(root: Path, ours) -> str:
    """Load `language_persistent` with the HF features LeRobot >= 0.6 declares for it (rows of role, content,
    style, float32 timestamp, camera, tool_calls as a list of JSON) and compare with our reader."""
    import datasets

    json_feature = datasets.Json() if hasattr(datasets, "Json") else datasets.Value("string")
    row = {"role": datasets.Value("string"), "content": datasets.Value("string"), "style": datasets.Value("string"),
           "timestamp": datasets.Value("float32"), "camera": datasets.Value("string"),
           "tool_calls": datasets.List(json_feature)}
    ep = ours.episodes[0]
    hf = datasets.Dataset.from_parquet(str(root / ep.file), columns=["language_persistent"],
                                       features=datasets.Features({"language_persistent": datasets.List(row)}))
    assert hf[0]["language_persistent"] == ep.language
    return f"language_persistent loads with LeRobot 0.6's feature types (datasets {datasets.__version__})"


if __name__ == "__main__":
    main()
