"""Open a palme log folder with LeRobot's own reader and compare EVERY frame with ours.

LeRobot is not a project dependency, so the check runs in two Pythons:

    # 1. this project's venv: what our reader (training.dataset.LogDataset) sees, to an .npz (no pickle)
    python benchmarks/lerobot_compat.py dump data/stack /tmp/ours.npz
    # 2. a venv with LeRobot (lerobot or lerobot-dataset, e.g. 0.4.4; only numpy and LeRobot are imported)
    /path/to/lerobot-venv/bin/python benchmarks/lerobot_compat.py check data/stack /tmp/ours.npz
    # or both at once, from this project's venv:
    python benchmarks/lerobot_compat.py compare data/stack --lerobot-python /path/to/lerobot-venv/bin/python

`check` opens the folder with `LeRobotDataset(repo_id, root=folder)` and asserts, for every frame: the image
pixels, observation.state, observation.environment_state, action, timestamp, next.success, next.done,
episode_index, frame_index, index, the task text, and the language rows (`language_persistent_json`, JSON text
that LeRobot 0.4.x reads as a plain string column). It prints one line; any difference is an AssertionError
naming the frame. Exit status 0 when everything is equal.

A CUDA build of torchvision (the one the package index has) cannot load its C ops on a CPU-only torch and then
fails at import ("operator torchvision::nms does not exist"); LeRobot's reader uses only torchvision's Python
transforms, so `check` declares the two op schemas torchvision registers fakes for and imports it again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LANGUAGE_COLUMN = "language_persistent_json"  # training.dataset.schema.LANGUAGE_KEY (no project import here)
VECTORS = ("observation.state", "observation.environment_state", "action")
SCALARS = ("timestamp", "next.success", "next.done", "episode_index", "frame_index", "index")
_KEEP: list = []


def dump(root: Path, out: Path) -> int:
    """Write what our reader gives for every frame of `root` to `out` (.npz of plain arrays); returns the frames.

    Arrays: `image` (N, H, W, 3) uint8; `observation.state` (N, 17), `observation.environment_state` (N, 132),
    `action` (N, A) float32; `timestamp` (N,) float32 s; `next.success`, `next.done` (N,) bool; `episode_index`,
    `frame_index`, `index` (N,) int64; `task` and `language` (N,) str (language: the rows as JSON). Raises
    DatasetError when the folder fails our checks."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from training.dataset import LogDataset

    ours = LogDataset(root, images=True)
    cols: dict[str, list] = {k: [] for k in ("image", *VECTORS, *SCALARS, "task", "language")}
    for pos, ep in enumerate(ours.episodes):
        start = int(ep.meta["dataset_from_index"])
        env = np.concatenate([ep.env_state.reshape(ep.length, -1), ep.zones.reshape(ep.length, -1)], axis=1)
        language = json.dumps(ep.language)
        for i in range(ep.length):
            cols["image"].append(ours.image(pos, i))
            cols["observation.state"].append(ep.robot[i])
            cols["observation.environment_state"].append(env[i])
            cols["action"].append(ep.action[i])
            cols["timestamp"].append(ep.timestamp[i])
            cols["next.success"].append(ep.frame_success[i])
            cols["next.done"].append(i == ep.length - 1)
            cols["episode_index"].append(ep.index)
            cols["frame_index"].append(i)
            cols["index"].append(start + i)
            cols["task"].append(ep.instruction)
            cols["language"].append(language)
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    arrays["episodes"] = np.asarray(len(ours.episodes))
    np.savez(out, **arrays)
    return len(cols["index"])


def _lerobot_dataset_class():
    """(LeRobotDataset, "package version") from lerobot, or lerobot-dataset (module `ledataset`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        import torchvision
    except RuntimeError as err:  # a CUDA torchvision on a CPU torch: see the module docstring
        if "torchvision::nms" not in str(err):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        _KEEP.append(lib)  # the schemas live as long as the Library object
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        dist = "lerobot"
    except ImportError:
        from ledataset.datasets.lerobot_dataset import LeRobotDataset

        dist = "lerobot-dataset"
    try:
        return LeRobotDataset, f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return LeRobotDataset, f"{dist} ?"


def check(root: Path, ours_npz: Path) -> str:
    """Open `root` with LeRobot's LeRobotDataset and assert every frame equals `ours_npz` (from `dump`).
    Returns the one-line summary; AssertionError (naming the frame and the key) at the first difference."""
    LeRobotDataset, dist = _lerobot_dataset_class()
    with np.load(ours_npz, allow_pickle=False) as z:
        ours = {k: z[k] for k in z.files}
    theirs = LeRobotDataset("local/palme", root=root)
    n = len(ours["index"])
    assert theirs.num_episodes == int(ours["episodes"]), (theirs.num_episodes, int(ours["episodes"]))
    assert theirs.num_frames == len(theirs) == n, (theirs.num_frames, len(theirs), n)
    for k in range(n):
        item = theirs[k]
        where = f"frame {k} (episode {int(ours['episode_index'][k])}, frame_index {int(ours['frame_index'][k])})"
        img = (item["observation.images.front"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        assert np.array_equal(img, ours["image"][k]), f"{where}: image pixels differ"
        for key in VECTORS:
            assert np.array_equal(item[key].numpy(), ours[key][k]), f"{where}: {key} differs"
        for key in SCALARS:
            assert item[key].item() == ours[key][k].item(), f"{where}: {key} {item[key].item()} != {ours[key][k]}"
        assert item["task"] == str(ours["task"][k]), f"{where}: task {item['task']!r} != {ours['task'][k]!r}"
        rows = json.loads(item[LANGUAGE_COLUMN])
        assert rows == json.loads(str(ours["language"][k])), f"{where}: {LANGUAGE_COLUMN} rows differ"
    return (f"{dist}: opened {theirs.num_episodes} episodes / {theirs.num_frames} frames; all {n} frames equal to "
            "ours (image pixels, states, action, timestamp, success/done, indices, task, language rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="our reader's frames to an .npz (this project's venv)")
    d.add_argument("root", type=Path)
    d.add_argument("out", type=Path)
    c = sub.add_parser("check", help="open with LeRobot and compare with the .npz (a LeRobot venv)")
    c.add_argument("root", type=Path)
    c.add_argument("ours", type=Path)
    b = sub.add_parser("compare", help="dump here, then check with --lerobot-python")
    b.add_argument("root", type=Path)
    b.add_argument("--lerobot-python", required=True, help="the python of a venv with lerobot installed")
    args = ap.parse_args()
    if args.cmd == "dump":
        print(f"{dump(args.root, args.out)} frames of {args.root} written to {args.out}")
    elif args.cmd == "check":
        print(check(args.root, args.ours))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "ours.npz"
            dump(args.root, npz)
            cmd = [args.lerobot_python, __file__, "check", str(args.root), str(npz)]
            sys.exit(subprocess.run(cmd, check=False).returncode)


if __name__ == "__main__":
    main()
