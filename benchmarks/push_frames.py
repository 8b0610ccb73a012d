"""One camera frame (180x320, the env's default) per block set and per task of the pushing world.

Look at them: colours and shapes must be distinguishable at this resolution.

    python benchmarks/push_frames.py --out outputs/push_frames
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from envs.push import PushEnv
from envs.tasks.base import task_names
from envs.video import caption

BLOCK_SETS = ("BLOCK_4", "BLOCK_8", "N_CHOOSE_K")


def frame(task: str, block_set: str, seed: int, split: str = "train") -> np.ndarray:
    """The first frame of an episode with its instruction written on it."""
    env = PushEnv(task, block_set=block_set, split=split)
    obs, _ = env.reset(seed=seed)
    env.close()
    return caption(obs["rgb"], obs["instruction"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="outputs/push_frames")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for block_set in BLOCK_SETS:
        path = out / f"blockset_{block_set}.png"
        imageio.imwrite(path, frame("block2block", block_set, args.seed))
        print(path)
    l3 = out / "blockset_N_CHOOSE_K_L3.png"
    imageio.imwrite(l3, frame("block2block", "N_CHOOSE_K", args.seed, split="L3"))
    print(l3)
    for task in task_names("push"):
        block_set = "BLOCK_8" if task in ("sort_corners", "corner_to_same_color") else "N_CHOOSE_K"
        path = out / f"task_{task}.png"
        imageio.imwrite(path, frame(task, block_set, args.seed))
        print(path)


if __name__ == "__main__":
    main()
