"""PromptBuilder: placeholders appear exactly once per object, the prompt config removes them, plans round-trip."""

import re

import numpy as np
import pytest

from agent.model.config import PromptConfig
from agent.prompts import Prompt, PromptBuilder, format_feedback, render_whole_plan, split_whole_plan
from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, ROBOT_DIM, zone_row


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
    ex = PromptBuilder(PromptConfig(tokens=[])).for_obs("plan_full", _obs(3), instruction="stack it")
    assert ex.prompt == "Task: stack it\nPlan:"
    assert ex.image is None and ex.objects is None and ex.robot is None


def test_without_entity_referral_objects_are_bare_tokens():
    prompt = PromptBuilder(PromptConfig(["object", "robot"], entity_referral=False)).question("what colour is obj 1?", 2)
    assert "Object 1 is" not in prompt and "Objects: <obj_1> <obj_2>." in prompt


def test_whole_plan_round_trip():
    steps = ["pick up the red cube", "place the red cube on the blue cube", "done"]
    assert split_whole_plan(render_whole_plan(steps)) == steps


def test_the_scene_follows_the_token_types_in_config_order():
    obs = _obs(2)
    state_only = PromptBuilder(PromptConfig(["object", "robot"])).for_obs("vqa", obs, question="what is obj 1?")
    assert state_only.prompt.startswith("Object 1 is <obj_1>. Object 2 is <obj_2>. Robot: <robot>.\nQ: ")
    assert state_only.image is None and state_only.objects is not None
    image_first = PromptBuilder(PromptConfig(["robot", "image"])).scene(2)
    assert image_first == "Robot: <robot>. Given <img>." and image_first.placeholders == ("<robot>", "<img>")
    with pytest.raises(ValueError, match=r"unknown token type 'zone'; known token types: \['image', 'instruction', 'object'"):
        PromptConfig(["image", "zone"])
    with pytest.raises(ValueError, match="n_objects must be in"):
        PromptBuilder().scene(MAX_OBJECTS + 1)
    assert Prompt.template("<zone_1> and <img>").placeholders == ("<img>",)  # only registered placeholders


def test_context_keys_travel_with_object_tokens_only():
    obs = {**_obs(3), "zones": np.zeros((MAX_ZONES, OBJ_DIM), np.float32)}
    obs["zones"][:2] = [zone_row("red", (0.4, 0.1, 0.0), 0.15), zone_row("blue", (0.5, -0.2, 0.0), 0.15)]
    builder = PromptBuilder(context=("zones",))  # a model whose object features read the zone rows
    ex = builder.for_obs("plan", obs, instruction="sort the cubes by colour")
    assert "zone" not in ex.prompt and ex.zones is not None and np.array_equal(ex.zones, obs["zones"])
    assert ex.array("zones") is ex.zones and ex.array("rgb") is ex.image and builder.reads("zones")
    plain = PromptBuilder().for_obs("plan", obs, instruction="sort the cubes by colour")
    assert plain.zones is None and not PromptBuilder().reads("zones")  # models whose features do not read them
    no_objects = PromptBuilder(PromptConfig(["image"]), context=("zones",)).for_obs("plan", obs, instruction="x")
    assert no_objects.zones is None and no_objects.objects is None  # no object tokens: no context either
    no_zones = builder.for_obs("plan", _obs(3), instruction="push it")  # the pushing world has no zone rows
    assert no_zones.zones is None and no_zones.objects is not None


def test_history_window_shows_the_last_steps_with_their_episode_numbers():
    history = [(f"pick up the cube {k}", "ok") for k in range(1, 6)]
    full = PromptBuilder().planning("stack it", history, 3)
    short = PromptBuilder(PromptConfig(history_window=2)).planning("stack it", history, 3)
    assert "Step 1. pick up the cube 1. Result: ok." in full and full.endswith("Step 6.")
    assert "Step 3." not in short and "Step 4. pick up the cube 4. Result: ok.\nStep 5. pick up the cube 5" in short
    assert short.endswith("Step 6.") and short.split("\n")[:2] == full.split("\n")[:2]  # scene and task unchanged
    assert PromptBuilder(PromptConfig(history_window=9)).planning("stack it", history, 3) == full  # wider than the history
    with pytest.raises(ValueError, match="prompt.history_window must be >= 0"):
        PromptConfig(history_window=-1)


def test_step_numbers_off_leaves_the_count_out_of_planning_prompts():
    history = [(f"push the block {k} to the center", "ok") for k in range(1, 6)]
    plain = PromptBuilder(PromptConfig(history_window=2, step_numbers=False)).planning("gather them", history, 5)
    numbered = PromptBuilder(PromptConfig(history_window=2)).planning("gather them", history, 5)
    assert plain.endswith("\nStep.") and "Step. push the block 5 to the center. Result: ok." in plain
    assert not re.search(r"Step \d", plain) and numbered.endswith("Step 6.")
    assert plain.split("\n")[:2] == numbered.split("\n")[:2]  # scene and task unchanged
