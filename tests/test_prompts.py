"""PromptBuilder: placeholders appear exactly once per object, flags remove them, plans round-trip."""

import numpy as np
import pytest

from agent.prompts import PromptBuilder, format_feedback, render_whole_plan, split_whole_plan
from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row, zone_row


def _obs(n):
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    rows[:n, -1] = 1
    return {"rgb": np.zeros((8, 8, 3), np.uint8), "objects": rows, "robot": np.zeros(ROBOT_DIM, np.float32)}


def test_planning_prompt_has_one_placeholder_per_object_and_history():
    pb = PromptBuilder()
    ex = pb.for_obs("plan", _obs(3), instruction="stack it", history=[("pick up the red cube", format_feedback(False, "the red cube is under the blue cube."))])
    assert ex.prompt.count("<obj_") == 3 and "<obj_3>" in ex.prompt and "<obj_4>" not in ex.prompt
    assert ex.prompt.count("<img>") == 1 and ex.prompt.count("<robot>") == 1
    assert "Step 1. pick up the red cube. Result: failed: the red cube is under the blue cube." in ex.prompt
    assert ex.prompt.endswith("Step 2.")
    assert ex.image is not None and ex.objects is not None and ex.robot is not None


def test_text_only_prompt_carries_no_observation():
    ex = PromptBuilder(use_image=False, use_state=False).for_obs("plan_full", _obs(3), instruction="stack it")
    assert ex.prompt == "Task: stack it\nPlan:"
    assert ex.image is None and ex.objects is None and ex.robot is None


def test_without_entity_referral_objects_are_bare_tokens():
    prompt = PromptBuilder(use_image=False, entity_referral=False).question("what colour is obj 1?", 2)
    assert "Object 1 is" not in prompt and "Objects: <obj_1> <obj_2>." in prompt


def test_whole_plan_round_trip():
    steps = ["pick up the red cube", "place the red cube on the blue cube", "done"]
    assert split_whole_plan(render_whole_plan(steps)) == steps


def test_zones_appear_only_with_use_zones_and_carry_their_rows():
    obs = {**_obs(3), "zones": np.zeros((MAX_ZONES, OBJ_DIM), np.float32)}
    obs["zones"][:2] = [zone_row("red", (0.4, 0.1, 0.0), 0.15), zone_row("blue", (0.5, -0.2, 0.0), 0.15)]
    ex = PromptBuilder(use_zones=True).for_obs("plan", obs, instruction="sort the cubes by colour")
    assert "Object 3 is <obj_3>. Zones: <zone_1> <zone_2>. Robot: <robot>." in ex.prompt
    assert ex.zones is not None and np.array_equal(ex.zones, obs["zones"])
    plain = PromptBuilder().for_obs("plan", obs, instruction="sort the cubes by colour")
    assert "<zone_" not in plain.prompt and plain.zones is None  # models without zone tokens: prompts unchanged
    no_zones = PromptBuilder(use_zones=True).for_obs("plan", _obs(3), instruction="push it")  # the pushing world
    assert "Zones" not in no_zones.prompt and no_zones.zones is None


def test_history_window_shows_the_last_steps_with_their_episode_numbers():
    history = [(f"pick up the cube {k}", "ok") for k in range(1, 6)]
    full = PromptBuilder().planning("stack it", history, 3)
    short = PromptBuilder(history_window=2).planning("stack it", history, 3)
    assert "Step 1. pick up the cube 1. Result: ok." in full and full.endswith("Step 6.")
    assert "Step 3." not in short and "Step 4. pick up the cube 4. Result: ok.\nStep 5. pick up the cube 5" in short
    assert short.endswith("Step 6.") and short.split("\n")[:2] == full.split("\n")[:2]  # scene and task unchanged
    assert PromptBuilder(history_window=9).planning("stack it", history, 3) == full  # a window wider than the history


def test_name_objects_introduces_each_cube_by_the_name_its_row_gives():
    obs = _obs(0)
    for i, desc in enumerate([ObjectDesc("cyan", "cube", "small"), ObjectDesc("cyan", "cube", "large"), ObjectDesc("green", "cube", "small")]):
        obs["objects"][i] = object_row([0.5, 0.1 * i, 0.02], [0, 0, 0, 1], 0.04 if desc.size == "small" else 0.05, desc)
    ex = PromptBuilder(name_objects=True).for_obs("plan", obs, instruction="stack the green cube on the small cyan cube")
    assert "The small cyan cube is <obj_1>. The large cyan cube is <obj_2>. The green cube is <obj_3>. Robot:" in ex.prompt
    assert "Object 1" not in ex.prompt and ex.objects is not None
    assert "Object 1 is <obj_1>." in PromptBuilder().for_obs("plan", obs, instruction="stack it").prompt  # default unchanged
    assert "cube is" not in PromptBuilder(use_state=False, name_objects=True).for_obs("plan", obs, instruction="x").prompt
    with pytest.raises(ValueError, match=r"need one name per object \(3\), got none"):
        PromptBuilder(name_objects=True).planning("stack it", [], 3)
