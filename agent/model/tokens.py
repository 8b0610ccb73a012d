"""Token types: the kinds of observation tokens a multimodal sentence holds, declared once each, in one registry.

A token type is one class: its placeholder texts (`<img>`; `<obj_1>`..`<obj_8>`), the observation key
it reads (`rgb`, `objects`, `robot`), the sentence the PromptBuilder writes for it, how an Example
carries its array, its encoder (a module built from the model config and the LM width), how a batch
of its arrays is collated into tensors, how the encoder turns them into LM tokens, and whether
generation may emit its placeholders (never, for observations). Everything that needs to know the
placeholders iterates over the registry: `Prompt` (which spans are placeholders), the PromptBuilder,
the tokenizer's special tokens (`add_placeholders`), `PalmE.collate` / `PalmE.embed` and the
generation ban list. A model's config lists the token types it reads (`prompt.tokens`), in the
order its scene sentence names them; each gets an encoder in `PalmE.encoders[name]`.

Adding one (see tests/test_model_extension.py): subclass `TokenType`, fill in the class attributes
and the methods, decorate it with `@register_token_type`, and list its name in `prompt.tokens`.

This module imports no torch at import time (the PromptBuilder reads the registry without a model);
the methods that build, collate and encode import what they need.

Shapes: `collate` gets `items`, one `(example index b, placeholder index i, array)` per placeholder
occurrence in text order over the batch, and returns a dict of tensors (`PalmE.collate` stores them as
`"<name>.<key>"`); `encode` gets that dict back (keys without the prefix) and returns (N, n, D): n =
`n_tokens(encoder)` LM tokens for each of the N occurrences, in the same order, or None when N is 0. A token
type whose count varies per item (`<instr>`: one LM token per word piece of the instruction) overrides `count`
and returns (M, D) from `encode`: each item's `count` tokens one after another, M their sum.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM

if TYPE_CHECKING:
    import torch
    from torch import nn

    from agent.model.config import PalmEConfig, PromptConfig
    from agent.model.palme import PalmE

IMG_TOKEN = "<img>"
ROBOT_TOKEN = "<robot>"


def obj_token(j: int) -> str:
    """Placeholder of object j (1-based): row j-1 of the observation's object rows."""
    return f"<obj_{j}>"


Item = tuple[int, int, Any]  # (example index in the batch, 0-based placeholder index, the checked array)


@dataclass(frozen=True)
class EncoderSetup:
    """What an encoder is built from: the model config, the LM's embedding width D, a checkpoint's config.json."""

    config: PalmEConfig
    width: int
    saved: Mapping[str, Any] | None = None  # None for a new model


class TokenType:
    """One kind of observation token (subclass it and register it with `register_token_type`)."""

    name: ClassVar[str]  # registry key, listed in PromptConfig.tokens
    obs_key: ClassVar[str]  # the observation key it reads (what an Example carries: `Example.array(obs_key)`)
    placeholders: ClassVar[tuple[str, ...]]  # its placeholder texts; the i-th stands for item i of the array
    may_generate: ClassVar[bool] = False  # whether generation may emit its placeholders

    def scene(self, count: int, config: PromptConfig) -> list[str]:
        """Sentences (hand-written template text, see `Prompt.template`) naming `count` items of a scene."""
        raise NotImplementedError

    def carry(self, value: Any) -> np.ndarray:
        """The observation's value as an Example carries it (default: a float32 array)."""
        return np.asarray(value, dtype=np.float32)

    def build(self, setup: EncoderSetup) -> nn.Module:
        """The encoder module (every parameter under a module that declares a role: `parts.with_role`)."""
        raise NotImplementedError

    def n_tokens(self, encoder: nn.Module) -> int:
        """LM tokens per placeholder (default: the encoder's `n_tokens`; the most, for a type whose count varies)."""
        return int(encoder.n_tokens)

    def count(self, model: PalmE, item: Any) -> int:
        """LM tokens the placeholder standing for `item` (what `item` returned) becomes: by default
        `model.n_tokens[name]` for every item; a type whose count varies overrides it (see the module docstring)."""
        return model.n_tokens[self.name]

    def item(self, example: Any, index: int) -> Any:
        """The array placeholder `index` (0-based) of `example` stands for, checked; ValueError naming what is wrong."""
        raise NotImplementedError

    def collate(self, model: PalmE, items: Sequence[Item], examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The tensors of a batch's items (see the module docstring)."""
        raise NotImplementedError

    def encode(self, model: PalmE, part: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """(N, n, D) LM tokens of the collated items, in their order; None when there are none."""
        raise NotImplementedError

    def fit(self, encoder: nn.Module, examples: Sequence[Any]) -> None:
        """Fit the encoder's normalisation to data (default: nothing to fit)."""


TOKEN_TYPES: dict[str, TokenType] = {}


def register_token_type(cls: type[TokenType]) -> type[TokenType]:
    """Class decorator: register a token type under `cls.name`; ValueError if the name or a placeholder is taken."""
    if cls.name in TOKEN_TYPES:
        raise ValueError(f"token type {cls.name!r} is already registered")
    taken = set(cls.placeholders) & set(all_placeholders())
    if taken or not cls.placeholders:
        raise ValueError(f"token type {cls.name!r} needs placeholders of its own, got {list(cls.placeholders)}")
    TOKEN_TYPES[cls.name] = cls()
    return cls


def token_type(name: str) -> TokenType:
    """The registered token type `name`; ValueError listing the known ones."""
    if name not in TOKEN_TYPES:
        raise ValueError(f"unknown token type {name!r}; known token types: {sorted(TOKEN_TYPES)}")
    return TOKEN_TYPES[name]


def all_placeholders() -> tuple[str, ...]:
    """Every registered placeholder text (what `Prompt` treats as a placeholder)."""
    return _placeholders(tuple(TOKEN_TYPES.values()))  # every Prompt piece asks: remembered per registry content


@functools.lru_cache(maxsize=8)
def _placeholders(types: tuple[TokenType, ...]) -> tuple[str, ...]:
    return tuple(p for t in types for p in t.placeholders)


def placeholders_of(names: Sequence[str]) -> list[str]:
    """The placeholder texts of the token types `names`, in that order (a model's special tokens)."""
    return [p for n in names for p in token_type(n).placeholders]


# ---------------------------------------------------------------------------------------------
# the token types of PaLM-E: image, objects, robot


def _present(rows: Any, what: str) -> np.ndarray:
    """An (n, OBJ_DIM) row array, checked: float32."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"{what} rows must have shape (n, {OBJ_DIM}), got {rows.shape}")
    return rows


def checked_row(rows: Any, j: int, token: str, what: str) -> np.ndarray:
    """Row j (1-based) of a row array, checked: the placeholder `token` must name a present, finite row."""
    if rows is None:
        raise ValueError(f"the prompt has {token} but the example has no {what} rows")
    rows = _present(rows, what)
    present = int((rows[:, -1] > 0.5).sum())
    if j > rows.shape[0] or rows[j - 1, -1] <= 0.5:
        raise ValueError(f"the prompt has {token} but the example has {present} present {what} rows")
    if not np.isfinite(rows[j - 1]).all():
        raise ValueError(f"{what} row {j} holds NaN/inf: {rows[j - 1]}")
    return rows[j - 1]


def present_rows(rows: Any, what: str) -> list[np.ndarray]:
    """The present rows (last column set) of a row array, checked finite; none for None."""
    if rows is None:
        return []
    present = [r for r in _present(rows, what) if r[-1] > 0.5]
    for k, r in enumerate(present, start=1):
        if not np.isfinite(r).all():
            raise ValueError(f"{what} row {k} holds NaN/inf: {r}")
    return present


def stack_rows(rows: Sequence[np.ndarray], dim: int) -> torch.Tensor:
    """(N, dim) float tensor of rows (an empty (0, dim) one for none)."""
    import torch

    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, dim)


def _long(values: Sequence[int]) -> torch.Tensor:
    """(N,) int64 tensor."""
    import torch

    return torch.tensor(list(values), dtype=torch.long)


IGNORE_TARGET = -100  # an object row without a training target (torch's cross-entropy ignore_index)
NO_TARGET = -1  # a target that is no object (a cube the goal puts on no other)


def object_targets(items: Sequence[Item], examples: Sequence[Any], key: str) -> list[int]:
    """For each object row (`items`: example, 0-based object index, row), the batch row of the object its example's
    target array `key` ((MAX_OBJECTS,) integers) names for it. NO_TARGET stays; IGNORE_TARGET for a row whose
    example has no such array, an IGNORE_TARGET entry, or an object its prompt does not show. ValueError (one line)
    for an array of another shape or type."""
    where = {(b, j): n for n, (b, j, _) in enumerate(items)}
    out = []
    for b, j, _ in items:
        arr = examples[b].array(key)
        if arr is None:
            out.append(IGNORE_TARGET)
            continue
        arr = np.asarray(arr)
        if arr.shape != (MAX_OBJECTS,) or arr.dtype.kind not in "iu":
            raise ValueError(f"target {key!r} must be ({MAX_OBJECTS},) integers, got {arr.dtype} {arr.shape}")
        t = int(arr[j])
        out.append(NO_TARGET if t == NO_TARGET else where.get((b, t), IGNORE_TARGET))
    return out


@register_token_type
class Image(TokenType):
    """`<img>`: the camera frame, through the vision backbone and the projector (n tokens: patches, + CLS)."""

    name = "image"
    obs_key = "rgb"
    placeholders = (IMG_TOKEN,)

    def scene(self, count: int, config: PromptConfig) -> list[str]:
        return [f"Given {IMG_TOKEN}."]

    def carry(self, value: Any) -> np.ndarray:
        return np.asarray(value)  # (H, W, 3) uint8 as rendered; the encoder resizes and normalises

    def build(self, setup: EncoderSetup) -> nn.Module:
        from agent.model.parts import ImageEncoder, ImageTokens, make_projector, make_vision

        v = setup.config.vision
        saved = setup.saved.get("vision_config") if setup.saved else None
        vision = ImageEncoder(make_vision(v, saved), v.image_size, v.image_mean, v.image_std)
        return ImageTokens(vision, make_projector(v.projector, vision.width, setup.width))

    def n_tokens(self, encoder: nn.Module) -> int:
        import torch

        with torch.no_grad():  # counted rather than derived: CLS / register tokens differ between backbones
            size = encoder.vision.image_size
            return int(encoder.vision(torch.zeros(1, 3, size, size)).shape[1])

    def item(self, example: Any, index: int) -> Any:
        if example.image is None:
            raise ValueError(f"the prompt has {IMG_TOKEN} but the example has no image")
        return example.image

    def collate(self, model: PalmE, items: Sequence[Item], examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        shown = list(dict.fromkeys(b for b, _, _ in items))  # examples with an image, each preprocessed once
        return {
            "pixel_values": model.encoders[self.name].vision.preprocess([examples[b].image for b in shown]),
            "index": _long(shown.index(b) for b, _, _ in items),  # the image each <img> shows
        }

    def encode(self, model: PalmE, part: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        if not part["index"].numel():
            return None
        return model.encoders[self.name](part["pixel_values"])[part["index"]]  # (N, n_img, D)


@register_token_type
class Objects(TokenType):
    """`<obj_j>`: object row j-1 through the state MLP (k tokens), plus the model's object features."""

    name = "object"
    obs_key = "objects"
    placeholders = tuple(obj_token(j) for j in range(1, MAX_OBJECTS + 1))

    def scene(self, count: int, config: PromptConfig) -> list[str]:
        if not 0 <= count <= MAX_OBJECTS:
            raise ValueError(f"n_objects must be in [0, {MAX_OBJECTS}], got {count}")
        if config.entity_referral:
            return [f"Object {j} is {obj_token(j)}." for j in range(1, count + 1)]
        return ["Objects: " + " ".join(obj_token(j) for j in range(1, count + 1)) + "."] if count else []

    def build(self, setup: EncoderSetup) -> nn.Module:
        from agent.model.parts import object_encoder

        s = setup.config.state
        return object_encoder(s.hidden, setup.width, s.tokens_per_object)

    def item(self, example: Any, index: int) -> Any:
        return checked_row(example.objects, index + 1, obj_token(index + 1), "object")

    def collate(self, model: PalmE, items: Sequence[Item], examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        out = {"rows": stack_rows([r for _, _, r in items], OBJ_DIM),  # (No, OBJ_DIM)
               "scene": _long(b for b, _, _ in items)}  # (No,): the example of each row
        for key in model.feature_context:  # every present row of each example, named in the text or not
            rows = [(b, r) for b, ex in enumerate(examples) for r in present_rows(ex.array(key), key)]
            out[key] = stack_rows([r for _, r in rows], OBJ_DIM)  # (Nk, OBJ_DIM)
            out[f"{key}_scene"] = _long(b for b, _ in rows)  # (Nk,)
        for key in model.feature_targets:  # training targets: (No,) the batch row of each row's target object
            out[f"target_{key}"] = _long(object_targets(items, examples, key))
        if any(f.reads_instruction for f in model.object_features.values()):  # each example's instruction states
            import torch

            text = model.encoders["instruction"].text
            given = [(b, str(s)) for b, ex in enumerate(examples) if (s := ex.array("instruction")) is not None]
            said = list(zip((b for b, _ in given), text.states_of([s for _, s in given]), strict=True))  # one batch
            out["instr_states"] = torch.cat([s for _, s in said]) if said else torch.zeros(0, text.width)  # (M, W)
            out["instr_scene"] = _long(b for b, s in said for _ in range(len(s)))  # (M,)
            out["instr_ids"] = _long(i for b, ex in enumerate(examples)  # (M,): the word-piece id of each state
                                     if (s := ex.array("instruction")) is not None for i in text.ids(str(s)))
        return out

    def encode(self, model: PalmE, part: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        from agent.model.features import ObjectContext, add_features

        rows = part["rows"]
        if not rows.numel():
            return None
        context = {key: (part[key], part[f"{key}_scene"]) for key in model.feature_context}
        said = (part["instr_states"], part["instr_scene"]) if "instr_states" in part else None
        targets = {key: part[f"target_{key}"] for key in model.feature_targets
                   if f"target_{key}" in part and bool((part[f"target_{key}"] != IGNORE_TARGET).any())}
        ctx = ObjectContext(rows, part["scene"], context, model.llm.get_input_embeddings().weight, said,
                            part.get("instr_ids"), targets)
        tokens = add_features(model.encoders[self.name](rows), model.object_features, ctx)  # (No, k, D)
        model.feature_losses.extend(ctx.losses)
        return tokens

    def fit(self, encoder: nn.Module, examples: Sequence[Any]) -> None:
        rows = [np.asarray(e.objects, np.float32) for e in examples if e.objects is not None]
        rows = np.concatenate(rows) if rows else np.zeros((0, OBJ_DIM), np.float32)
        rows = rows[rows[:, -1] > 0.5]  # present rows only
        if len(rows) > 1:
            encoder.set_stats(stack_rows(list(rows), OBJ_DIM).to(encoder.mean.device))


@register_token_type
class Robot(TokenType):
    """`<robot>`: the robot vector through its MLP (1 token)."""

    name = "robot"
    obs_key = "robot"
    placeholders = (ROBOT_TOKEN,)

    def scene(self, count: int, config: PromptConfig) -> list[str]:
        return [f"Robot: {ROBOT_TOKEN}."]

    def build(self, setup: EncoderSetup) -> nn.Module:
        from agent.model.parts import robot_encoder

        return robot_encoder(setup.config.state.hidden, setup.width)

    def item(self, example: Any, index: int) -> Any:
        if example.robot is None:
            raise ValueError(f"the prompt has {ROBOT_TOKEN} but the example has no robot vector")
        row = np.asarray(example.robot, dtype=np.float32)
        if row.shape != (ROBOT_DIM,) or not np.isfinite(row).all():
            raise ValueError(f"robot vector must be finite with shape ({ROBOT_DIM},), got shape {row.shape}")
        return row

    def collate(self, model: PalmE, items: Sequence[Item], examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"rows": stack_rows([r for _, _, r in items], ROBOT_DIM)}  # (Nr, ROBOT_DIM)

    def encode(self, model: PalmE, part: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        rows = part["rows"]
        return model.encoders[self.name](rows) if rows.numel() else None  # (Nr, 1, D)

    def fit(self, encoder: nn.Module, examples: Sequence[Any]) -> None:
        robots = np.stack([np.asarray(e.robot, np.float32) for e in examples if e.robot is not None]
                          or [np.zeros(ROBOT_DIM, np.float32)])
        if len(robots) > 1:
            encoder.set_stats(stack_rows(list(robots), ROBOT_DIM).to(encoder.mean.device))


from agent.model import text_encoder  # noqa: F401 - registers `instruction` (<instr>), which builds on this module
