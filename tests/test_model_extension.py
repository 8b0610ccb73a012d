"""Extending the model core takes one class and its registration, in this file only: a new object feature and a
new token type (`<zone_k>`: the target zones as tokens of their own) build, collate, embed and train one step,
and generation never emits the new placeholders.

Each is registered by a module fixture (the registries' decorators, called as functions) and unregistered after,
so the rest of the suite sees the registries as shipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agent.model import PalmE, make_model
from agent.model.config import merge
from agent.model.features import (
    OBJECT_FEATURES,
    FeatureSetup,
    ObjectContext,
    ObjectFeature,
    register_object_feature,
)
from agent.model.parts import VectorEncoder
from agent.model.tokens import (
    TOKEN_TYPES,
    EncoderSetup,
    TokenType,
    checked_row,
    register_token_type,
    stack_rows,
)
from agent.prompts import PromptBuilder
from envs.catalogue import (
    COLOR_NAMES,
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    OBJ_FIELDS,
    ROBOT_DIM,
    ObjectDesc,
    object_row,
    zone_row,
)

TINY = {"llm": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 400},
        "vision": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "image_size": 16, "patch_size": 8},
        "state": {"hidden": 32}}


# ---- a new object feature: one class ----------------------------------------------------------


class Height(ObjectFeature):
    """A learned map of how high the object's centre is (m): tells a cube on a tower from one on the table."""

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.map = nn.Linear(1, setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        return self.map(ctx.rows[:, 2:3])  # (N, D)


# ---- a new token type: one class -------------------------------------------------------------


class Zones(TokenType):
    """`<zone_k>`: target zone k's row (centre, side, colour) through an MLP of its own, 1 token."""

    name = "zone"
    obs_key = "zones"
    placeholders = tuple(f"<zone_{k}>" for k in range(1, MAX_ZONES + 1))

    def scene(self, count: int, config) -> list[str]:
        return ["Zones: " + " ".join(self.placeholders[:count]) + "."] if count else []

    def build(self, setup: EncoderSetup) -> nn.Module:
        return VectorEncoder(OBJ_FIELDS, {"color_id": len(COLOR_NAMES)}, setup.config.state.hidden, setup.width, 1)

    def item(self, example, index: int) -> np.ndarray:
        return checked_row(example.zones, index + 1, self.placeholders[index], "zone")

    def collate(self, model, items, examples) -> dict[str, torch.Tensor]:
        return {"rows": stack_rows([r for _, _, r in items], OBJ_DIM)}

    def encode(self, model, part) -> torch.Tensor | None:
        return model.encoders[self.name](part["rows"]) if part["rows"].numel() else None


@pytest.fixture(scope="module")
def height():
    register_object_feature("height")(Height)
    yield "height"
    del OBJECT_FEATURES["height"]


@pytest.fixture(scope="module")
def zones():
    register_token_type(Zones)
    yield "zone"
    del TOKEN_TYPES["zone"]


def _obs(rng: np.random.Generator) -> dict:
    objects = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    objects[0] = object_row([0.45, 0.2, 0.02], [0, 0, 0, 1], 0.04, ObjectDesc("red"))
    objects[1] = object_row([0.45, 0.2, 0.06], [0, 0, 0, 1], 0.04, ObjectDesc("blue"))
    zone_rows = np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
    zone_rows[:2] = [zone_row("blue", (0.45, 0.2, 0.0), 0.15), zone_row("red", (0.4, -0.2, 0.0), 0.15)]
    return {"rgb": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "objects": objects, "zones": zone_rows,
            "robot": rng.normal(size=ROBOT_DIM).astype(np.float32)}


def _one_step(model: PalmE, examples: list) -> dict[str, torch.Tensor]:
    """One AdamW update on `examples`; the parameters before it."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(model.collate(examples, train=True))
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    return before


def test_a_new_object_feature_is_one_class_and_a_name_in_the_config(height, tmp_path):
    model = make_model("palme-small", **merge(TINY, {"state": {"features": ["words", "height"]}}))
    assert isinstance(model.object_features["height"], Height)
    roles = model.parameter_roles()
    assert {roles[n] for n in roles if n.startswith("object_features.height.")} == {"state"}
    model.set_stage("projector_only")  # trains with the state encoders, like every feature
    assert model.object_features["height"].map.weight.requires_grad
    assert not model.encoders["image"].vision.backbone.embeddings.cls_token.requires_grad
    rng = np.random.default_rng(0)
    obs = _obs(rng)
    ex = model.prompt_builder.for_obs("plan", obs, instruction="unstack the blue cube", answer="pick up the blue cube")
    feature = model.object_features["height"]
    with torch.no_grad():  # summed onto the object tokens: the tokens less those without it are its output
        batch = model.collate([ex], train=False)
        x = model.embed(batch)[0]
        saved = [p.clone() for p in feature.parameters()]
        for p in feature.parameters():
            p.zero_()
        without = model.embed(batch)[0]
        for p, value in zip(feature.parameters(), saved):
            p.copy_(value)
        at = [int((batch["input_ids"][0] == model.placeholder_ids[f"<obj_{j}>"]).nonzero()[0]) for j in (1, 2)]
        torch.testing.assert_close(x[at] - without[at], feature.map(torch.from_numpy(obs["objects"][:2, 2:3])))
    before = _one_step(model, [ex])
    assert not torch.equal(before["object_features.height.map.weight"], model.object_features["height"].map.weight)
    assert torch.equal(before["llm.model.embed_tokens.weight"], model.llm.get_input_embeddings().weight)  # frozen
    model.save_pretrained(tmp_path)
    loaded = PalmE.from_pretrained(tmp_path)
    assert loaded.config.state.features == ["words", "height"]
    with torch.no_grad():
        assert torch.equal(loaded.embed(batch), model.eval().embed(batch))


def test_a_new_token_type_is_one_class_and_a_name_in_the_config(zones, tmp_path):
    model = make_model("palme-small", **merge(TINY, {"prompt": {"tokens": ["image", "object", "zone", "robot"]}}))
    rng = np.random.default_rng(1)
    obs = _obs(rng)
    ex = model.prompt_builder.for_obs("plan", obs, instruction="put the red cube in the red zone",
                                      answer="pick up the red cube")
    assert "Object 2 is <obj_2>. Zones: <zone_1> <zone_2>. Robot: <robot>." in ex.prompt
    assert ex.zones is not None and "Zones" not in PromptBuilder().for_obs("plan", obs, instruction="x").prompt
    batch = model.collate([ex], train=True)
    assert batch["zone.rows"].shape == (2, OBJ_DIM)
    ids = batch["input_ids"][0]
    with torch.no_grad():
        x = model.embed(batch)[0]
        want = model.encoders["zone"](torch.from_numpy(obs["zones"][[1]]))[0]  # <zone_2> is zone row 2
    torch.testing.assert_close(x[ids == model.placeholder_ids["<zone_2>"]], want)
    assert model.parameter_roles()["encoders.zone.mlp.0.weight"] == "state"
    before = _one_step(model, [ex])
    assert not torch.equal(before["encoders.zone.mlp.0.weight"], model.encoders["zone"].mlp[0].weight)
    # generation never emits a placeholder, even one the LM would rank first
    zone_ids = [model.placeholder_ids[p] for p in Zones.placeholders]
    assert set(zone_ids) <= set(model.banned_ids())
    batch = model.collate([ex], train=False)

    def next_logits() -> torch.Tensor:
        return model.llm(inputs_embeds=model.embed(batch), attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"]).logits[0, -1]

    with torch.no_grad():
        top = int(next_logits().argmax())
        assert next_logits()[top] > 0
        emb = model.llm.get_input_embeddings().weight  # tied to the output head; placeholders' input rows are unused
        emb[zone_ids[0]] = 10 * emb[top]  # <zone_1> now scores ten times the best token
        assert int(next_logits().argmax()) == zone_ids[0]  # unbanned, it would be written
    emitted: list[int] = []
    decode = model.tokenizer.decode
    model.tokenizer.decode = lambda ids, **kw: (emitted.extend(ids), decode(ids, **kw))[1]
    model.generate([ex], max_new_tokens=6)
    del model.tokenizer.decode
    assert emitted and not set(emitted) & set(zone_ids)
    model.save_pretrained(tmp_path)
    assert PalmE.from_pretrained(tmp_path).placeholder_ids["<zone_4>"] == model.placeholder_ids["<zone_4>"]
