"""Issue 17, untrusted text: user text is plain text to the model, the env's observation space holds every
instruction it accepts, malformed object references are refused, control characters are shown inert,
generation stays inside the LM's positions, every registered env id builds with its defaults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.loop import Agent, printable
from agent.model import PalmE
from agent.model.config import PromptConfig
from agent.model.decoding import greedy_decode
from agent.model.tokenizer import EOS, PAD, encode_text, reserved_ids, train_tokenizer
from agent.model.tokens import all_placeholders, placeholders_of
from agent.parser import PlanError, PlanParser, SceneContext
from agent.planners import PlanContext, Planner
from agent.prompts import Example, Prompt, PromptBuilder, format_feedback, success_question
from envs import WORLDS, load_world, make_env
from envs.base import INSTRUCTION_CHARSET, check_instruction
from envs.catalogue import ObjectDesc
from envs.tasks.base import SPLITS, make_task, task_names
from envs.vocab import SkillCall
from training import vqa
from training.vqa import Scene, goal_question, skill_question

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDERS = all_placeholders()
ZONE_TEXTS = [f"<zone_{k}>" for k in range(1, 5)]  # special tokens of a removed variant (earlier shipped tokenizers)
SPECIAL_TEXTS = [*PLACEHOLDERS, *ZONE_TEXTS, PAD, EOS, "<obj_", "<zone_9>", "<", ">", "img", "obj_8"]
ISSUE_TEXTS = ["<img>", "<obj_8>", "<robot>", "<zone_1>", "<eos>", "<pad>"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def shipped() -> PalmE:
    torch.set_num_threads(1)
    return PalmE.from_pretrained(REPO / "checkpoints" / "palme-tiny")


@pytest.fixture(scope="module")
def stack_env():
    env = make_env("pickplace", "stack", obs_type="state")
    env.reset(seed=3)
    yield env
    env.close()


def user_texts():
    """Strings made of special-token texts, their pieces and random Unicode."""
    piece = st.one_of(st.sampled_from(SPECIAL_TEXTS), st.text(max_size=6))
    return st.lists(piece, max_size=8).map("".join)


def with_image(obs: dict) -> dict:
    return {**obs, "rgb": np.zeros((64, 64, 3), np.uint8)}


def added_tokens(model: PalmE) -> dict[str, int]:
    """The tokenizer's added (special) tokens, text -> id."""
    return {t: model.tokenizer.convert_tokens_to_ids(t) for t in model.tokenizer.all_special_tokens}


def unused_specials(model: PalmE) -> list[str]:
    """Special tokens of the model's tokenizer that no token type of its prompt writes (a removed variant's)."""
    return sorted(set(added_tokens(model)) - set(placeholders_of(model.config.prompt.tokens)) - {PAD, EOS})


def old_ids(model: PalmE, ex: Example, train: bool = False) -> list[int]:
    """The ids before issue 17: the whole prompt text through the tokenizer, placeholders expanded (the reference;
    `<instr>` becomes one token per word piece of the example's instruction in the frozen encoder)."""
    out: list[int] = []
    for t in model.tokenizer.encode(str(ex.prompt), add_special_tokens=False):
        if "<instr>" in model.placeholder_ids and t == model.placeholder_ids["<instr>"]:
            out += [t] * len(model.encoders["instruction"].text.tokenizer.encode(str(ex.array("instruction"))).ids)
        elif t == model.placeholder_ids["<img>"]:
            out += [t] * model.n_tokens["image"]
        elif t in [model.placeholder_ids[p] for p in placeholders_of(["object"])]:
            out += [t] * model.config.state.tokens_per_object
        else:
            out.append(t)
    if train:
        out += model.tokenizer.encode(" " + ex.answer.strip(), add_special_tokens=False) + [model.eos_id]
    return out


# ---- item 6: user text never becomes model tokens ---------------------------------------------


@SETTINGS
@given(text=user_texts())
def test_no_special_id_comes_from_user_text(shipped, text):
    reserved = reserved_ids(shipped.tokenizer)
    shipped_placeholders = placeholders_of(shipped.config.prompt.tokens)  # image, objects, instruction, robot
    assert {*shipped_placeholders, *unused_specials(shipped), PAD, EOS} <= set(
        shipped.tokenizer.convert_ids_to_tokens(sorted(reserved)))
    assert not reserved & set(encode_text(shipped.tokenizer, text))
    assert not reserved & set(shipped.answer_ids(text)[:-1]) and shipped.answer_ids(text)[-1] == shipped.eos_id
    builder = shipped.prompt_builder
    plain = builder.planning("stack it", [("pick up obj 1", "ok")], 5)
    for prompt in (builder.planning(text, [(text, f"failed: {text}")], 5), builder.whole_plan(text, 5),
                   builder.question(text, 5), builder.question(success_question(text), 5)):
        ids = shipped.prompt_ids(prompt)
        # exactly the placeholders the builder wrote, in its order: those of a prompt with harmless text
        assert [t for t in ids if t in reserved] == [t for t in shipped.prompt_ids(plain) if t in reserved]
        assert shipped.tokenizer.decode(ids) == str(prompt)  # nothing of the user's text is lost


@settings(max_examples=60, deadline=None)
@given(text=user_texts())
def test_a_tokenizer_trained_on_special_texts_still_reads_them_as_text(text):
    tok = _special_text_tokenizer()
    assert not reserved_ids(tok) & set(encode_text(tok, text))


_TOK: list = []


def _special_text_tokenizer():
    """A from-scratch tokenizer whose corpus is full of special-token texts (merges could spell them)."""
    if not _TOK:
        _TOK.append(train_tokenizer([" ".join(SPECIAL_TEXTS) * 20, "<img><obj_8><eos>" * 50], vocab_size=400))
    return _TOK[0]


def test_issue_instructions_embed_no_extra_image_or_object(shipped, stack_env):
    obs = with_image(stack_env.reset(seed=3)[0])
    builder = shipped.prompt_builder
    base = builder.for_obs("plan", obs, instruction="stack the red cube on the blue cube")
    n = int(obs["objects"][:, -1].sum())
    assert n < 8  # <obj_8> names no object of this scene
    for text in ISSUE_TEXTS:
        ex = builder.for_obs("plan", obs, instruction=f"stack the red cube on the blue cube {text}")
        batch = shipped.collate([ex], train=False)  # <obj_8> used to raise ValueError here (no 8th object)
        assert batch["image.index"].tolist() == [0]  # one image, embedded once
        assert int((batch["input_ids"] == shipped.placeholder_ids["<img>"]).sum()) == shipped.n_tokens["image"]
        assert batch["object.rows"].shape[0] == n and batch["robot.rows"].shape[0] == 1
        old = shipped.tokenizer.convert_tokens_to_ids(unused_specials(shipped))
        assert not torch.isin(batch["input_ids"], torch.tensor([shipped.eos_id, *old])).any()
        if shipped.config.prompt.instruction.in_text:
            assert text in shipped.tokenizer.decode(batch["input_ids"][0].tolist())  # nothing of it is lost
        else:  # the words reach the LM only through <instr>: the frozen encoder reads them as plain text
            assert text in str(ex.array("instruction")) and "red cube on the blue" not in str(ex.prompt)
            assert int((batch["input_ids"] == shipped.placeholder_ids["<instr>"]).sum()) == len(
                shipped.encoders["instruction"].text.tokenizer.encode(str(ex.array("instruction"))).ids)
    assert shipped.generate([base], max_new_tokens=8)  # the shipped model still plans


def _real_prompts(model: PalmE) -> list[Example]:
    """Prompts of real scenes (both worlds, zones) for several builders: planning with ok and failed history,
    whole plans, VQA questions, success, skill and goal questions, with answers."""
    builders = [model.prompt_builder, PromptBuilder(context=("zones",)), PromptBuilder(PromptConfig(tokens=[])),
                PromptBuilder(PromptConfig(entity_referral=False))]
    out = []
    for world, task, seed in (("pickplace", "stack", 3), ("pickplace", "sort_by_color", 5), ("push", "block2block", 0)):
        env = make_env(world, task, obs_type="state")
        try:
            obs, _ = env.reset(seed=seed)
            u = env.unwrapped
        finally:
            env.close()
        obs = with_image(obs)
        history = [(f"pick up the {u.names[0]}", format_feedback(True, "")),
                   (f"place the {u.names[0]} on obj 2", format_feedback(False, "the gripper dropped it.")),
                   ("jump", "failed: unknown skill 'jump'"), ("done", "failed: the goal does not hold")]
        scene = Scene(obs["objects"], u.names, zones=obs["zones"], ee=obs["robot"][:3])
        rng = np.random.default_rng(seed)
        questions = (vqa.q_color, vqa.q_relation, vqa.q_feasibility, vqa.q_count, vqa.q_zone, vqa.q_caption,
                     vqa.q_support)  # no camera: no q_table
        qas = [qa for gen in questions if (qa := gen(scene, rng)) is not None]
        qas += [(success_question(u.task_description), "no"), (skill_question(f"pick up the {u.names[0]}"), "yes"),
                (goal_question(u.names[0], u.task_description), "anywhere")]
        for b in builders:
            for k in range(len(history) + 1):
                out.append(b.for_obs("plan", obs, instruction=u.task_description, history=history[:k],
                                     answer=f"pick up the {u.names[-1]}"))
            out.append(b.for_obs("plan_full", obs, instruction=u.task_description,
                                 answer=f"Step 1. pick up the {u.names[0]}. Step 2. done."))
            out += [b.for_obs("vqa", obs, question=q, answer=a) for q, a in qas]
    return out


def test_ids_of_real_prompts_are_unchanged(shipped):
    examples = _real_prompts(shipped)
    assert len(examples) > 100 and all(isinstance(e.prompt, Prompt) for e in examples)
    for ex in examples:
        assert shipped.collate([ex], train=False)["input_ids"][0].tolist() == old_ids(shipped, ex), ex.prompt
        assert shipped.collate([ex], train=True)["input_ids"][0].tolist() == old_ids(shipped, ex, train=True)


def test_special_tokens_no_token_type_uses_keep_their_ids_and_are_never_generated(shipped):
    added = {t["content"]: t["id"] for t in json.loads((REPO / "checkpoints/palme-tiny/tokenizer.json").read_text())[
        "added_tokens"]}
    assert {t: shipped.tokenizer.convert_tokens_to_ids(t) for t in added} == added  # no id moved
    assert set(shipped.placeholder_ids) == set(placeholders_of(shipped.config.prompt.tokens))  # what it reads
    banned = set(shipped.banned_ids())
    assert banned == {added[t] for t in added if t != EOS}  # every placeholder, <pad>, and any unused special


def test_a_plain_str_prompt_is_text_and_templates_are_for_hand_written_sentences(shipped):
    plain = shipped.prompt_ids("Given <img>. Robot: <robot>.")
    assert not reserved_ids(shipped.tokenizer) & set(plain)
    sentence = Prompt.template("Given <img>. Robot: <robot>.")
    assert sentence.placeholders == ("<img>", "<robot>") and sentence == "Given <img>. Robot: <robot>."
    assert (sentence + " x").__class__ is str  # a new string from a Prompt is plain text again
    with pytest.raises(ValueError, match="alternate text and placeholders"):
        Prompt._of(("a", "<obj_9>", "b"))


# ---- item 11: generation inside the LM's positions ---------------------------------------------


def _prompt_of_length(model: PalmE, obs: dict, tokens: int) -> Example:
    """A question prompt of exactly `tokens` ids (placeholders expanded): a long question (a question is prompt text
    whatever the model's instruction route)."""
    builder, obs = model.prompt_builder, {**obs, "instruction": "stack"}  # what `<instr>` reads, if the model has it
    base = len(model.collate([builder.for_obs("vqa", obs, question="stack")], train=False)["input_ids"][0])
    words = " ".join(["red"] * (tokens - base))
    ex = builder.for_obs("vqa", obs, question=f"stack {words}")
    assert model.collate([ex], train=False)["input_ids"].shape[1] == tokens
    return ex


def test_generation_is_capped_at_the_positions_left(shipped, stack_env, caplog):
    obs = with_image(stack_env.reset(seed=3)[0])
    assert shipped.max_positions == 1024
    ex = _prompt_of_length(shipped, obs, 1005)  # the issue: 1005 prompt tokens + 256 new on 1024 positions
    with caplog.at_level(logging.WARNING, logger="agent.model.palme"):
        text = shipped.generate([ex], max_new_tokens=256, min_new_tokens=256)[0]
    assert len(text.split()) <= 1024 - 1005  # each word of the answer took at least one of the 19 new tokens
    assert "capped at 19 new tokens (asked 256)" in caplog.text
    full = _prompt_of_length(shipped, obs, 1024)
    with pytest.raises(ValueError, match="the prompt has 1024 tokens .* 1024 positions: no room for an answer"):
        shipped.generate([full])
    long_answer = " ".join(["pick up the red cube"] * 5)
    need = len(shipped.answer_ids(long_answer))
    assert need > 19
    with pytest.raises(ValueError, match=f"longest allowed answer {need}: together more than the LM's 1024 positions"):
        shipped.generate([ex], allowed=[[long_answer]])


def test_decoding_refuses_positions_past_the_lm(shipped):
    prefix = torch.zeros(1, 1005, shipped.llm.config.hidden_size)
    mask = torch.ones(1, 1005, dtype=torch.long)
    with pytest.raises(ValueError, match="a 1005-token prefix and 256 new tokens exceed the LM's 1024 positions"):
        greedy_decode(shipped.llm, shipped.llm.get_input_embeddings(), prefix, mask, mask.cumsum(1) - 1, 256,
                      shipped.eos_id)


def test_collate_refuses_sequences_longer_than_the_positions_in_training_and_inference(shipped, stack_env):
    obs = with_image(stack_env.reset(seed=3)[0])
    ex = _prompt_of_length(shipped, obs, 1020)
    ex.answer = "Step 1. pick up the blue cube. Step 2. place the blue cube on the small green cube. Step 3. done."
    ex.meta = {"source": "plan_full", "episode": 7, "frame": 0}
    with pytest.raises(ValueError) as err:
        shipped.collate([ex], train=True)
    msg = str(err.value)
    assert "\n" not in msg and "example 0 (vqa, source plan_full, episode 7, frame 0)" in msg
    assert "1020 prompt" in msg and "the LM has 1024 positions" in msg
    assert shipped.collate([ex], train=False)["input_ids"].shape[1] == 1020  # the prompt alone fits
    with pytest.raises(ValueError, match="1030 tokens"):
        shipped.collate([_prompt_of_length(shipped, obs, 1030)], train=False)


# ---- item 7: instructions and the observation space ---------------------------------------------

ISSUE_INSTRUCTIONS = ["stack the red cube & the blue cube", "stack the red cube \u2014 the blue cube",
                      "empile le cube rouge sur le cube bleu, s'il te pla\u00eet", "stack the red cube \U0001f600",
                      "stack the red cube <img> on the blue cube", "stack the re\u0301d cube", "\u201cstack\u201d \u2026"]


@pytest.mark.parametrize("text", ISSUE_INSTRUCTIONS)
def test_instructions_people_type_are_accepted_and_in_the_space(stack_env, text):
    obs, _ = stack_env.reset(seed=3, options={"instruction": text})
    assert obs["instruction"] == text and stack_env.observation_space.contains(obs)


@pytest.mark.parametrize("text, shown", [("stack the red cube\nthe blue cube", "'\\n' (U+000A) at position 18"),
                                         ("stack\tthe red cube", "'\\t' (U+0009) at position 5"),
                                         ("stack \x1b[2J", "'\\x1b' (U+001B)"), ("\u202estack", "'\\u202e' (U+202E)"),
                                         ("x" * 257, "has 257 characters")])
def test_instructions_outside_the_space_are_refused_in_one_line(stack_env, text, shown):
    stack_env.reset(seed=3)
    before = stack_env.unwrapped.task_description
    for call in (lambda: stack_env.reset(seed=4, options={"instruction": text}),
                 lambda: stack_env.unwrapped.set_instruction(text)):
        with pytest.raises(ValueError) as err:
            call()
        assert shown in str(err.value) and "\n" not in str(err.value) and "printable characters" in str(err.value)
        assert stack_env.unwrapped.task_description == before  # nothing changed
    with pytest.raises(ValueError, match="an instruction must be text, got int"):
        stack_env.reset(options={"instruction": 5})


@SETTINGS
@given(text=st.one_of(st.text(max_size=300), st.text(st.sampled_from(INSTRUCTION_CHARSET[:600]), max_size=260)))
def test_every_accepted_instruction_is_in_the_space(stack_env, text):
    u = stack_env.unwrapped
    try:
        u.set_instruction(text)
    except ValueError as err:
        assert "\n" not in str(err) and (len(text) > 256 or "is not allowed" in str(err))
        with pytest.raises(ValueError):
            check_instruction(text)
        return
    assert stack_env.observation_space.contains(u.observe(render=False))


def test_every_sampled_instruction_of_every_task_and_split_is_in_the_space():
    space = gym.spaces.Text(256, min_length=0, charset=INSTRUCTION_CHARSET)
    for world in WORLDS:
        load_world(world)  # registers the world's tasks
        for name in task_names(world):
            task = make_task(world, name)
            if world == "push":
                task.block_set = "N_CHOOSE_K"
            for split in SPLITS:
                for seed in range(5):
                    text = task.sample(np.random.default_rng(seed), split).instruction
                    assert space.contains(text), (world, name, split, text)


# ---- item 9: malformed object references --------------------------------------------------------

FIVE = SceneContext(tuple(ObjectDesc(c) for c in ("red", "blue", "green", "yellow", "cyan")), world="pickplace")


@pytest.mark.parametrize("text", ["pick up obj -1", "pick up obj -3", "pick up obj 0", "pick up obj 01",
                                  "pick up obj 1.5", "pick up obj 999999", "pick up obj \u0663", "pick up obj \uff13",
                                  "pick up obj \u00b3", "pick up obj \u22123", "pick up <obj_-2>", "pick(obj -2)",
                                  "place obj 1 on obj -2", "pick up obj 2nd", "pick up obj 6"])
def test_malformed_or_missing_references_are_unknown_objects(text):
    out = PlanParser(FIVE).parse(text)
    assert isinstance(out, PlanError) and out.kind == "unknown_object", out
    assert "obj 1 to obj 5" in out.reason


@pytest.mark.parametrize("text, obj", [("pick up obj 3", 2), ("pick up obj 3.", 2), ("pick(obj 3)", 2),
                                       ("pick up <obj_3>", 2), ("pick up obj_3", 2), ("Pick up Object 5!", 4),
                                       ("pick up the red object", 0)])
def test_well_formed_references_still_resolve(text, obj):
    assert PlanParser(FIVE).parse(text) == SkillCall("pick", obj=obj)


# ---- item 18: control characters are shown escaped ---------------------------------------------


class Writes(Planner):
    """A planner that writes fixed text (here: text with terminal escape sequences)."""

    name = "writes"

    def __init__(self, text: str) -> None:
        self.text = text
        self.seen: list[PlanContext] = []

    def next_step(self, ctx: PlanContext) -> str:
        self.seen.append(ctx)
        return self.text


def test_control_characters_in_planner_text_reach_history_and_display_escaped(stack_env):
    text = "\x1b[2J\x1b[31mpick up obj 1\x07"
    planner = Writes(text)
    trace = Agent(planner, max_consecutive_failures=2).episode(stack_env, seed=3)
    step = trace.steps[0]
    assert step.error is not None and step.error["kind"] == "parse_error" and "'\\x1b'" in step.reason
    assert step.text == text  # the record keeps what was written (nothing lost)
    assert step.step == "\\x1b[2J\\x1b[31mpick up obj 1\\x07" and step.step.isprintable()
    assert planner.seen[1].history[0][0] == step.step and all(s.feedback.isprintable() for s in trace.steps)
    assert printable("a\x1b[0m\n\t\u202e \u00e9 \u2014 \U0001f600") == "a\\x1b[0m\\n\\t\\u202e \u00e9 \u2014 \U0001f600"
    assert printable("pick up the red cube") == "pick up the red cube"


# ---- item 19: every registered id builds with its defaults --------------------------------------


@pytest.mark.parametrize("env_id", sorted(i for i in gym.registry if i.startswith("palme/")))
def test_registered_ids_build_with_defaults(env_id):
    env = gym.make(env_id)
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and isinstance(info["is_success"], bool)
        env.action_space.seed(0)
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    finally:
        env.close()
