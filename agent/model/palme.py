"""`PalmE`: multimodal sentences (text with image and state tokens) through a transformers causal LM.

Composed prismatic-style from parts chosen by id in `PalmEConfig`:
    image encoder (ViT) -> projector -> LLM width      `<img>`   -> n_image_tokens tokens
    object encoder (MLP over one object row)           `<obj_j>`, `<zone_k>` -> obj_tokens tokens
      (+ the LM's embeddings of the object's colour, shape (and size) words when `obj_words`)
    robot encoder (MLP over the robot vector)          `<robot>` -> 1 token
    causal LM (AutoModelForCausalLM)                   reads the sequence, writes the answer

Batch layout (`collate`), B examples padded on the LEFT to length T:
    input_ids (B, T)        placeholder ids repeated once per encoder token they stand for
    attention_mask (B, T)   0 on padding;   position_ids (B, T) = cumsum(mask) - 1, clamped at 0
    labels (B, T)           answer ids + EOS, IGNORE_INDEX elsewhere (train=True only)
    pixel_values (Ni, 3, S, S), image_index (n_img_placeholders,)   images, and which one each `<img>` shows
    object_rows (No, OBJ_DIM), robot_rows (Nr, ROBOT_DIM)           one row per placeholder, in text order
                                                                    (`<zone_k>` rows are object rows too)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from agent.model import checkpoint_checks as checks
from agent.model.config import SCHEMA_VERSION, STAGES, PalmEConfig
from agent.model.decoding import PrefixTrie, greedy_decode
from agent.model.llm import llm_config_dict, llm_from_config, make_llm
from agent.model.parts import (
    ImageEncoder,
    local_image_settings,
    make_projector,
    make_vision,
    object_encoder,
    robot_encoder,
)
from agent.model.tokenizer import add_placeholders, encode_text, load_tokenizer, reserved_ids
from agent.prompts import (
    IMG_TOKEN,
    PROMPT_FORMAT_VERSION,
    ROBOT_TOKEN,
    Example,
    PromptBuilder,
    obj_token,
    prompt_parts,
    zone_token,
)
from envs.catalogue import (
    COLOR_NAMES,
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    OBJ_FIELDS,
    ROBOT_DIM,
    SHAPE_NAMES,
    SIZE_EDGES,
    SIZE_NAMES,
    ZONE_KIND,
)
from envs.fileio import apply_umask

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
_COLOR_COL, _SHAPE_COL, _SIZE_COL = OBJ_FIELDS.index("color_id"), OBJ_FIELDS.index("shape_id"), OBJ_FIELDS.index("size")
_SIZE_SPLIT = sum(SIZE_EDGES[s] for s in SIZE_NAMES) / len(SIZE_NAMES)  # edge length between "small" and "large"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass
class _Encoded:
    """One tokenised example: ids (placeholders expanded, answer appended when training) and its arrays."""

    ids: list[int]
    n_prompt: int  # ids before the answer
    n_img: int  # `<img>` placeholders
    objects: list[np.ndarray]  # one object row per `<obj_j>`, in text order
    robots: list[np.ndarray]  # one robot vector per `<robot>`
    slots: list[int]  # j of each state row's `<obj_j>` (0 for a `<zone_k>` row), in text order


@contextmanager
def _seeded(seed: int):
    """Deterministic weight init from `seed` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class PalmE(nn.Module):
    """PaLM-E: encoders + projector + causal LM; `model(batch) -> loss`, `generate(examples) -> texts`."""

    def __init__(
        self,
        cfg: PalmEConfig,
        tokenizer: Any = None,
        *,
        tokenizer_texts: Sequence[str] | None = None,
        saved: dict[str, Any] | None = None,
    ):
        """Build from `cfg`, a tokenizer (or texts to train one); `saved`: a checkpoint's config.json."""
        super().__init__()
        resolved = local_image_settings(cfg.vision_path) if cfg.vision == "local" and saved is None else {}
        cfg = PalmEConfig.from_dict({**cfg.to_dict(), **resolved})  # our own copy: set_stage updates it
        self.config = cfg
        if tokenizer is not None:
            add_placeholders(tokenizer)  # before a from-scratch LM sizes its vocabulary on it
        with _seeded(cfg.seed):
            if saved is None:
                self.llm, self.tokenizer = make_llm(cfg, tokenizer_texts, tokenizer)
            else:
                self.llm = llm_from_config(saved["llm_config"], cfg.attn_implementation)
                self.tokenizer = tokenizer
            ids = add_placeholders(self.tokenizer)
            vision = make_vision(cfg, saved.get("vision_config") if saved else None)
            self.image_encoder = ImageEncoder(vision, cfg.image_size, cfg.image_mean, cfg.image_std)
            width = self.llm.get_input_embeddings().embedding_dim
            self.projector = make_projector(cfg.projector, self.image_encoder.width, width)
            self.object_encoder = object_encoder(cfg.state_hidden, width, cfg.obj_tokens)
            self.robot_encoder = robot_encoder(cfg.state_hidden, width)
            if cfg.obj_relations:  # words of the cubes above an object, and below it
                self.relation_above = nn.Linear(width, width, bias=False)
                self.relation_below = nn.Linear(width, width, bias=False)
                nn.init.zeros_(self.relation_above.weight)  # a new model starts from the plain object tokens
                nn.init.zeros_(self.relation_below.weight)
            if cfg.zone_relations:  # words of the zone an object lies in
                self.relation_zone = nn.Linear(width, width, bias=False)
                nn.init.zeros_(self.relation_zone.weight)
            if cfg.lora:
                self._apply_lora()
        self.img_id, self.robot_id = ids[IMG_TOKEN], ids[ROBOT_TOKEN]
        self.obj_ids = [ids[obj_token(j)] for j in range(1, MAX_OBJECTS + 1)]
        self.zone_ids = [ids[zone_token(k)] for k in range(1, MAX_ZONES + 1)]
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.register_buffer("obj_word_mix", self._object_word_mix(), persistent=False)
        with torch.no_grad():  # count rather than derive: CLS / register tokens differ between backbones
            probe = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
            self.n_image_tokens = int(self.image_encoder(probe).shape[1])
        self.set_stage(cfg.stage)

    # -----------------------------------------------------------------------------------------
    # construction helpers

    def _object_word_mix(self) -> torch.Tensor:
        """(n_colours + n_shapes + 1 [+ n_sizes], vocab): row c averages the token ids of " <name>" (empty unless obj_words).

        With `obj_words`, an object token is its state MLP's output plus the mean input embedding of
        its colour word plus that of its shape word (plus that of its size word with `obj_size_words`);
        a zone token's "shape" word is "zone" (ZONE_KIND) and it has no size word.
        The output head is tied to those embeddings (scratch LMs), so naming an object in a plan step
        is a copy of something its token holds.
        """
        if not self.config.obj_words:
            return torch.zeros(0, 0)
        vocab = self.llm.get_input_embeddings().num_embeddings
        words = [*COLOR_NAMES, *SHAPE_NAMES, ZONE_KIND, *(SIZE_NAMES if self.config.obj_size_words else ()),
                 *(str(j) for j in range(1, MAX_OBJECTS + 1) if self.config.obj_referral_words)]
        mix = torch.zeros(len(words), vocab)
        for r, word in enumerate(words):
            ids = self.tokenizer.encode(" " + word, add_special_tokens=False)
            mix[r, ids] += 1.0 / len(ids)
        return mix

    def object_tokens(
        self,
        rows: torch.Tensor,
        scene: torch.Tensor | None = None,
        zones: torch.Tensor | None = None,
        zone_scene: torch.Tensor | None = None,
        slot: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Object or zone rows (N, OBJ_DIM) -> (N, obj_tokens, D): the state MLP, plus the colour, shape (and size) words.

        With `obj_relations`, rows of one scene (`scene`: (N,) example index per row) also exchange
        words: each object token gets a learned map of the words of the cubes above it and of those
        below it in its stack (see `support_weights`), so "the yellow cube is under the blue cube" is
        in the tokens rather than left to be inferred from coordinates.
        With `zone_relations`, each object token also gets a learned map of the words of the zone it
        lies in ("red zone"; `zones`: (Nz, OBJ_DIM) zone rows, `zone_scene`: their example index; see
        `zone_weights`), so "the red cube is already in the red zone" is in the token too.
        With `obj_referral_words`, the token of `<obj_j>` (`slot`: (N,) j per row, 0 for zones) also
        carries the word "j", so naming a cube "obj j" is a copy like naming its colour.
        """
        tokens = self.object_encoder(rows)
        if not self.config.obj_words:
            return tokens
        base, is_object = self._row_words(rows, slot)  # (N, D), (N,)
        words = base
        if scene is None:
            scene = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
        if self.config.obj_relations:
            above = support_weights(rows, scene, is_object).to(base.dtype)  # (N, N)
            words = words + self.relation_above(above @ base) + self.relation_below(above.T @ base)
        if self.config.zone_relations and zones is not None and zones.numel():
            if zone_scene is None:
                zone_scene = torch.zeros(zones.shape[0], dtype=torch.long, device=zones.device)
            inside = zone_weights(rows, scene, is_object, zones, zone_scene).to(base.dtype)  # (N, Nz)
            words = words + self.relation_zone(inside @ self._row_words(zones)[0])
        return tokens + words[:, None, :]

    def _row_words(self, rows: torch.Tensor, slot: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) embeddings of each row's colour, shape / "zone" (size, referral) words; (N,) whether a row is an object."""
        n_col, n_kind = len(COLOR_NAMES), len(SHAPE_NAMES) + 1  # object shapes, then the zone kind
        color = rows[:, _COLOR_COL].round().long().clamp(0, n_col - 1)
        shape = rows[:, _SHAPE_COL].round().long().clamp(0, n_kind - 1)
        is_object = shape < n_kind - 1
        mix = self.obj_word_mix[color] + self.obj_word_mix[n_col + shape]  # (N, vocab)
        if self.config.obj_size_words:
            large = (rows[:, _SIZE_COL] >= _SIZE_SPLIT).long()  # index into SIZE_NAMES ("small", "large")
            mix = mix + is_object.to(mix.dtype)[:, None] * self.obj_word_mix[n_col + n_kind + large]  # zones: no size word
        if self.config.obj_referral_words and slot is not None:
            first = n_col + n_kind + (len(SIZE_NAMES) if self.config.obj_size_words else 0)  # the row of "1"
            named = (slot > 0).to(mix.dtype)[:, None]  # zone rows (slot 0) have no number
            mix = mix + named * self.obj_word_mix[first + (slot - 1).clamp(0, MAX_OBJECTS - 1)]
        emb = self.llm.get_input_embeddings().weight
        return mix.to(emb.dtype) @ emb, is_object

    @classmethod
    def build(
        cls, cfg: PalmEConfig, tokenizer: Any = None, tokenizer_texts: Sequence[str] | None = None
    ) -> PalmE:
        """A fresh model from a config (same as the constructor)."""
        return cls(cfg, tokenizer, tokenizer_texts=tokenizer_texts)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return next(self.parameters()).device

    @property
    def prompt_builder(self) -> PromptBuilder:
        """The PromptBuilder with the flags this model is trained and run with."""
        return PromptBuilder(**self.config.prompt_flags())

    def _apply_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        c = self.config
        lora = LoraConfig(
            r=c.lora_r,
            lora_alpha=c.lora_alpha,
            lora_dropout=c.lora_dropout,
            target_modules=list(c.lora_targets),
        )
        self.llm = get_peft_model(self.llm, lora)
        c.lora = True

    # -----------------------------------------------------------------------------------------
    # training stages

    def set_stage(self, stage: str) -> None:
        """Choose what trains: full | frozen_llm (encoders + projector) | projector_only | lora.

        projector_only trains the image projector and the state MLPs (the state modality's projectors);
        with LoRA applied, "full" trains the adapters, never the base LLM weights.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
        if stage == "lora" and not self.config.lora:
            self._apply_lora()
        self.requires_grad_(False)
        parts = [self.projector, self.object_encoder, self.robot_encoder]
        if self.config.obj_relations:  # part of the state encoder
            parts += [self.relation_above, self.relation_below]
        if self.config.zone_relations:
            parts.append(self.relation_zone)
        if stage != "projector_only":
            parts.append(self.image_encoder)
        for part in parts:
            part.requires_grad_(True)
        if stage in ("full", "lora"):
            for name, p in self.llm.named_parameters():
                p.requires_grad_(not self.config.lora or "lora_" in name)
        self.config.stage = stage
        counts = self.parameter_counts()
        log.info(
            "PalmE stage %s: %s trainable / %s parameters",
            stage,
            f"{counts['trainable']:,}",
            f"{counts['total']:,}",
        )

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters (tied weights counted once)."""
        params = list(self.parameters())
        return {
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params),
        }

    def fit_state_stats(self, examples: Sequence[Example]) -> None:
        """Set the object/robot normalisation from data (present object and zone rows only); saved with the weights."""
        objs = [np.asarray(rows, np.float32) for e in examples for rows in (e.objects, e.zones) if rows is not None]
        rows = np.concatenate(objs) if objs else np.zeros((0, OBJ_DIM), np.float32)
        rows = rows[rows[:, -1] > 0.5]
        robots = np.stack(
            [np.asarray(e.robot, np.float32) for e in examples if e.robot is not None]
            or [np.zeros(ROBOT_DIM, np.float32)]
        )
        if len(rows) > 1:
            self.object_encoder.set_stats(torch.from_numpy(rows).to(self.device))
        if len(robots) > 1:
            self.robot_encoder.set_stats(torch.from_numpy(robots).to(self.device))

    # -----------------------------------------------------------------------------------------
    # batches

    def collate(self, examples: Sequence[Example], train: bool) -> dict[str, torch.Tensor]:
        """Tokenise, expand placeholders, left-pad (see the module docstring for the layout)."""
        if not examples:
            raise ValueError("collate needs at least one example")
        enc = [self._encode(e, train) for e in examples]
        width = max(len(e.ids) for e in enc)
        limit = self.max_positions
        if limit is not None and width > limit:  # refused, never truncated: training and inference alike
            b = max(range(len(enc)), key=lambda i: len(enc[i].ids))
            where = ", ".join(f"{k} {v}" for k, v in examples[b].meta.items() if k in ("source", "episode", "frame"))
            raise ValueError(
                f"example {b} ({examples[b].kind}{', ' + where if where else ''}) has {len(enc[b].ids)} tokens "
                f"({enc[b].n_prompt} prompt with placeholders expanded, {len(enc[b].ids) - enc[b].n_prompt} answer); "
                f"the LM has {limit} positions"
            )
        input_ids = torch.full((len(enc), width), self.tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(enc), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(enc), width), dtype=torch.long)  # (B, T)
        for b, e in enumerate(enc):
            start = width - len(e.ids)
            input_ids[b, start:] = torch.tensor(e.ids)
            mask[b, start:] = 1
            labels[b, start + e.n_prompt :] = torch.tensor(e.ids[e.n_prompt :], dtype=torch.long)
        with_image = [(ex.image, e.n_img) for ex, e in zip(examples, enc) if e.n_img]
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(1) - 1).clamp_min(0),  # (B, T): left padding shifts nothing
            "pixel_values": self.image_encoder.preprocess([im for im, _ in with_image]),  # (Ni, 3, S, S)
            "image_index": torch.tensor(  # (n_img_placeholders,): which image each <img> shows
                [i for i, (_, n) in enumerate(with_image) for _ in range(n)], dtype=torch.long
            ),
            "object_rows": _stack([r for e in enc for r in e.objects], OBJ_DIM),  # (No, OBJ_DIM)
            "object_scene": torch.tensor([b for b, e in enumerate(enc) for _ in e.objects], dtype=torch.long),  # (No,)
            "object_slot": torch.tensor([j for e in enc for j in e.slots], dtype=torch.long),  # (No,)
            "robot_rows": _stack([r for e in enc for r in e.robots], ROBOT_DIM),  # (Nr, ROBOT_DIM)
        }
        if self.config.zone_relations:  # every present zone of each example, named in the text or not
            zones = [(b, r) for b, ex in enumerate(examples) for r in _present_rows(ex.zones)]
            batch["zone_rows"] = _stack([r for _, r in zones], OBJ_DIM)  # (Nz, OBJ_DIM)
            batch["zone_scene"] = torch.tensor([b for b, _ in zones], dtype=torch.long)  # (Nz,)
        if train:
            batch["labels"] = labels
            text = _text_labels(input_ids, mask, labels, self._placeholder_ids())
            text[[b for b, ex in enumerate(examples) if not ex.prompt_loss]] = IGNORE_INDEX
            batch["text_labels"] = text
        return batch

    @property
    def max_positions(self) -> int | None:
        """Positions of the LM (`max_position_embeddings`): the longest sequence, prompt and answer together."""
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        return int(limit) if limit is not None else None

    def _placeholder_ids(self) -> torch.Tensor:
        return torch.tensor([self.img_id, self.robot_id, *self.obj_ids, *self.zone_ids])

    def _text_ids(self, text: str) -> list[int]:
        """Token ids of plain text (user or file text): never a placeholder, padding or EOS id.

        Raises ValueError if the tokenizer still turns the text into a special id (a vocabulary in
        which text can spell a special token).
        """
        ids = encode_text(self.tokenizer, text)
        if self.__dict__.get("_reserved") is None:
            self._reserved = reserved_ids(self.tokenizer) | {self.eos_id}
        bad = sorted({t for t in ids if t in self._reserved})
        if bad:
            raise ValueError(f"the tokenizer turns the text {text[:60]!r} into special token ids {bad}; "
                             f"its vocabulary lets text spell special tokens")
        return ids

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt, placeholders not expanded: one id per placeholder the `Prompt` holds,
        its text parts as plain text (a plain str prompt is all text)."""
        ids: list[int] = []
        for i, part in enumerate(prompt_parts(prompt)):
            if i % 2:
                ids.append(self._placeholder_id(part))
            elif part:
                ids += self._text_ids(part)
        return ids

    def _placeholder_id(self, token: str) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(token))

    def _encode(self, ex: Example, train: bool) -> _Encoded:
        """One example's ids with placeholders expanded, and the arrays its placeholders stand for."""
        prompt = self.prompt_ids(ex.prompt)
        if not prompt:
            raise ValueError("an example needs a non-empty prompt")
        obj_slot = {t: j for j, t in enumerate(self.obj_ids, start=1)}
        zone_slot = {t: k for k, t in enumerate(self.zone_ids, start=1)}
        out = _Encoded([], 0, 0, [], [], [])
        for t in prompt:
            if t == self.img_id:
                _check_image_present(ex)
                out.ids.extend([t] * self.n_image_tokens)
                out.n_img += 1
            elif t in obj_slot:
                out.objects.append(_object_row(ex, obj_slot[t]))
                out.slots.append(obj_slot[t])
                out.ids.extend([t] * self.config.obj_tokens)
            elif t in zone_slot:  # zones are state rows too: same encoder, same place in the row list (text order)
                out.objects.append(_zone_row(ex, zone_slot[t]))
                out.slots.append(0)
                out.ids.extend([t] * self.config.obj_tokens)
            elif t == self.robot_id:
                out.robots.append(_robot_row(ex))
                out.ids.append(t)
            else:
                out.ids.append(t)
        out.n_prompt = len(out.ids)
        if train:
            out.ids.extend(self.answer_ids(ex.answer))
        return out

    def sequence_length(self, ex: Example) -> int:
        """Tokens of a training example once its placeholders are expanded (prompt, answer, EOS)."""
        return len(self._encode(ex, train=True).ids)

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of an answer as the model writes it: a leading space, the text (plain text), EOS."""
        return self._text_ids(" " + answer.strip()) + [self.eos_id]

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dev = self.device
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -----------------------------------------------------------------------------------------
    # forward

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The multimodal sentence (B, T, D): token embeddings, encoder outputs at placeholders."""
        ids = batch["input_ids"]
        obj_ids = torch.tensor([*self.obj_ids, *self.zone_ids], device=ids.device)
        img_mask, robot_mask = ids == self.img_id, ids == self.robot_id
        obj_mask = torch.isin(ids, obj_ids)
        special = img_mask | robot_mask | obj_mask
        x = self.llm.get_input_embeddings()(
            ids.masked_fill(special, 0)
        )  # (B, T, D); placeholder rows replaced next
        if batch["image_index"].numel():
            tokens = self.projector(self.image_encoder(batch["pixel_values"]))  # (Ni, n_img, D)
            x = _place(x, img_mask, tokens[batch["image_index"]], IMG_TOKEN)
        if batch["object_rows"].numel():
            tokens = self.object_tokens(  # (No, k, D)
                batch["object_rows"], batch.get("object_scene"), batch.get("zone_rows"), batch.get("zone_scene"),
                batch.get("object_slot"),
            )
            x = _place(x, obj_mask, tokens, "<obj_j>")
        if batch["robot_rows"].numel():
            x = _place(x, robot_mask, self.robot_encoder(batch["robot_rows"]), ROBOT_TOKEN)  # (Nr, 1, D) in
        return x

    def forward(self, batch: dict[str, torch.Tensor], prompt_weight: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (labels); padding never counts.

        `prompt_weight` > 0 adds an auxiliary language-model loss on the prompt's text tokens
        (instruction, steps so far, question; never placeholders): their summed cross-entropy times
        `prompt_weight`, divided by the number of answer tokens, so the objective stays a sum over
        tokens per answer token and splitting a batch (DDP, accumulation) does not change it.
        """
        batch = self._to_device(batch)
        labels = batch.get("labels")
        if labels is None or not bool((labels != IGNORE_INDEX).any()):
            raise ValueError("the batch has no answer tokens; build it with collate(examples, train=True)")
        text = batch.get("text_labels") if prompt_weight > 0 else None
        # Left padding puts every answer in the last `tail` columns; the prompt loss needs them all.
        first = 1 if text is not None else int((labels != IGNORE_INDEX).any(0).nonzero()[0])
        tail = labels.shape[1] - first
        out = self.llm(
            inputs_embeds=self.embed(batch),
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            use_cache=False,
            logits_to_keep=tail + 1,
        )
        logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float()  # (B * tail, V): at t, predicts t + 1
        loss = F.cross_entropy(logits, labels[:, first:].reshape(-1), ignore_index=IGNORE_INDEX)
        if text is None:
            return loss
        n_answer = (labels != IGNORE_INDEX).sum()
        aux = F.cross_entropy(logits, text[:, first:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
        return loss + prompt_weight * aux / n_answer

    # -----------------------------------------------------------------------------------------
    # generation

    @torch.no_grad()
    def generate(
        self,
        examples: Sequence[Example],
        max_new_tokens: int = 48,
        allowed: Sequence[Sequence[str] | None] | None = None,
        min_new_tokens: int = 0,
    ) -> list[str]:
        """Greedy answers, batched with a KV cache; `allowed[i]`: answers example i may give (constrained).

        Constrained rows always finish their answer, even past max_new_tokens. The prompt and the
        answer must fit the LM's positions (`max_positions`; the widest prompt of the batch counts):
        `max_new_tokens` (and `min_new_tokens`) are capped at the positions left after the prompt,
        with a warning; a ValueError names the lengths when no position is left, or when an
        allowed answer is longer than what is left.
        """
        if allowed is not None and len(allowed) != len(examples):
            raise ValueError(
                f"allowed needs one entry per example: {len(examples)} examples, {len(allowed)} entries"
            )
        was_training = self.training
        self.eval()
        try:
            batch = self._to_device(self.collate(examples, train=False))
            tries = [
                PrefixTrie([self.answer_ids(s) for s in a]) if a is not None else None
                for a in (allowed or [None] * len(examples))
            ]
            max_new_tokens, min_new_tokens = self._fit_budget(
                batch["input_ids"].shape[1], max_new_tokens, min_new_tokens, tries
            )
            vocab = self.llm.get_input_embeddings().num_embeddings
            banned = [
                t
                for t in {self.img_id, self.robot_id, *self.obj_ids, *self.zone_ids, self.tokenizer.pad_token_id}
                if t != self.eos_id and t < vocab
            ]
            new = greedy_decode(
                self.llm,
                self.llm.get_input_embeddings(),
                self.embed(batch),
                batch["attention_mask"],
                batch["position_ids"],
                max_new_tokens,
                self.eos_id,
                banned,
                tries,
                min_new_tokens,
            )
        finally:
            self.train(was_training)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]

    def _fit_budget(
        self, width: int, max_new_tokens: int, min_new_tokens: int, tries: Sequence[PrefixTrie | None]
    ) -> tuple[int, int]:
        """(max_new_tokens, min_new_tokens) capped so that a `width`-token prompt and its answer fit the LM."""
        limit = self.max_positions
        if limit is None:
            return max_new_tokens, min_new_tokens
        room = limit - width
        if room < 1:
            raise ValueError(f"the prompt has {width} tokens (placeholders expanded) and the LM has {limit} "
                             f"positions: no room for an answer")
        need = max((t.depth for t in tries if t is not None), default=0)
        if need > room:
            raise ValueError(f"the prompt has {width} tokens and the longest allowed answer {need}: together "
                             f"more than the LM's {limit} positions")
        if max_new_tokens > room:
            log.warning("generation capped at %d new tokens (asked %d): the prompt has %d tokens and the LM %d "
                        "positions", room, max_new_tokens, width, limit)
        return min(max_new_tokens, room), min(min_new_tokens, room)

    # -----------------------------------------------------------------------------------------
    # checkpoints

    def save_pretrained(self, path: str | Path) -> None:
        """config.json (versions, model config) + model.safetensors + tokenizer files: data only, nothing to run.

        The folder loads with `from_pretrained`; it names no code (no `auto_map`: ValueError if
        anything of the model would record one).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        base = self.llm.get_base_model() if self.config.lora else self.llm
        meta = {
            "schema_version": SCHEMA_VERSION,
            "prompt_format_version": PROMPT_FORMAT_VERSION,
            "palme": self.config.to_dict(),
            "llm_config": llm_config_dict(base),
            "vision_config": None
            if self.config.vision == "scratch"
            else self.image_encoder.backbone.config.to_dict(),
        }
        (path / "config.json").write_text(json.dumps(meta, indent=2))
        save_model(self, str(path / "model.safetensors"))  # handles tied (shared) tensors
        apply_umask(path / "model.safetensors")  # safetensors creates its files 0600 whatever the umask
        self.tokenizer.save_pretrained(path)
        checks.refuse_code(path)  # what from_pretrained would refuse is not written silently

    @classmethod
    def from_pretrained(cls, path: str | Path) -> PalmE:
        """Load a checkpoint written by save_pretrained (in eval mode), every file of it checked first.

        Nothing in the folder runs: the tokenizer is read as data (`load_tokenizer`), no JSON file may
        name code (`checkpoint_checks.refuse_code`) and no transformers loader is asked to run any.
        config.json is checked field by field, and the sizes it implies against model.safetensors'
        header (names, shapes, dtypes; read without loading a tensor): the model is built within an
        allocation budget of about the weights' bytes (`checkpoint_checks.allocation_budget`), so a
        config that claims a 4,000,000-token vocabulary stops at its first big tensor, and is then
        built on the meta device (no memory) to name the tensors that differ; a model that fits is
        compared with the header before its weights are read. The loaded weights must be finite and
        of trained size (`checkpoint_checks.check_weights`). Raises ValueError, one line naming the
        file and the key or the tensor, for every checkpoint it refuses: a plain file or empty folder,
        a missing file, broken JSON, a field of the wrong type, a truncated safetensors file, a tensor
        of another shape or dtype, NaN weights, code to run, ...
        """
        folder = checks.check_folder(path, CHECKPOINT_FILES, "checkpoint")
        meta, cfg = checks.read_checkpoint_config(folder)
        config, weights = str(folder / "config.json"), str(folder / "model.safetensors")
        header = checks.read_header(weights)
        checks.check_layer_counts(meta, header, config, weights)
        tokenizer = load_tokenizer(folder)
        _check_token_ids(tokenizer, meta["llm_config"].get("vocab_size"), folder)
        budget = checks.allocation_budget(header)  # about the weights' bytes: a config that claims more stops there
        try:
            with budget:
                model = cls(cfg, tokenizer, saved=meta)
            if budget.tripped:  # a library caught the refusal and went on
                raise checks.OverBudget("an allocation past the budget")
        except (checks.OverBudget, *_BUILD_ERRORS) as err:
            if not budget.tripped:
                raise ValueError(f"{config} describes a model that cannot be built: {checks.one_line(err)}") from None
            skeleton = _build(cls, cfg, tokenizer, meta, config, device="meta")  # names the tensors that differ
            checks.compare_with_header(skeleton.state_dict(keep_vars=True), header, weights)
            raise ValueError(f"{config} describes a model larger than {weights} holds ({err})") from None
        checks.compare_with_header(model.state_dict(keep_vars=True), header, weights)
        _check_token_ids(tokenizer, model.llm.get_input_embeddings().num_embeddings, folder)
        load_model(model, weights, strict=True)
        checks.check_weights(model.state_dict(), weights)
        return model.eval()


def make_model(
    preset: str | PalmEConfig = "palme-tiny", tokenizer_texts: Sequence[str] | None = None, **overrides: Any
) -> PalmE:
    """A fresh PalmE from a preset name (configs/model/) or a config, with field overrides."""
    if isinstance(preset, str):
        cfg = PalmEConfig.from_preset(preset, **overrides)
    else:
        cfg = PalmEConfig.from_dict({**preset.to_dict(), **overrides})
    return PalmE(cfg, tokenizer_texts=tokenizer_texts)


# ---------------------------------------------------------------------------------------------
# helpers


# what building a model from a config that passed the checks can still raise (library checks of the config)
_BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, ArithmeticError,
                 AssertionError)


def _build(cls: type[PalmE], cfg: PalmEConfig, tokenizer: Any, meta: dict[str, Any], config: str, device: str) -> PalmE:
    """The model a checked config.json describes, built on `device`; ValueError naming config.json if it cannot be."""
    try:
        with torch.device(device):
            return cls(cfg, tokenizer, saved=meta)
    except _BUILD_ERRORS as err:
        raise ValueError(f"{config} describes a model that cannot be built: {checks.one_line(err)}") from None


def _check_token_ids(tokenizer: Any, rows: Any, folder: Path) -> None:
    """Every id the tokenizer can produce has a row in the LM's `rows` embeddings (else lookups fail mid-episode)."""
    top = max(tokenizer.get_vocab().values())
    if type(rows) is int and top >= rows:
        raise ValueError(f"{folder / 'tokenizer.json'}: token id {top} is beyond the LM's {rows} embedding rows "
                         f"(llm_config.vocab_size in config.json): the tokenizer belongs to another model")


def _check_versions(meta: dict[str, Any], path: Path) -> None:
    """The checkpoint's schema and prompt format versions are the ones this code reads; ValueError naming both."""
    expected = {"schema_version": SCHEMA_VERSION, "prompt_format_version": PROMPT_FORMAT_VERSION}
    diffs = [
        f"{k}: checkpoint has {meta.get(k)!r}, this code expects {v!r}"
        for k, v in expected.items()
        if meta.get(k) != v
    ]
    if diffs:
        raise ValueError(f"checkpoint {path} does not match this code: " + "; ".join(diffs))


def support_weights(rows: torch.Tensor, scene: torch.Tensor, is_object: torch.Tensor) -> torch.Tensor:
    """(N, N) soft "cube j is above cube i in a stack" weights (row i, column j) among the object rows of one scene.

    Computed from the rows' positions and edge lengths only: j counts as above i as far as their
    footprints overlap (1 when centred, 0 when their centres are half their summed edges apart)
    times a smooth step on j's centre being higher than i's by more than half that distance.
    Pairs from different scenes, zone rows and an object with itself weigh 0.
    """
    pos, size = rows[:, :3], rows[:, _SIZE_COL]
    d = pos[None, :, :] - pos[:, None, :]  # (N, N, 3): j's position relative to i
    reach = (size[:, None] + size[None, :]) / 2  # (N, N): centre distance of touching cubes
    overlap = (1 - d[..., :2].norm(dim=-1) / reach.clamp_min(1e-6)).clamp_min(0)
    higher = torch.sigmoid((d[..., 2] - reach / 2) / 0.0025)
    same = (scene[:, None] == scene[None, :]) & is_object[:, None] & is_object[None, :]
    same &= ~torch.eye(len(rows), dtype=torch.bool, device=rows.device)
    return overlap * higher * same


def zone_weights(
    rows: torch.Tensor, scene: torch.Tensor, is_object: torch.Tensor, zones: torch.Tensor, zone_scene: torch.Tensor
) -> torch.Tensor:
    """(N, Nz) soft "object i lies in zone k" weights (row i, column k), from positions and the zone's side only.

    The object's centre must lie inside the zone's square (as `PickPlaceEnv.in_zone` asks): a
    smooth step of 5 mm width on each axis. Whether the cube rests or is held is not looked at
    (a held cube counts for the zone under it). Zone rows among `rows`, and pairs from different
    scenes, weigh 0.
    """
    half = zones[:, _SIZE_COL] / 2  # (Nz,)
    d = (rows[:, None, :2] - zones[None, :, :2]).abs()  # (N, Nz, 2)
    inside = torch.sigmoid((half[None, :, None] - d) / 0.005).prod(-1)
    same = (scene[:, None] == zone_scene[None, :]) & is_object[:, None]
    return inside * same


def _present_rows(rows: np.ndarray | None) -> list[np.ndarray]:
    """The present rows (last column set) of a zone array, checked; none for None."""
    if rows is None:
        return []
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"zone rows must have shape (n, {OBJ_DIM}), got {rows.shape}")
    present = [r for r in rows if r[-1] > 0.5]
    for k, r in enumerate(present, start=1):
        if not np.isfinite(r).all():
            raise ValueError(f"zone row {k} holds NaN/inf: {r}")
    return present


def _text_labels(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, placeholders: torch.Tensor) -> torch.Tensor:
    """(B, T) targets of the auxiliary prompt loss: the prompt's text tokens, IGNORE_INDEX elsewhere."""
    prompt_text = (mask > 0) & (labels == IGNORE_INDEX) & ~torch.isin(ids, placeholders)
    prompt_text[:, 1:] &= mask[:, :-1] > 0  # a sequence's first token has nothing before it to predict it from
    prompt_text[:, 0] = False
    return ids.masked_fill(~prompt_text, IGNORE_INDEX)


def _place(x: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor, what: str) -> torch.Tensor:
    """Write encoder tokens (N, n, D), in text order, into the masked positions of x (B, T, D)."""
    flat = tokens.reshape(-1, tokens.shape[-1])  # (N * n, D)
    rows, cols = mask.nonzero(as_tuple=True)  # row-major: text order within each example
    if rows.numel() != flat.shape[0]:
        raise ValueError(f"{what}: {rows.numel()} placeholder positions but {flat.shape[0]} encoder tokens")
    return x.index_put((rows, cols), flat.to(x.dtype))  # out of place; its backward is a cheap gather


def _stack(rows: list[np.ndarray], dim: int) -> torch.Tensor:
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, dim)


def _check_image_present(ex: Example) -> None:
    if ex.image is None:
        raise ValueError(f"the prompt has {IMG_TOKEN} but the example has no image")


def _object_row(ex: Example, j: int) -> np.ndarray:
    """Row of object j (1-based) of an example, checked: the placeholder must name a present object."""
    return _state_row(ex.objects, j, obj_token(j), "object")


def _zone_row(ex: Example, k: int) -> np.ndarray:
    """Row of zone k (1-based) of an example, checked: the placeholder must name a present zone."""
    return _state_row(ex.zones, k, zone_token(k), "zone")


def _state_row(rows: np.ndarray | None, j: int, token: str, what: str) -> np.ndarray:
    if rows is None:
        raise ValueError(f"the prompt has {token} but the example has no {what} rows")
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"{what} rows must have shape (n, {OBJ_DIM}), got {rows.shape}")
    present = int((rows[:, -1] > 0.5).sum())
    if j > rows.shape[0] or rows[j - 1, -1] <= 0.5:
        raise ValueError(f"the prompt has {token} but the example has {present} present {what} rows")
    if not np.isfinite(rows[j - 1]).all():
        raise ValueError(f"{what} row {j} holds NaN/inf: {rows[j - 1]}")
    return rows[j - 1]


def _robot_row(ex: Example) -> np.ndarray:
    if ex.robot is None:
        raise ValueError(f"the prompt has {ROBOT_TOKEN} but the example has no robot vector")
    row = np.asarray(ex.robot, dtype=np.float32)
    if row.shape != (ROBOT_DIM,) or not np.isfinite(row).all():
        raise ValueError(f"robot vector must be finite with shape ({ROBOT_DIM},), got shape {row.shape}")
    return row
