"""`task_objects`: which objects does the task name? The goal's objects by scene name, asked with the instruction the
way planning prompts read it, so a block an instruction names by one word ("the pentagon") is bound to its token."""

from __future__ import annotations

import numpy as np
import pytest

from agent.model.config import InstructionConfig, PromptConfig
from agent.prompts import PromptBuilder
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row
from training.config import DataConfig
from training.data import load_data
from training.dataset import DatasetWriter, EpisodeData, Frame, PlanStep, encode_episode, make_features

FEATURES = make_features((32, 32), ["dx", "dy", "dz", "grip"])
BLOCKS = [("red", "star"), ("blue", "cube"), ("red", "moon"), ("yellow", "pentagon")]  # two red: "the red block" is no name
NAMES = [f"{c} {s}" for c, s in BLOCKS]


def _episode(seed: int, task: str, instruction: str) -> EpisodeData:
    rng = np.random.default_rng(seed)
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i, (color, shape) in enumerate(BLOCKS):
        rows[i] = object_row((0.3 + 0.05 * i, -0.2 + 0.12 * i, 0.02), (0, 0, 0, 1), 0.04, ObjectDesc(color, shape))
    frames = [Frame(t=3 * i, rgb=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                    robot=rng.normal(size=ROBOT_DIM).astype(np.float32), objects=rows,
                    action=rng.normal(size=4).astype(np.float32), success=i == 1) for i in range(2)]
    steps = [PlanStep("push the yellow pentagon next to the red star", 0, 3, True, "ok"), PlanStep("done", 3, 3, True, "done")]
    return EpisodeData(world="push", task=task, seed=seed, split="train", instruction=instruction, control_hz=10,
                       frames=frames, steps=steps, plans=[(0, [s.text for s in steps])], success=True,
                       objects=[{"color": c, "shape": s, "size": None} for c, s in BLOCKS], names=NAMES)


def _specs(root, task: str, instruction: str, rephrase: int = 0, in_text: bool = True):
    with DatasetWriter(root, FEATURES, fps=5, robot_type="pusher", palme={"world": "push", "control_hz": 10}) as w:
        for seed in range(6):
            w.add(encode_episode(_episode(seed, task, instruction), FEATURES))
    tokens = ["image", "object", "instruction", "robot"]
    builder = PromptBuilder(PromptConfig(tokens=tokens, instruction=InstructionConfig(in_text=in_text)))
    data = load_data(DataConfig(dirs=[str(root)], weights={"task_objects": 1.0}, val_fraction=0.0, rephrase=rephrase),
                     builder, 0, log=lambda *_: None)
    return data.builders[0].specs("task_objects")


def test_a_block_named_by_its_shape_alone_is_answered_with_its_scene_name(tmp_path):
    """The instruction says "the pentagon" (its only name word in this scene); the answer is the goal's blocks in the
    canonical template's order (the block pushed, then the one it goes next to), by scene name."""
    instruction = "slide the pentagon close to the red star"
    specs = _specs(tmp_path / "b2b", "block2block", instruction)
    assert specs
    for s in specs:
        assert "Q: Which objects does the task name? Task: slide the pentagon close to the red star." in s.prompt
        assert s.answer == "the yellow pentagon and the red star"
        assert (s.instruction or instruction) == instruction  # what `<instr>` reads


def test_the_question_reads_the_instruction_through_instr_alone_when_the_prompt_has_no_words(tmp_path):
    """With `prompt.instruction.in_text: false` (the recipe's MiniLM-only route) the question says "the instruction" and
    the words travel as the example's instruction, drawn among the goal's phrasings with `data.rephrase`: every
    phrasing names the same two blocks, so the answer stays."""
    instruction = "slide the pentagon close to the red star"
    specs = _specs(tmp_path / "b2b", "block2block", instruction, rephrase=8, in_text=False)
    assert len({s.instruction for s in specs}) > 1  # other phrasings of the same goal
    for s in specs:
        assert "Task: the instruction." in s.prompt and "pentagon" not in s.prompt
        assert s.answer == "the yellow pentagon and the red star" and s.instruction


def test_a_goal_that_names_no_block_gives_no_question(tmp_path):
    """side_together names a side, not blocks: nothing to ask, so a mixture of only this source has no examples."""
    with pytest.raises(ValueError, match="yield no training examples"):
        _specs(tmp_path / "t3", "side_together",
               "push the blocks on the left side together without bringing over blocks from the right side")
