"""The `instruction_words` object feature (#21): an object token learns where the instruction names the object
(by its colour, shape or size word, matched in the frozen instruction encoder's own space), so a block named by
its shape alone ("the pentagon") is marked in its own token.

Skipped as a whole only when the instruction encoder's package is not installed (it is in the `test` extra).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_text_encoder import PACKAGE  # skips this module too without the package
from test_text_encoder import TINY as ENCODER_TINY

from agent.model import PalmE, make_model
from agent.model.features import ObjectContext
from agent.model.text_encoder import SentenceStates
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row, zone_row

TINY = {**ENCODER_TINY, "prompt": {**ENCODER_TINY["prompt"], "instruction": {"max_tokens": 24}}}
BLOCKS = [ObjectDesc("red", "moon"), ObjectDesc("blue", "cube"), ObjectDesc("green", "star"),
          ObjectDesc("yellow", "pentagon")]  # Language-Table's BLOCK_4


def _model(features: list[str], **prompt) -> PalmE:
    return make_model("palme-small", **{**TINY, "state": {"hidden": 32, "features": features},
                                        "prompt": {**TINY["prompt"], **prompt}})


@pytest.fixture(scope="module")
def model() -> PalmE:
    return _model(["words", "instruction_words"])


def _rows(descs=BLOCKS) -> torch.Tensor:
    return torch.from_numpy(np.stack([object_row([0.4, 0.1 * i - 0.15, 0.02], [0, 0, 0, 1], 0.04, d)
                                      for i, d in enumerate(descs)]))


def _mentions(model: PalmE, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention (4, 3, L), gate (4, 3)) of BLOCKS' colour, kind and size words over the instruction's L states."""
    rows = _rows()
    states = model.encoders["instruction"].text.states(instruction)
    ctx = ObjectContext(rows, torch.zeros(len(rows), dtype=torch.long), {}, model.llm.get_input_embeddings().weight,
                        (states, torch.zeros(len(states), dtype=torch.long)))
    return model.object_features["instruction_words"].mentions(ctx)[:2]


def _obs(instruction: str) -> dict:
    objects = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    objects[:4] = _rows().numpy()
    return {"rgb": np.zeros((16, 16, 3), np.uint8), "objects": objects, "robot": np.zeros(ROBOT_DIM, np.float32),
            "instruction": instruction}


def test_a_block_named_by_its_shape_alone_is_marked_and_no_other(model):
    attn, gate = _mentions(model, "How do you slide the pentagon close to the cube?")
    colour, kind = gate[:, 0], gate[:, 1]
    assert kind[3] > 0.9 and kind[1] > 0.9  # the pentagon and the cube are named
    assert kind[0] < 0.1 and kind[2] < 0.1 and (colour < 0.1).all()  # the moon, the star, no colour word
    pieces = model.encoders["instruction"].text.tokenizer.encode("How do you slide the pentagon close to the cube?")
    assert pieces.tokens[int(attn[1, 1].argmax())] == "cube"  # the cube's shape word attends to "cube"
    assert pieces.tokens[int(attn[3, 1].argmax())].startswith("pen")  # the pentagon's to its first word piece
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, 3))


def test_colour_words_mark_their_blocks(model):
    _, gate = _mentions(model, "push the blue moon next to the yellow star")
    colour, kind = gate[:, 0], gate[:, 1]
    assert colour[1] > 0.8 and colour[3] > 0.8 and colour[0] < 0.2 and colour[2] < 0.2
    assert kind[0] > 0.8 and kind[2] > 0.8 and kind[1] < 0.2 and kind[3] < 0.2


def test_it_starts_as_the_model_without_it_and_learns_from_the_instruction():
    """Its learned parts start at zero (a trained model gains it unchanged), and once they are not zero the object
    tokens depend on the words of their own example's instruction."""
    with_it, without = _model(["words", "instruction_words"]), _model(["words"])
    without.load_state_dict({k: v for k, v in with_it.state_dict().items() if "instruction_words" not in k})
    plans = [with_it.prompt_builder.for_obs("plan", _obs(s), instruction=s, answer="push the yellow pentagon")
             for s in ("slide the pentagon to the cube", "slide the moon to the star")]
    question = with_it.prompt_builder.for_obs("vqa", _obs(plans[0].extra["instruction"].item()),
                                              question="how many blocks?", answer="4")
    batch = with_it.collate([*plans, question], train=True)
    assert batch["object.instr_scene"].unique().tolist() == [0, 1, 2]
    with torch.no_grad():
        torch.testing.assert_close(with_it(batch), without(without.collate([*plans, question], train=True)))
        torch.nn.init.normal_(with_it.object_features["instruction_words"].value.weight)
        x = with_it.embed(batch)
        y = without.embed(without.collate([*plans, question], train=True))
    objects = torch.isin(batch["input_ids"], with_it._placeholder_ids(["object"]))
    assert not torch.allclose(x[0][objects[0]], y[0][objects[0]])
    assert not torch.allclose(x[0][objects[0]], x[1][objects[1]])  # same scene, other words
    torch.testing.assert_close(x[2][objects[2]], x[0][objects[0]])  # same scene, same words: a question too
    feature, rows = with_it.object_features["instruction_words"], _rows()
    states = with_it.encoders["instruction"].text.states("slide the pentagon to the cube")
    other = ObjectContext(rows, torch.zeros(4, dtype=torch.long), {}, with_it.llm.get_input_embeddings().weight,
                          (states, torch.ones(len(states), dtype=torch.long)))  # another example's instruction
    assert not feature(other).any()
    alone_batch = with_it.collate([plans[1]], train=True)  # its instruction is the shorter one, padded above
    with torch.no_grad():
        alone = with_it.embed(alone_batch)[0]
    alone_objects = torch.isin(alone_batch["input_ids"][0], with_it._placeholder_ids(["object"]))
    torch.testing.assert_close(x[1][objects[1]], alone[alone_objects])
    assert feature(ObjectContext(rows, torch.zeros(4, dtype=torch.long), {}, other.embeddings)) is None


def test_word_states_are_computed_on_the_cpu_inside_any_device_context():
    """PalmE.from_pretrained rebuilds a refused checkpoint on the meta device to name what does not fit; the feature's
    query table (word states) must still compute there, so the refusal names the tensor, not a meta-copy error."""
    fresh = SentenceStates(PACKAGE, max_tokens=24, cache_size=4)  # nothing cached yet
    with torch.device("meta"):
        states = fresh.states("pentagon")
    assert states.device.type == "cpu" and torch.isfinite(states).all()


def test_it_saves_its_learned_parts_only_and_needs_instruction_tokens(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    back = PalmE.from_pretrained(tmp_path / "m")
    keys = [k for k in back.state_dict() if "instruction_words" in k]
    assert sorted(k.rsplit(".", 1)[-1] for k in keys) == ["match", "said", "sharpness", "slope", "weight"]
    torch.testing.assert_close(back.object_features["instruction_words"].queries,
                               model.object_features["instruction_words"].queries)  # recomputed from the package
    with pytest.raises(ValueError, match="list 'instruction' in model.prompt.tokens"):
        _model(["words", "instruction_words"], tokens=["image", "object", "robot"])


def _side_ctx(model: PalmE, instruction: str, ys: list[float]) -> ObjectContext:
    """BLOCKS at y = ys, then a red zone row on the left half, under one example's `instruction`."""
    rows = np.stack([*(object_row([0.4, y, 0.02], [0, 0, 0, 1], 0.04, d) for y, d in zip(ys, BLOCKS, strict=False)),
                     zone_row("red", [0.4, -0.15, 0.0], 0.1)])
    text = model.encoders["instruction"].text
    states, ids = text.states(instruction), torch.tensor(text.ids(instruction))
    zeros = torch.zeros(len(states), dtype=torch.long)
    return ObjectContext(torch.from_numpy(rows), torch.zeros(len(rows), dtype=torch.long), {},
                         model.llm.get_input_embeddings().weight, (states, zeros), ids)


def _said_in_context(model: PalmE, sentence: str, word: str) -> torch.Tensor:
    """(D,) what a block on `word`'s half should get: V (mean state of `word`'s pieces in `sentence`) + e."""
    text, feature = model.encoders["instruction"].text, model.object_features["instruction_sides"]
    ids = torch.tensor(text.ids(sentence))
    return feature.value(text.states(sentence)[ids == text.tokenizer.token_to_id(word)].mean(0)) + feature.said


def test_instruction_sides_gives_each_block_its_halfs_word_in_context():
    """`instruction_sides` (T3): a block gets the encoder state of the instruction's word for its own board half
    (y < 0 left), found by word-piece id, so the two halves of "gather the left side, leave the right side" differ,
    and swapping the sides in the sentence swaps what the blocks carry. Zone rows and sentences without a side word
    get nothing."""
    model = _model(["words", "instruction_sides"])
    feature = model.object_features["instruction_sides"]
    ys = [-0.15, -0.12, 0.1, 0.2]  # two blocks on the left half, two on the right
    sentence = "push the blocks on the left side together without bringing over blocks from the right side"
    ctx = _side_ctx(model, sentence, ys)
    assert not feature(ctx).any()  # learnt from zero: a trained model gains it unchanged
    swapped_sentence = sentence.replace("left", "@").replace("right", "left").replace("@", "right")
    with torch.no_grad():
        torch.nn.init.normal_(feature.value.weight)
        torch.nn.init.normal_(feature.said)
        out = feature(ctx)
        swapped = feature(_side_ctx(model, swapped_sentence, ys))
        neither = feature(_side_ctx(model, "push the red moon next to the blue cube", ys))
        left, right = _said_in_context(model, sentence, "left"), _said_in_context(model, sentence, "right")
        torch.testing.assert_close(out[0], left, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(out[1], left, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(out[3], right, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(swapped[0], _said_in_context(model, swapped_sentence, "left"), atol=1e-3, rtol=1e-3)
    assert not torch.allclose(out[0], out[3], atol=1e-2)  # the gathered half and the other half differ
    assert not torch.allclose(out[0], swapped[0], atol=1e-2)  # ... and what a half carries follows the sentence
    assert not out[4].any()  # the zone row on the left half: nothing
    assert not neither.any()  # no side word said: nothing, not even e


def test_instruction_sides_reads_each_examples_own_instruction(model):
    """In a batch, each example's blocks read its own instruction's ids and states: the same tokens as alone."""
    sides = _model(["words", "instruction_sides"])
    said = ("gather the blocks on the left side, leave the right side", "push the moon to the right side please")
    plans = [sides.prompt_builder.for_obs("plan", _obs(s), instruction=s, answer="done") for s in said]
    batch = sides.collate(plans, train=True)
    text = sides.encoders["instruction"].text
    assert batch["object.instr_ids"].tolist() == [*text.ids(said[0]), *text.ids(said[1])]
    assert len(batch["object.instr_ids"]) == len(batch["object.instr_states"])
    with torch.no_grad():
        torch.nn.init.normal_(sides.object_features["instruction_sides"].value.weight)
        torch.nn.init.normal_(sides.object_features["instruction_sides"].said)
        x = sides.embed(batch)
        alone = [(sides.embed(b)[0], b["input_ids"][0]) for b in (sides.collate([e], train=True)
                                                                   for e in plans)]
    objects = torch.isin(batch["input_ids"], sides._placeholder_ids(["object"]))
    assert objects.sum(1).tolist() == [4, 4]
    for b, (one, ids) in enumerate(alone):  # each example as it is alone
        torch.testing.assert_close(x[b][objects[b]], one[torch.isin(ids, sides._placeholder_ids(["object"]))])
    assert not torch.allclose(x[0][objects[0]], x[1][objects[1]])  # same scene, other side words
    with pytest.raises(ValueError, match="list 'instruction' in model.prompt.tokens"):
        _model(["words", "instruction_sides"], tokens=["image", "object", "robot"])


def test_instruction_order_ranks_the_named_cubes_from_either_end():
    """`instruction_order`: the cubes a tower instruction names get their place among the named cubes, counted
    from the start and from the end; a cube the instruction does not name gets (nearly) no weight."""
    model = _model(["words", "instruction_words", "instruction_order"])
    cubes = [ObjectDesc("red"), ObjectDesc("blue"), ObjectDesc("green"), ObjectDesc("yellow")]
    rows = _rows(cubes)
    text = "put the green cube on the red cube on the yellow cube"
    states = model.encoders["instruction"].text.states(text)
    ctx = ObjectContext(rows, torch.zeros(len(rows), dtype=torch.long), {}, model.llm.get_input_embeddings().weight,
                        (states, torch.zeros(len(states), dtype=torch.long)))
    model.object_features["instruction_words"](ctx)
    weight, rank = model.object_features["instruction_order"].ranks(ctx)
    assert weight[[0, 2, 3]].min() > 0.7 and weight[1] < 0.2  # red, green, yellow said; blue not
    torch.testing.assert_close(rank[[2, 0, 3]].round(), torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]]))
    assert model.object_features["instruction_order"](ctx).abs().max() == 0  # learnt from zero


def test_instruction_order_needs_instruction_words_first():
    with pytest.raises(ValueError, match="instruction_words"):
        _model(["words", "instruction_order"])


def test_instruction_corners_gives_the_block_nearest_a_said_corner_that_corners_words_in_context():
    """`instruction_corners` (T1): the block nearest to the corner the instruction names ("upper" / "top" and
    "left", found by word-piece id) gets the encoder states of those words in context; the other blocks, the zone
    row, and a sentence that names a side but no corner get nothing."""
    from envs.tasks.push.geometry import LOCATION_POINTS

    model = _model(["words", "instruction_corners"])
    feature = model.object_features["instruction_corners"]
    corner = LOCATION_POINTS["top left"]
    xy = [corner + [0.03, 0.03], LOCATION_POINTS["center"], LOCATION_POINTS["bottom right"] - [0.02, 0.02],
          LOCATION_POINTS["right"]]
    rows = np.stack([*(object_row([x, y, 0.02], [0, 0, 0, 1], 0.04, d) for (x, y), d in zip(xy, BLOCKS, strict=True)),
                     zone_row("red", [*(corner + 0.01), 0.0], 0.1)])
    text = model.encoders["instruction"].text

    def run(sentence: str) -> torch.Tensor:
        states, ids = text.states(sentence), torch.tensor(text.ids(sentence))
        ctx = ObjectContext(torch.from_numpy(rows), torch.zeros(len(rows), dtype=torch.long), {},
                            model.llm.get_input_embeddings().weight,
                            (states, torch.zeros(len(states), dtype=torch.long)), ids)
        return feature(ctx)

    sentence = "push the block closest to the upper left corner to the other block of its colour"
    assert not run(sentence).any()  # learnt from zero
    with torch.no_grad():
        torch.nn.init.normal_(feature.value.weight)
        torch.nn.init.normal_(feature.said)
        out, side = run(sentence), run("push the red moon to the left side")
        ids = torch.tensor(text.ids(sentence))
        pieces = torch.isin(ids, torch.tensor([text.tokenizer.token_to_id(w) for w in ("upper", "left")]))
        want = feature.value(text.states(sentence)[pieces].mean(0)) + feature.said
    torch.testing.assert_close(out[0], want, atol=1e-3, rtol=1e-3)  # the block nearest the top left corner
    assert out[1:].abs().max() < 1e-3 * out[0].abs().max()  # the others (and the zone row): nothing
    assert not side.any()  # "left" without "top" / "upper": no corner said


def _support_ctx(model: PalmE, sentences: list[str], descs: list[ObjectDesc], heights: dict[int, float] | None = None
                 ) -> ObjectContext:
    """One scene of `descs` per sentence (a batch), cube k at height heights[k] over cube k - 1 when given."""
    rows, states, where = [], [], []
    for b, sentence in enumerate(sentences):
        for k, d in enumerate(descs):
            z = (heights or {}).get(k)
            xy = [0.4, 0.1 * (k - 1) - 0.15] if z is not None else [0.4, 0.1 * k - 0.15]
            rows.append(object_row([*xy, z if z is not None else 0.02], [0, 0, 0, 1], 0.04, d))
        s = model.encoders["instruction"].text.states(sentence)
        states.append(s)
        where.append(torch.full((len(s),), b))
    n = len(descs)
    ctx = ObjectContext(torch.from_numpy(np.stack(rows)), torch.arange(len(sentences)).repeat_interleave(n), {},
                        model.llm.get_input_embeddings().weight, (torch.cat(states), torch.cat(where)))
    ctx.mixes.append(model.object_features["words"].word_mix(ctx))
    return ctx


def test_instruction_support_learns_from_the_sentence_which_cube_goes_on_which():
    """`instruction_support` (stack): trained by its auxiliary loss alone on "put the a cube on the b cube" sentences
    (target: a on b, every other cube on none), its pair scores put a on b, and not b on a, for colour pairs it never
    saw, in two word orders; a cube the sentence does not name is no one's support. It starts at zero (a trained
    model gains it unchanged)."""
    model = _model(["words", "instruction_words", "instruction_support"])
    feature = model.object_features["instruction_support"]
    colours = ["red", "blue", "green", "yellow", "purple", "orange"]
    cubes = [ObjectDesc(c) for c in colours]
    n = len(cubes)

    def batch(pairs: list[tuple[int, int]], form: str) -> ObjectContext:
        ctx = _support_ctx(model, [form.format(a=colours[a], b=colours[b]) for a, b in pairs], cubes)
        with torch.no_grad():  # the mentions it reads (memoised): fixed here, only the pair scores learn
            model.object_features["instruction_words"](ctx)
        target = torch.full((len(pairs) * n,), -1)
        target[[b * n + a for b, (a, _) in enumerate(pairs)]] = torch.tensor([b * n + c for b, (_, c) in enumerate(pairs)])
        ctx.targets = {"support_goal": target}
        return ctx

    test = [(0, 2), (4, 1), (5, 3)]  # neither these nor their reverses are trained on
    train = [(a, b) for a in range(6) for b in range(6) if a != b and (a, b) not in test and (b, a) not in test]
    forms = ["put the {a} cube on the {b} cube", "the {b} cube goes under the {a} cube"]
    assert not feature(batch(train, forms[0])).any()  # learnt from zero
    opt = torch.optim.Adam([feature.query.weight, feature.key.weight, feature.none], lr=0.05)
    for _ in range(150):
        loss = sum(feature.aux_loss(batch(train, form)) for form in forms)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for form in forms:
            m, on, under = feature.pairs(batch(test, form))
            for b, (a, c) in enumerate(test):
                top, bottom = b * n + a, b * n + c
                assert on[top, bottom] > 0.3 and on[top].argmax() == bottom, (form, colours[a], colours[c])
                assert on[bottom, top] < 0.1
                assert under[bottom].argmax() == top  # of the cubes, the one that goes on the bottom one
                others = [b * n + k for k in range(n) if k not in (a, c)]
                assert on[:, others].max() < 0.2 and m[others].max() < 0.3  # unnamed cubes: no one's support
                assert on[top, [b2 * n + c for b2 in range(len(test)) if b2 != b]].max() == 0  # own scene only


def test_instruction_support_says_whether_a_cube_already_rests_where_the_sentence_puts_it():
    """Its learnt "already there" vector e_1 is given to a cube the sentence puts on a cube it already rests on,
    weighted by the pair score."""
    model = _model(["words", "instruction_words", "instruction_support"])
    feature = model.object_features["instruction_support"]
    cubes = [ObjectDesc("red"), ObjectDesc("blue"), ObjectDesc("green")]
    sentence = "put the blue cube on the red cube"
    with torch.no_grad():
        torch.nn.init.normal_(feature.placed)
        built = _support_ctx(model, [sentence], cubes, heights={1: 0.06})  # blue rests on red
        loose = _support_ctx(model, [sentence], cubes)
        for ctx in (built, loose):
            model.object_features["instruction_words"](ctx)
        m, on, _ = feature.pairs(built)
        out_built, out_loose = feature(built), feature(loose)
    torch.testing.assert_close(out_built[1], m[1] * on[1, 0] * feature.placed[0] + out_loose[1], atol=0.05, rtol=0.05)
    assert out_loose[1].norm() < 1e-3 * out_built[1].norm() + 1e-6


def test_training_adds_instruction_supports_loss_when_examples_carry_the_goals_supports():
    """Collated, an example's `support_goal` (object indices) becomes batch rows; the training loss is the answers'
    plus the feature's weighted auxiliary loss, which alone moves its pair scores; without targets (inference, or
    logs without a goal) the loss is the answers' alone."""
    model = _model(["words", "instruction_words", "instruction_support"])
    assert model.prompt_builder.targets == ("support_goal",)
    said = ("put the blue cube on the red moon", "put the green star on the yellow pentagon")
    plans = [model.prompt_builder.for_obs("plan", _obs(s), instruction=s, answer="pick up the blue cube") for s in said]
    for ex, (up, down) in zip(plans, [(1, 0), (2, 3)], strict=True):
        target = np.full(MAX_OBJECTS, -100)
        target[:4] = -1
        target[up] = down
        ex.carry("support_goal", target)
    batch = model.collate(plans, train=True)
    assert batch["object.target_support_goal"].tolist() == [-1, 0, -1, -1, -1, -1, 7, -1]  # rows of the batch
    feature = model.object_features["instruction_support"]
    model.train()
    loss = model(batch)
    loss.backward()
    assert feature.query.weight.grad.abs().sum() > 0
    model.zero_grad()
    bare = model.collate([model.prompt_builder.for_obs("plan", _obs(s), instruction=s, answer="pick up the blue cube")
                          for s in said], train=True)
    assert "object.target_support_goal" not in bare or (bare["object.target_support_goal"] == -100).all()
    plain = model(bare)
    plain.backward()
    assert feature.query.weight.grad is None or feature.query.weight.grad.abs().sum() == 0  # the LM's path is zero
    assert loss.item() > plain.item() + 0.1  # ~ SUPPORT_LOSS_WEIGHT x log(scene size) at the start


def _cube_context(model: PalmE, descs: list[ObjectDesc], text: str) -> tuple[ObjectContext, list[str]]:
    """The context of `descs` as cubes of their own sizes, with `text`'s states and word-piece ids; its pieces."""
    from envs.catalogue import SIZE_EDGES

    rows = torch.from_numpy(np.stack([object_row([0.4, 0.1 * i - 0.15, 0.02], [0, 0, 0, 1], SIZE_EDGES[d.size], d)
                                      for i, d in enumerate(descs)]))
    encoder = model.encoders["instruction"].text
    states = encoder.states(text)
    ctx = ObjectContext(rows, torch.zeros(len(rows), dtype=torch.long), {}, model.llm.get_input_embeddings().weight,
                        (states, torch.zeros(len(states), dtype=torch.long)), torch.tensor(encoder.ids(text)))
    return ctx, encoder.tokenizer.encode(text).tokens


def test_instruction_phrases_tells_two_cubes_of_one_colour_apart_by_the_size_word_before_them():
    """Two orange cubes, small and large: `instruction_words` gives both the same attention (the encoder's states do
    not tell "small" from "big" by cosine); `instruction_phrases` gives each the mention its size word precedes,
    and a cube of the named colour but the other size does not count as said."""
    cubes = [ObjectDesc("orange", size="small"), ObjectDesc("orange", size="large"), ObjectDesc("red", size="large")]
    words, phrases = _model(["words", "instruction_words"]), _model(["words", "instruction_phrases"])
    ctx, pieces = _cube_context(words, cubes, "put the small orange cube on the big orange one")
    attn, _, _ = words.object_features["instruction_words"].mentions(ctx)
    torch.testing.assert_close(attn[0, 0], attn[1, 0])  # colour attention: the same for both
    ctx, _ = _cube_context(phrases, cubes, "put the small orange cube on the big orange one")
    attn, gate, _ = phrases.object_features["instruction_phrases"].mentions(ctx)
    first, second = [i for i, p in enumerate(pieces) if p == "orange"]
    assert int(attn[0, 0].argmax()) == first and attn[0, 0, first] > 0.9  # the small cube: its own mention
    assert int(attn[1, 0].argmax()) == second and attn[1, 0, second] > 0.9  # "little" / "big" synonyms included
    ctx, _ = _cube_context(phrases, cubes, "stack the tiny orange block on the red cube")
    _, gate, _ = phrases.object_features["instruction_phrases"].mentions(ctx)
    assert gate[0, 0] > 0.8 and gate[2, 0] > 0.8 and gate[1, 0] < 0.2  # the large orange cube is not said
    ctx, _ = _cube_context(words, cubes, "stack the tiny orange block on the red cube")
    assert words.object_features["instruction_words"].mentions(ctx)[1][1, 0] > 0.8  # instruction_words: it is


def test_instruction_phrases_takes_the_place_of_instruction_words():
    model = _model(["words", "instruction_phrases", "instruction_order", "instruction_support"])
    assert "instruction_words" not in model.object_features
    with pytest.raises(ValueError, match="takes the place of"):
        _model(["words", "instruction_words", "instruction_phrases"])
