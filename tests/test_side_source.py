"""`vqa_side`: which blocks are on a side of the push board, by name, nearest the side's edge first; on side_together
episodes also the task's own side, asked with the instruction, so the instruction's side is bound to the blocks."""

from __future__ import annotations

import numpy as np
import pytest

from agent.prompts import PromptBuilder
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row
from training.config import DataConfig
from training.data import load_data
from training.dataset import DatasetWriter, EpisodeData, Frame, PlanStep, encode_episode, make_features

FEATURES = make_features((32, 32), ["dx", "dy", "dz", "grip"])
BLOCKS = [("red", "star", -0.05), ("blue", "cube", -0.2), ("green", "moon", 0.1), ("yellow", "pentagon", 0.15)]
NAMES = [f"{c} {s}" for c, s, _ in BLOCKS]
INSTRUCTION = "push the blocks on the left side together without bringing over blocks from the right side"


def _rows() -> np.ndarray:
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i, (color, shape, y) in enumerate(BLOCKS):
        rows[i] = object_row((0.3 + 0.05 * i, y, 0.02), (0, 0, 0, 1), 0.04, ObjectDesc(color, shape))
    return rows


def _episode(seed: int) -> EpisodeData:
    rng = np.random.default_rng(seed)
    frames = [Frame(t=3 * i, rgb=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                    robot=rng.normal(size=ROBOT_DIM).astype(np.float32), objects=_rows(),
                    action=rng.normal(size=4).astype(np.float32), success=i == 1) for i in range(2)]
    steps = [PlanStep("push the red star next to the blue cube", 0, 3, True, "ok"), PlanStep("done", 3, 3, True, "done")]
    return EpisodeData(world="push", task="side_together", seed=seed, split="train", instruction=INSTRUCTION,
                       control_hz=10, frames=frames, steps=steps, plans=[(0, [s.text for s in steps])], success=True,
                       objects=[{"color": c, "shape": s, "size": None} for c, s, _ in BLOCKS], names=NAMES)


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("side") / "push"
    with DatasetWriter(root, FEATURES, fps=5, robot_type="pusher", palme={"world": "push", "control_hz": 10}) as w:
        for seed in range(12):
            w.add(encode_episode(_episode(seed), FEATURES))
    data = load_data(DataConfig(dirs=[str(root)], weights={"vqa_side": 1.0}, val_fraction=0.0), PromptBuilder(), 0,
                     log=lambda *_: None)
    return data.builders[0].specs("vqa_side")


def test_a_side_is_answered_with_its_blocks_by_name_nearest_the_edge_first(specs):
    asked = {s.prompt.split("Which blocks are on the ")[1].split(" side?")[0]: s.answer
             for s in specs if "Which blocks are on the" in s.prompt}
    assert asked == {"left": "the blue cube and the red star", "right": "the yellow pentagon and the green moon"}


def test_side_together_asks_for_the_tasks_side_with_its_instruction(specs):
    task = [s for s in specs if "Which blocks does the task gather?" in s.prompt]
    assert task and len(task) < len(specs)  # about half the moments of a side_together episode
    for s in task:
        assert s.answer == "the blue cube and the red star"  # the instruction's side, not a drawn one
        assert INSTRUCTION in s.prompt and (s.instruction or INSTRUCTION) == INSTRUCTION


def test_pick_and_place_logs_get_no_side_questions(tmp_path):
    from test_sources import _episode as stack_episode

    root = tmp_path / "stack"
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        w.add(encode_episode(stack_episode(0), FEATURES))
    with pytest.raises(ValueError, match="yield no training examples"):
        load_data(DataConfig(dirs=[str(root)], weights={"vqa_side": 1.0}, val_fraction=0.0), PromptBuilder(), 0,
                  log=lambda *_: None)
