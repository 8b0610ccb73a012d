"""The push world's board features (#21): `board_words` and `near_words` give an object token the words of the
board location it is at and of the blocks it is together with, by the same tests the push tasks judge success with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model import TINY, object_tokens, scene_rows  # the small model of the model tests

from agent.model import PalmE, make_model
from agent.model.config import merge
from envs.catalogue import OBJ_DIM, ObjectDesc
from envs.tasks.push.corner_to_same_color import closest_to
from envs.tasks.push.geometry import (
    CORNERS,
    JOINED_DIST,
    LOCATION_POINTS,
    LOCATION_WORDS,
    NEAREST_WORDS,
    in_location,
    location_weights,
    nearest_weights,
    together_weights,
)


def test_location_weights_agree_with_the_tasks_location_test_on_numpy_and_torch():
    rng = np.random.default_rng(0)
    rows = np.zeros((400, OBJ_DIM))
    rows[:, 0], rows[:, 1] = rng.uniform(0.1, 0.6, 400), rng.uniform(-0.32, 0.32, 400)
    soft = location_weights(rows)
    assert soft.shape == (400, len(LOCATION_POINTS) + 2) and len(LOCATION_WORDS) == soft.shape[1]
    torch.testing.assert_close(torch.from_numpy(soft), location_weights(torch.from_numpy(rows)))
    for k, name in enumerate(LOCATION_POINTS):
        hard = np.array([in_location(xy, name) for xy in rows[:, :2]])
        sure = np.abs(soft[:, k] - 0.5) > 0.45  # off the 1 cm soft edge
        assert sure.sum() > 300 and np.array_equal(soft[sure, k] > 0.5, hard[sure]), name
        assert hard.any(), name
    left = rows[:, 1] < 0
    np.testing.assert_allclose(soft[:, -2] + soft[:, -1], 1.0)
    assert np.array_equal((soft[:, -2] > 0.5)[np.abs(rows[:, 1]) > 0.03], left[np.abs(rows[:, 1]) > 0.03])


def test_together_weights_link_blocks_closer_than_the_joined_distance_within_one_scene():
    rows = torch.zeros(5, OBJ_DIM, dtype=torch.float64)
    rows[:, :2] = torch.tensor([[0.3, 0.0], [0.3, 0.05], [0.3, 0.2], [0.3, 0.0], [0.3, 0.01]], dtype=torch.float64)
    scene = torch.tensor([0, 0, 0, 1, 0])
    is_object = torch.tensor([True, True, True, True, False])  # row 4: a zone row
    w = together_weights(rows, scene, is_object)
    assert w[0, 1] > 0.95 and w[1, 0] > 0.95  # 5 cm apart: together (< 8 cm)
    assert w[0, 2] < 0.01 and w[1, 2] < 0.1  # 20 and 15 cm
    assert w[0, 3] == 0 and w[0, 4] == 0 and w[0, 0] == 0  # another scene, a zone row, itself
    assert JOINED_DIST == 0.08


def test_nearest_weights_pick_the_block_t1_names_and_sum_to_one_over_each_scene():
    rng = np.random.default_rng(3)
    rows = np.zeros((60, OBJ_DIM))
    rows[:, 0], rows[:, 1] = rng.uniform(0.15, 0.6, 60), rng.uniform(-0.3, 0.3, 60)
    scene, is_object = np.repeat(np.arange(10), 6), np.ones(60, bool)
    is_object[5::6] = False  # the last row of every scene is a zone row
    w = nearest_weights(rows, scene, is_object)
    torch.testing.assert_close(torch.from_numpy(w), nearest_weights(*map(torch.from_numpy, (rows, scene, is_object))))
    assert w.shape == (60, len(CORNERS)) == (60, len(NEAREST_WORDS)) and not w[~is_object].any()
    for s in range(10):
        blocks = np.flatnonzero((scene == s) & is_object)
        np.testing.assert_allclose(w[blocks].sum(0), 1.0)
        for k, corner in enumerate(CORNERS):
            dist = np.sort(np.linalg.norm(rows[blocks, :2] - LOCATION_POINTS[corner], axis=1))
            if dist[1] - dist[0] > 0.03:  # three soft edges between the nearest and the next
                assert blocks[closest_to(rows[blocks, :2], LOCATION_POINTS[corner])] == blocks[np.argmax(w[blocks, k])]
                assert w[blocks, k].max() > 0.95


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nearest_weights_stay_finite_with_rows_far_apart_in_other_scenes(dtype):
    """Two scenes of a batch a metre apart (exp((d_i - d_j) / 1 cm) overflows float32 and bfloat16)."""
    rows = torch.zeros(4, OBJ_DIM, dtype=dtype)
    rows[:, :2] = torch.tensor([[0.2, -0.25], [0.3, 0.0], [1.0, 0.6], [-0.5, -0.6]])
    w = nearest_weights(rows, torch.tensor([0, 0, 1, 1]), torch.tensor([True, True, True, False]))
    assert torch.isfinite(w).all()
    assert w[2].tolist() == [1.0] * len(CORNERS) and w[3].tolist() == [0.0] * len(CORNERS)
    torch.testing.assert_close(w[:2].sum(0).float(), torch.ones(len(CORNERS)), atol=1e-2, rtol=0)


@pytest.mark.parametrize("name", ["board_words", "near_words", "corner_words"])
def test_a_new_board_feature_leaves_the_object_tokens_as_they_were(name):
    torch.manual_seed(0)
    plain = make_model("palme-small", **merge(TINY, {"state": {"features": ["words"]}}))
    torch.manual_seed(0)
    model = make_model("palme-small", **merge(TINY, {"state": {"features": ["words", name]}}))
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("blue")], np.random.default_rng(1)))
    with torch.no_grad():
        torch.testing.assert_close(object_tokens(model, rows), object_tokens(plain, rows))


def word(model: PalmE, text: str) -> torch.Tensor:
    """The mean input embedding of the tokens of " <text>" (how features say a word)."""
    emb = model.llm.get_input_embeddings().weight
    return emb[model.tokenizer.encode(" " + text, add_special_tokens=False)].mean(0)


def test_board_and_near_words_pass_the_words_of_the_location_and_of_the_neighbours_and_round_trip(tmp_path):
    model = make_model("palme-small", **merge(TINY, {"state": {"features": ["words", "board_words", "near_words"]}}))
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("blue"), ObjectDesc("green")],
                                       np.random.default_rng(2)))
    rows[0, :2] = torch.from_numpy(LOCATION_POINTS["center"]).float() + torch.tensor([0.0, 0.05])  # right half, 5 soft edges in
    rows[1, :2] = rows[0, :2] + torch.tensor([0.0, 0.03])  # beside red, 5 soft edges inside 8 cm
    rows[2, :2] = torch.from_numpy(LOCATION_POINTS["top left"]).float()
    with torch.no_grad():
        plain = object_tokens(model, rows)
        width = plain.shape[-1]
        model.object_features["board_words"].map.weight.copy_(torch.eye(width))
        board = object_tokens(model, rows) - plain
        model.object_features["board_words"].map.weight.zero_()
        model.object_features["near_words"].map.weight.copy_(torch.eye(width))
        near = object_tokens(model, rows) - plain
        want = {0: word(model, "center") + word(model, "right side"),
                2: word(model, "top left corner") + word(model, "left side")}
        for i, expected in want.items():
            torch.testing.assert_close(board[i, 0], expected, atol=2e-3, rtol=0.02)  # weights >= 0.993
        red, blue = (word(model, c) + word(model, "cube") for c in ("red", "blue"))
        torch.testing.assert_close(near[0, 0], blue, atol=2e-3, rtol=0.02)
        torch.testing.assert_close(near[1, 0], red, atol=2e-3, rtol=0.02)
        assert float(near[2].abs().max()) < 1e-4  # green has no block within 8 cm
        model.object_features["board_words"].map.weight.copy_(torch.eye(width))
        model.save_pretrained(tmp_path)
        loaded = PalmE.from_pretrained(tmp_path)
        assert loaded.config.state.features == ["words", "board_words", "near_words"]
        assert torch.equal(object_tokens(model, rows), object_tokens(loaded, rows))


def test_corner_words_say_which_corner_a_block_is_the_nearest_to():
    model = make_model("palme-small", **merge(TINY, {"state": {"features": ["words", "corner_words"]}}))
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("blue")], np.random.default_rng(4)))[:2]
    rows[0, :2] = torch.tensor([0.2, -0.25])  # near the top left corner (and nearer the bottom left than blue)
    rows[1, :2] = torch.tensor([0.5, 0.25])  # near the bottom right corner (and nearer the top right than red)
    with torch.no_grad():
        plain = object_tokens(model, rows)
        model.object_features["corner_words"].map.weight.copy_(torch.eye(plain.shape[-1]))
        extra = object_tokens(model, rows) - plain
    phrase = {c: word(model, f"closest to the {c} corner") for c in CORNERS}
    torch.testing.assert_close(extra[0, 0], phrase["top left"] + phrase["bottom left"], atol=2e-3, rtol=0.02)
    torch.testing.assert_close(extra[1, 0], phrase["bottom right"] + phrase["top right"], atol=2e-3, rtol=0.02)
