"""`PalmE`: multimodal sentences (text with observation tokens) through a transformers causal LM.

Composed prismatic-style from parts chosen by id in `PalmEConfig`, one encoder per token type the
config lists (`prompt.tokens`; agent.model.tokens):
    image   `<img>`    frame -> ViT -> projector -> LLM width             n_tokens["image"] tokens
    object  `<obj_j>`  object row -> state MLP, + the object features    state.tokens_per_object tokens
                       (`state.features`: the LM's embeddings of its colour / shape / size words,
                       the words of the cubes above / below it, of the zone it lies in; agent.model.features)
    robot   `<robot>`  robot vector -> MLP                               1 token
    instruction `<instr>` instruction -> frozen MiniLM (cached per string) -> projector   1 per word piece (varies)
    causal LM (AutoModelForCausalLM) reads the sequence, writes the answer

Batch layout (`collate`), B examples padded on the LEFT to length T:
    input_ids (B, T)        placeholder ids repeated once per encoder token they stand for
    attention_mask (B, T)   0 on padding;   position_ids (B, T) = cumsum(mask) - 1, clamped at 0
    labels (B, T)           answer ids + EOS, IGNORE_INDEX elsewhere (train=True only)
    "<type>.<key>"          each token type's tensors (`TokenType.collate`), e.g.
        image.pixel_values (Ni, 3, S, S), image.index (n_img_placeholders,): which image each `<img>` shows
        object.rows (No, OBJ_DIM), object.scene (No,): one row per `<obj_j>` in text order, its example;
            object.zones (Nz, OBJ_DIM), object.zones_scene (Nz,): every present zone row, when a feature reads them
            object.instr_states (M, 384), object.instr_scene (M,), object.instr_ids (M,): each example's
            instruction states, their example index and word-piece ids, when a feature reads them
            (`instruction_words`, `instruction_sides`)
        robot.rows (Nr, ROBOT_DIM)
        instruction.states (M, 384), instruction.lengths (Ni,): each `<instr>`'s frozen encoder states, one after another
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from agent.model import checkpoint_checks as checks
from agent.model.config import IGNORE_INDEX, SCHEMA_VERSION, STAGE_ROLES, PalmEConfig
from agent.model.decoding import PrefixTrie, greedy_decode
from agent.model.features import FeatureSetup, build_features, feature_context, feature_targets
from agent.model.llm import llm_config_dict, llm_from_config, make_llm
from agent.model.parts import local_image_settings, role_of, with_role
from agent.model.tokenizer import add_placeholders, encode_text, load_tokenizer, reserved_ids
from agent.model.tokens import EncoderSetup, Item, TokenType, placeholders_of, token_type
from agent.prompts import PROMPT_FORMAT_VERSION, Example, PromptBuilder, prompt_parts
from envs.fileio import apply_umask

log = logging.getLogger(__name__)
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
CONVERT_COMMAND = "python -m agent.model.convert"


@dataclass
class _Encoded:
    """One tokenised example: ids (placeholders expanded, answer appended when training) and its arrays."""

    ids: list[int]
    n_prompt: int  # ids before the answer
    items: dict[str, list[tuple[int, Any]]]  # token type -> (placeholder index, array) per placeholder, in text order


@contextmanager
def _seeded(seed: int):
    """Deterministic weight init from `seed` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def prompt_builder(cfg: PalmEConfig) -> PromptBuilder:
    """The PromptBuilder a model of `cfg` is trained and run with (its prompt config, and the observation keys
    its object features read)."""
    return PromptBuilder(cfg.prompt, feature_context(cfg.state.features), feature_targets(cfg.state.features))


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
        resolved = local_image_settings(cfg.vision.path) if cfg.vision.backbone == "local" and saved is None else {}
        cfg = cfg.replace(vision=resolved)  # our own copy: _apply_lora updates it
        self.config = cfg
        self.token_types: list[TokenType] = [token_type(name) for name in cfg.prompt.tokens]
        placeholders = placeholders_of(cfg.prompt.tokens)
        if tokenizer is not None:
            add_placeholders(tokenizer, placeholders)  # before a from-scratch LM sizes its vocabulary on it
        with _seeded(cfg.seed):
            if saved is None:
                self.llm, self.tokenizer = make_llm(cfg.llm, tokenizer_texts, tokenizer, placeholders)
            else:
                self.llm = llm_from_config(saved["llm_config"], cfg.llm.attn_implementation)
                self.tokenizer = tokenizer
            with_role(self.llm, "llm")
            self.placeholder_ids = add_placeholders(self.tokenizer, placeholders)  # placeholder text -> id
            embeddings = self.llm.get_input_embeddings()
            setup = EncoderSetup(cfg, embeddings.embedding_dim, saved)
            self.encoders = nn.ModuleDict({t.name: t.build(setup) for t in self.token_types})
            text = getattr(self.encoders["instruction"], "text", None) if "instruction" in self.encoders else None
            self.object_features = build_features(
                cfg.state.features,
                FeatureSetup(embeddings.embedding_dim, self.tokenizer, embeddings.num_embeddings, text))
            if cfg.lora.enabled:
                self._apply_lora()
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.feature_context = feature_context(cfg.state.features)  # observation keys the object features read
        self.feature_targets = feature_targets(cfg.state.features)  # per-object training targets they learn from
        self.feature_losses: list[torch.Tensor] = []  # the object features' auxiliary losses of the last embed()
        self._slots = {self.placeholder_ids[p]: (t, i) for t in self.token_types for i, p in enumerate(t.placeholders)}
        self.n_tokens = {t.name: t.n_tokens(self.encoders[t.name]) for t in self.token_types}  # LM tokens per placeholder
        self.stage = ""
        self.set_stage("lora" if cfg.lora.enabled else "full")

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
        """The PromptBuilder this model is trained and run with."""
        return prompt_builder(self.config)

    def _apply_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        c = self.config.lora
        lora = LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=list(c.targets))
        self.llm = with_role(get_peft_model(self.llm, lora), "llm")
        c.enabled = True

    # -----------------------------------------------------------------------------------------
    # training stages

    def set_stage(self, stage: str) -> None:
        """Choose what trains, by module role (config.STAGE_ROLES): full | frozen_llm (the encoders, features and
        projector) | projector_only (the projector and the state encoders and features) | lora.

        Every parameter belongs to the nearest enclosing module that declares a role (`parameter_roles`);
        with LoRA applied, the LM trains only its adapters, never its base weights. Raises ValueError
        for an unknown stage or a parameter of no role.
        """
        if stage not in STAGE_ROLES:
            raise ValueError(f"stage must be one of {list(STAGE_ROLES)}, got {stage!r}")
        if stage == "lora" and not self.config.lora.enabled:
            self._apply_lora()
        train = STAGE_ROLES[stage]
        for name, role in self.parameter_roles().items():
            adapter_only = role == "llm" and self.config.lora.enabled
            self.get_parameter(name).requires_grad_(role in train and (not adapter_only or "lora_" in name))
        self.stage = stage
        counts = self.parameter_counts()
        log.info("PalmE stage %s: %s trainable / %s parameters", stage, f"{counts['trainable']:,}",
                 f"{counts['total']:,}")

    def parameter_roles(self) -> dict[str, str]:
        """Parameter name -> the role of the nearest enclosing module that declares one ("llm", "vision",
        "projector", "state"); ValueError naming the parameters of no role."""
        roles: dict[str, str] = {}
        for prefix, module in self.named_modules():  # parents before children: the nearest role wins
            role = role_of(module)
            if role is not None:
                roles.update(dict.fromkeys((n for n, _ in module.named_parameters(prefix=prefix)), role))
        names = [n for n, _ in self.named_parameters()]
        missing = [n for n in names if n not in roles]
        if missing:
            raise ValueError(f"parameters {missing[:3]} belong to no module with a role; give their module a `role` "
                             f"(parts.with_role) so training stages know when it trains")
        return {n: roles[n] for n in names}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters (tied weights counted once)."""
        params = list(self.parameters())
        return {
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params),
        }

    def fit_state_stats(self, examples: Sequence[Example]) -> None:
        """Each token type's encoder normalisation from data (object and robot rows: present rows only); saved with
        the weights."""
        for t in self.token_types:
            t.fit(self.encoders[t.name], examples)

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
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(1) - 1).clamp_min(0),  # (B, T): left padding shifts nothing
        }
        for t in self.token_types:
            items: list[Item] = [(b, i, array) for b, e in enumerate(enc) for i, array in e.items[t.name]]
            batch.update({f"{t.name}.{k}": v for k, v in t.collate(self, items, examples).items()})
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

    def _placeholder_ids(self, names: Sequence[str] | None = None) -> torch.Tensor:
        """The ids of the placeholders of the model's token types (of those `names`)."""
        types = self.token_types if names is None else [t for t in self.token_types if t.name in names]
        return torch.tensor([self.placeholder_ids[p] for t in types for p in t.placeholders], dtype=torch.long)

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
        its text parts as plain text (a plain str prompt is all text). ValueError for a placeholder of a
        token type this model does not read."""
        ids: list[int] = []
        for i, part in enumerate(prompt_parts(prompt)):
            if i % 2:
                if part not in self.placeholder_ids:
                    raise ValueError(f"the prompt holds {part}, a placeholder of a token type this model does not "
                                     f"read (its token types: {self.config.prompt.tokens})")
                ids.append(self.placeholder_ids[part])
            elif part:
                ids += self._text_ids(part)
        return ids

    def _encode(self, ex: Example, train: bool) -> _Encoded:
        """One example's ids with placeholders expanded, and the arrays its placeholders stand for."""
        prompt = self.prompt_ids(ex.prompt)
        if not prompt:
            raise ValueError("an example needs a non-empty prompt")
        out = _Encoded([], 0, {t.name: [] for t in self.token_types})
        for tok in prompt:
            slot = self._slots.get(tok)
            if slot is None:
                out.ids.append(tok)
                continue
            t, i = slot
            item = t.item(ex, i)
            out.items[t.name].append((i, item))
            out.ids.extend([tok] * t.count(self, item))
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
        """The multimodal sentence (B, T, D): token embeddings, each token type's encoder outputs at its placeholders."""
        ids = batch["input_ids"]
        special = torch.isin(ids, self._placeholder_ids().to(ids.device))
        x = self.llm.get_input_embeddings()(ids.masked_fill(special, 0))  # (B, T, D); placeholder rows replaced next
        for t in self.token_types:
            prefix = f"{t.name}."
            tokens = t.encode(self, {k.removeprefix(prefix): v for k, v in batch.items() if k.startswith(prefix)})
            if tokens is not None:  # (N, n, D)
                x = _place(x, torch.isin(ids, self._placeholder_ids([t.name]).to(ids.device)), tokens, t.name)
        return x

    def forward(self, batch: dict[str, torch.Tensor], prompt_weight: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens (labels); padding never counts.

        `prompt_weight` > 0 adds an auxiliary language-model loss on the prompt's text tokens
        (instruction, steps so far, question; never placeholders): their summed cross-entropy times
        `prompt_weight`, divided by the number of answer tokens, so the objective stays a sum over
        tokens per answer token and splitting a batch (DDP, accumulation) does not change it. The object features'
        auxiliary losses (`ObjectFeature.aux_loss`, each weighted and averaged over its batch's labelled objects) are
        added when the batch carries their targets.
        """
        batch = self._to_device(batch)
        self.feature_losses = []
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
        if text is not None:
            n_answer = (labels != IGNORE_INDEX).sum()
            aux = F.cross_entropy(logits, text[:, first:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
            loss = loss + prompt_weight * aux / n_answer
        features, self.feature_losses = self.feature_losses, []
        return loss + sum(features) if features else loss

    # -----------------------------------------------------------------------------------------
    # generation

    def banned_ids(self) -> list[int]:
        """Ids generation never emits: every special token of the tokenizer (placeholders, padding, and any it
        keeps from elsewhere) except EOS and the placeholders of token types that `may_generate`."""
        vocab = self.llm.get_input_embeddings().num_embeddings
        allowed = {self.placeholder_ids[p] for t in self.token_types if t.may_generate for p in t.placeholders}
        return sorted(t for t in reserved_ids(self.tokenizer) if t != self.eos_id and t < vocab and t not in allowed)

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
            new = greedy_decode(
                self.llm,
                self.llm.get_input_embeddings(),
                self.embed(batch),
                batch["attention_mask"],
                batch["position_ids"],
                max_new_tokens,
                self.eos_id,
                self.banned_ids(),
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
        base = self.llm.get_base_model() if self.config.lora.enabled else self.llm
        local_vision = self.config.vision.backbone != "scratch" and "image" in self.encoders
        meta = {
            "schema_version": SCHEMA_VERSION,
            "prompt_format_version": PROMPT_FORMAT_VERSION,
            "palme": self.config.to_dict(),
            "llm_config": llm_config_dict(base),
            "vision_config": self.encoders["image"].vision.backbone.config.to_dict() if local_vision else None,
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
        of another shape or dtype, NaN weights, code to run, a checkpoint of an older schema (the
        message names the conversion command, `python -m agent.model.convert`), ...
        """
        folder = checks.check_folder(path, CHECKPOINT_FILES, "checkpoint")
        meta, cfg = checks.read_checkpoint_config(folder)
        config, weights = str(folder / "config.json"), str(folder / "model.safetensors")
        header = checks.read_header(weights)
        checks.check_layer_counts(meta, header, config, weights)
        own = cfg.llm.backbone == "scratch"  # another LM's tokenizer (llm local, smollm2) keeps its pipeline
        tokenizer = load_tokenizer(folder, placeholders_of(cfg.prompt.tokens), own=own)
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
    """A fresh PalmE from a preset name (configs/model/) or a config, with overrides (`llm={"hidden": 64}`
    changes that field of the llm section only; see `PalmEConfig.replace`)."""
    cfg = PalmEConfig.from_preset(preset, **overrides) if isinstance(preset, str) else preset.replace(**overrides)
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
    """The checkpoint's schema and prompt format versions are the ones this code reads; ValueError naming both
    (and, for an older schema, the command that converts the checkpoint)."""
    if type(meta.get("schema_version")) is int and 1 <= meta["schema_version"] < SCHEMA_VERSION:
        raise ValueError(f"checkpoint {path} has schema_version {meta['schema_version']} and this code reads "
                         f"{SCHEMA_VERSION}: convert it once with `{CONVERT_COMMAND} {path} NEW_FOLDER` "
                         f"(same weights, the new layout)")
    expected = {"schema_version": SCHEMA_VERSION, "prompt_format_version": PROMPT_FORMAT_VERSION}
    diffs = [
        f"{k}: checkpoint has {meta.get(k)!r}, this code expects {v!r}"
        for k, v in expected.items()
        if meta.get(k) != v
    ]
    if diffs:
        raise ValueError(f"checkpoint {path} does not match this code: " + "; ".join(diffs))


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
