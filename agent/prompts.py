"""`PromptBuilder`: the one place that writes every prompt the model sees, in training and at inference.

A prompt is a "multimodal sentence": text with placeholders that the model replaces by encoder
outputs at their positions. The placeholders are those of the registered token types
(agent.model.tokens): `<img>` (image tokens), `<obj_j>` (the state tokens of object j, 1-based:
row j-1 of the observation's object rows) and `<robot>` (the robot-state token).

Formats (PROMPT_FORMAT_VERSION 1), shown with images, states and entity referrals on:

    Given <img>. Object 1 is <obj_1>. Object 2 is <obj_2>. Robot: <robot>.
    Task: stack the red cube on the blue cube.
    Step 1. pick up the red cube. Result: ok.
    Step 2.                                   <- next step: answer " place the red cube on the blue cube"

    ... Task: <instruction>
    Plan:                                     <- whole plan: answer " Step 1. pick up ... Step 2. ... done."

    ... Q: <question>
    A:                                        <- VQA / captions / success detection

The scene sentence is written by the token types the builder's `PromptConfig.tokens` names, in that
order (each supplies its own sentences); a model with `history_window=k` sees only the last k steps,
numbered as in the episode. Examples with object tokens also carry the observation keys in the
builder's `context` (what the model's object features read, e.g. the zone rows), named in the text or not.

Untrusted text: every prompt the builder writes is a `Prompt`, a str that knows which of its spans are
the placeholders the builder put there. Everything else (instructions, questions, history steps and
their feedback, dataset language) is plain text to the model: a user's `<img>` or `<eos>` is read as
the characters, never as an image or a special token (`PalmE` tokenises text parts with the
tokenizer's `split_special_tokens`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from agent.model.config import PromptConfig
from agent.model.tokens import all_placeholders, token_type

PROMPT_FORMAT_VERSION = 1
OK_FEEDBACK = "ok"
_OBS_FIELDS = {"rgb": "image", "objects": "objects", "robot": "robot", "zones": "zones"}  # key -> Example field


@functools.lru_cache(maxsize=8)
def _splitter(placeholders: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("(" + "|".join(re.escape(t) for t in sorted(placeholders, key=len, reverse=True)) + ")")


class Prompt(str):
    """Prompt text that knows which of its spans are placeholders the builder wrote (a str: the text itself).

    `parts` alternates text and placeholders, `(text, placeholder, text, ..., text)`: odd length, each
    odd index a placeholder of a registered token type (`tokens.all_placeholders`). Only those become encoder tokens; the text parts (instructions,
    questions, history, dataset language: text that comes from users or files) are plain text to
    the model, whatever they contain. A plain str used as a prompt is all text (no placeholders);
    so is any new string made from a Prompt (`+`, slicing, `.strip()`): compose prompts with
    `Prompt(...)` pieces, and use `Prompt.template` only for hand-written multimodal sentences.
    """

    parts: tuple[str, ...]

    def __new__(cls, *pieces: str) -> Self:
        """The concatenation of `pieces`: a Prompt piece keeps its placeholders, any other str is plain text."""
        parts = [""]
        for piece in pieces:
            if isinstance(piece, Prompt):
                parts[-1] += piece.parts[0]
                parts += piece.parts[1:]
            elif isinstance(piece, str):
                parts[-1] += piece
            else:
                raise TypeError(f"prompt pieces must be str, got {type(piece).__name__}")
        return cls._of(parts)

    @classmethod
    def _of(cls, parts: Iterable[str]) -> Self:
        parts = tuple(parts)
        known = all_placeholders()
        bad = [t for t in parts[1::2] if t not in known]
        if len(parts) % 2 == 0 or bad:
            raise ValueError(f"prompt parts must alternate text and placeholders {list(known)}, got {parts!r}")
        self = str.__new__(cls, "".join(parts))
        self.parts = parts
        return self

    @classmethod
    def placeholder(cls, token: str) -> Prompt:
        """A prompt that is just one placeholder (`<img>`, `<obj_j>`, `<robot>`, ...)."""
        return cls._of(("", token, ""))

    @classmethod
    def template(cls, text: str) -> Prompt:
        """A hand-written multimodal sentence: every placeholder text in `text` becomes a placeholder.

        For sentences a developer writes (tests, benchmarks); never pass user text through it.
        """
        return cls._of(_splitter(all_placeholders()).split(text))

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholders, in text order."""
        return self.parts[1::2]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickling and copying keep the structure
        return Prompt._of, (self.parts,)


def prompt_parts(prompt: str) -> tuple[str, ...]:
    """`(text, placeholder, text, ..., text)` of a prompt; a plain str is one text part."""
    return prompt.parts if isinstance(prompt, Prompt) else (prompt,)


def _join(sep: str, pieces: Iterable[str]) -> Prompt:
    """`sep.join(pieces)` that keeps the placeholders of Prompt pieces."""
    out: list[str] = []
    for piece in pieces:
        if out:
            out.append(sep)
        out.append(piece)
    return Prompt(*out)


@dataclass
class Example:
    """One model input (prompt + arrays) and, for training, its target answer."""

    prompt: str  # a Prompt from PromptBuilder; a plain str is read as text only (no placeholders)
    answer: str = ""  # target text, without a leading space; empty at inference
    image: np.ndarray | None = None  # (H, W, 3) uint8, when the prompt has <img>
    objects: np.ndarray | None = None  # (MAX_OBJECTS, OBJ_DIM) float32, when it has <obj_j>
    robot: np.ndarray | None = None  # (ROBOT_DIM,) float32, when it has <robot>
    zones: np.ndarray | None = None  # (MAX_ZONES, OBJ_DIM) float32, when the model's object features read them
    kind: str = "plan"  # plan | plan_full | vqa | caption | success ...
    prompt_loss: bool = True  # training: the prompt's text may take the auxiliary prompt loss
    meta: dict[str, Any] = field(default_factory=dict)  # provenance (episode, frame, task) for reports
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # arrays of other observation keys (new token types)

    def array(self, key: str) -> np.ndarray | None:
        """The array carried for observation key `key` (`rgb` is the image), None when not carried."""
        return getattr(self, _OBS_FIELDS[key]) if key in _OBS_FIELDS else self.extra.get(key)

    def carry(self, key: str, value: np.ndarray) -> None:
        """Carry `value` for observation key `key`."""
        if key in _OBS_FIELDS:
            setattr(self, _OBS_FIELDS[key], value)
        else:
            self.extra[key] = value


@dataclass(frozen=True)
class PromptBuilder:
    """Writes prompts: `config` chooses which observation tokens appear (PaLM-E's input ablations) and the history.

    `context`: observation keys that examples with object tokens also carry (what a model's object
    features read, e.g. `("zones",)`); `targets`: the per-object training targets its object features learn
    from (`ObjectFeature.targets`; training examples carry them); `agent.model.prompt_builder(cfg)` gives a
    model's builder.
    """

    config: PromptConfig = field(default_factory=PromptConfig)
    context: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()

    def reads(self, key: str) -> bool:
        """Whether examples of this builder may carry observation key `key` (`reads("rgb")`: frames are needed)."""
        return key in self.context or any(token_type(name).obs_key == key for name in self.config.tokens)

    def scene(self, n_objects: int, n_zones: int = 0) -> Prompt:
        """The observation prefix for a scene with `n_objects` objects and `n_zones` target zones: the
        sentences of each token type of `config.tokens`, in that order."""
        counts = {"objects": n_objects, "zones": n_zones}
        parts: list[Prompt] = []
        for t in map(token_type, self.config.tokens):
            parts += [Prompt.template(s) for s in t.scene(counts.get(t.obs_key, 1), self.config)]
        return _join(" ", parts)

    def _head(self, n_objects: int, n_zones: int, line: str) -> Prompt:
        """The scene, then `line` (a plain-text line, e.g. `Task: <instruction>`) on its own line."""
        scene = self.scene(n_objects, n_zones)
        return Prompt(scene, "\n", line) if scene else Prompt(line)

    def task(self, instruction: str) -> str:
        """The instruction as prompts say it after `Task: `: its words, or `the instruction` when
        `prompt.instruction.in_text` is false (the LM then reads the words only through `<instr>`)."""
        return instruction.strip() if self.config.instruction.in_text else "the instruction"

    def planning(self, instruction: str, history: Sequence[tuple[str, str]], n_objects: int, n_zones: int = 0) -> Prompt:
        """Next-step prompt: instruction, the steps so far with their feedback, then `Step k.` (`Step.` when
        `prompt.step_numbers` is false).

        The instruction, steps and feedback are plain text (never placeholders), whatever they hold.
        """
        lines: list[str] = [self._head(n_objects, n_zones, f"Task: {self.task(instruction)}")]
        window = self.config.history_window
        first = max(0, len(history) - window) if window else 0
        numbered = self.config.step_numbers
        for i, (step, feedback) in enumerate(history[first:], start=first + 1):
            lines.append(f"Step{f' {i}' if numbered else ''}. {step}. Result: {feedback}.")
        lines.append(f"Step{f' {len(history) + 1}' if numbered else ''}.")
        return _join("\n", lines)

    def whole_plan(self, instruction: str, n_objects: int, n_zones: int = 0) -> Prompt:
        """Open-loop prompt: the whole plan is the answer (PaLM-E's p1/p2 style); the instruction is plain text."""
        return Prompt(self._head(n_objects, n_zones, f"Task: {self.task(instruction)}"), "\nPlan:")

    def question(self, question: str, n_objects: int, n_zones: int = 0) -> Prompt:
        """VQA / captioning / success-detection prompt; the question is plain text."""
        return Prompt(self._head(n_objects, n_zones, f"Q: {question.strip()}"), "\nA:")

    def example(self, prompt: str, obs: Mapping[str, Any], answer: str = "", kind: str = "plan", **meta: Any) -> Example:
        """Pair a prompt (a Prompt of this builder) with the observation arrays its placeholders need.

        A token type of `config.tokens` whose placeholders the prompt holds carries its observation
        key's array; with object tokens, the `context` keys the observation has are carried too.
        """
        held = set(prompt_parts(prompt)[1::2])
        ex = Example(prompt=prompt, answer=answer, kind=kind, meta=dict(meta))
        for name in self.config.tokens:
            t = token_type(name)
            if held & set(t.placeholders):
                ex.carry(t.obs_key, t.carry(obs[t.obs_key]))
        if "object" in self.config.tokens and held & set(token_type("object").placeholders):
            for key in self.context:
                if obs.get(key) is not None:
                    ex.carry(key, np.asarray(obs[key], dtype=np.float32))
        return ex

    def for_obs(self, kind: str, obs: Mapping[str, Any], **kwargs: Any) -> Example:
        """Build the prompt of `kind` ("plan", "plan_full", "vqa") for an observation, with its arrays."""
        n, z = count_objects(obs["objects"]), count_zones(obs)
        answer = kwargs.pop("answer", "")
        meta = kwargs.pop("meta", {})
        if kind in ("plan", "plan_full") and self.reads("instruction"):  # `<instr>` reads the planner's instruction
            obs = {**obs, "instruction": kwargs["instruction"]}
        if kind == "plan":
            prompt = self.planning(kwargs["instruction"], kwargs.get("history", ()), n, z)
        elif kind == "plan_full":
            prompt = self.whole_plan(kwargs["instruction"], n, z)
        else:
            prompt = self.question(kwargs["question"], n, z)
        return self.example(prompt, obs, answer=answer, kind=kind, **meta)


def restate_question(instruction: str) -> str:
    """Restate the instruction in the task's canonical words (`prompt.restate`; asked with `PromptBuilder.question`)."""
    return f"Restate the task. Task: {instruction.strip().rstrip('.')}."


def success_question(instruction: str) -> str:
    """Success detection on a frame: was the task completed? (asked with `PromptBuilder.question`)."""
    return f"Was the task completed? Task: {instruction.strip().rstrip('.')}."


def is_yes(answer: str) -> bool:
    """A yes/no answer read leniently: it starts with "yes"."""
    return answer.strip().lower().startswith("yes")


def count_objects(object_rows: np.ndarray) -> int:
    """Number of present objects (the `present` column of the object rows)."""
    return int(np.asarray(object_rows)[:, -1].sum())


def count_zones(obs: Mapping[str, Any]) -> int:
    """Number of target zones of an observation (0 when it has no zone rows)."""
    return count_objects(obs["zones"]) if obs.get("zones") is not None else 0


def format_feedback(success: bool, reason: str) -> str:
    """Feedback text for a step's result, as it appears in the history."""
    return OK_FEEDBACK if success else f"failed: {reason.strip().rstrip('.')}"


def render_whole_plan(steps: Sequence[str]) -> str:
    """Answer text of a whole plan: `Step 1. a. Step 2. b. Step 3. done.`"""
    return " ".join(f"Step {i}. {s}." for i, s in enumerate(steps, start=1))


_STEP_SPLIT = re.compile(r"\bstep\s*\d+\s*[.:)]", re.IGNORECASE)


def split_whole_plan(text: str) -> list[str]:
    """Steps of a whole-plan answer (inverse of render_whole_plan; tolerant of missing numbers)."""
    parts = _STEP_SPLIT.split(text) if _STEP_SPLIT.search(text) else re.split(r"[\n;]|\.\s", text)
    return [s.strip().rstrip(".").strip() for s in parts if s.strip().rstrip(".").strip()]
