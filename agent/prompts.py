"""`PromptBuilder`: the one place that writes every prompt the model sees, in training and at inference.

A prompt is a "multimodal sentence": text with placeholders that the model replaces by encoder
outputs at their positions: `<img>` (image tokens), `<obj_j>` (the state tokens of object j,
1-based: slot j-1 of the observation's object rows) and `<robot>` (the robot-state token).

Formats (PROMPT_FORMAT_VERSION 1), shown with images, states and entity referrals on:

    Given <img>. Object 1 is <obj_1>. Object 2 is <obj_2>. Robot: <robot>.
    Task: stack the red cube on the blue cube.
    Step 1. pick up the red cube. Result: ok.
    Step 2.                                   <- next step: answer " place the red cube on the blue cube"

    ... Task: <instruction>
    Plan:                                     <- whole plan: answer " Step 1. pick up ... Step 2. ... done."

    ... Q: <question>
    A:                                        <- VQA / captions / success detection

With zone tokens on (`use_zones`, a model's `zone_tokens`), a scene with target zones also says
`Zones: <zone_1> <zone_2>.` after the objects: `<zone_k>` is row k-1 of the observation's zone rows
(catalogue.zone_row), read by the same state encoder as objects. Without zones the text is unchanged.
With `zone_rows` (a model's `zone_relations`) an example with object tokens carries the zone rows even
when the text names no zone: the model reads them to tell which zone each object lies in.
With `name_objects` (a model's `name_objects`) each object is introduced by its name, read from its row
(`envs.vocab.row_names`, the names plan steps use): `The small cyan cube is <obj_1>.`

Untrusted text: every prompt the builder writes is a `Prompt`, a str that knows which of its spans are
the placeholders the builder put there. Everything else (instructions, questions, history steps and
their feedback, dataset language) is plain text to the model: a user's `<img>` or `<eos>` is read as
the characters, never as an image or a special token (`PalmE` tokenises text parts with the
tokenizer's `split_special_tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from envs.catalogue import MAX_OBJECTS, MAX_ZONES
from envs.vocab import row_names

PROMPT_FORMAT_VERSION = 1
IMG_TOKEN = "<img>"
ROBOT_TOKEN = "<robot>"
OK_FEEDBACK = "ok"


def obj_token(j: int) -> str:
    """Placeholder of object j (1-based)."""
    return f"<obj_{j}>"


def zone_token(k: int) -> str:
    """Placeholder of zone k (1-based)."""
    return f"<zone_{k}>"


PLACEHOLDERS: tuple[str, ...] = (
    IMG_TOKEN, ROBOT_TOKEN, *(obj_token(j) for j in range(1, MAX_OBJECTS + 1)),
    *(zone_token(k) for k in range(1, MAX_ZONES + 1)),
)
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in sorted(PLACEHOLDERS, key=len, reverse=True)) + ")")


class Prompt(str):
    """Prompt text that knows which of its spans are placeholders the builder wrote (a str: the text itself).

    `parts` alternates text and placeholders, `(text, placeholder, text, ..., text)`: odd length, each
    odd index one of PLACEHOLDERS. Only those become encoder tokens; the text parts (instructions,
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
        bad = [t for t in parts[1::2] if t not in PLACEHOLDERS]
        if len(parts) % 2 == 0 or bad:
            raise ValueError(f"prompt parts must alternate text and placeholders {list(PLACEHOLDERS)}, got {parts!r}")
        self = str.__new__(cls, "".join(parts))
        self.parts = parts
        return self

    @classmethod
    def placeholder(cls, token: str) -> Prompt:
        """A prompt that is just one placeholder (`<img>`, `<obj_j>`, `<zone_k>`, `<robot>`)."""
        return cls._of(("", token, ""))

    @classmethod
    def template(cls, text: str) -> Prompt:
        """A hand-written multimodal sentence: every placeholder text in `text` becomes a placeholder.

        For sentences a developer writes (tests, benchmarks); never pass user text through it.
        """
        return cls._of(_PLACEHOLDER_SPLIT.split(text))

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
    zones: np.ndarray | None = None  # (MAX_ZONES, OBJ_DIM) float32, when it has <zone_k> (or the builder's zone_rows)
    kind: str = "plan"  # plan | plan_full | vqa | caption | success ...
    prompt_loss: bool = True  # training: the prompt's text may take the auxiliary prompt loss
    meta: dict[str, Any] = field(default_factory=dict)  # provenance (episode, frame, task) for reports


@dataclass(frozen=True)
class PromptBuilder:
    """Writes prompts; the flags choose which observation tokens appear (PaLM-E's input ablations)."""

    use_image: bool = True  # include `<img>`
    use_state: bool = True  # include object tokens and the robot token
    entity_referral: bool = True  # "Object j is <obj_j>." (PaLM-E) rather than bare object tokens
    use_zones: bool = False  # with use_state: "Zones: <zone_1> ..." for scenes with target zones
    zone_rows: bool = False  # with use_state: examples with object tokens carry the zone rows too, tokens or not (zone_relations)
    history_window: int = 0  # planning prompts show only the last k steps so far, numbered as in the episode (0: all)
    name_objects: bool = False  # with use_state: "The red cube is <obj_j>." (names from the rows) for "Object j is <obj_j>."

    def scene(self, n_objects: int, n_zones: int = 0, names: Sequence[str] | None = None) -> Prompt:
        """The observation prefix for a scene with `n_objects` objects and `n_zones` target zones.

        With `name_objects`, `names` (the scene's object names, `envs.vocab.row_names`) label the
        object tokens, so an instruction's "the small cyan cube" meets the same words in the prompt,
        right before that cube's token.
        """
        if not 0 <= n_objects <= MAX_OBJECTS:
            raise ValueError(f"n_objects must be in [0, {MAX_OBJECTS}], got {n_objects}")
        if not 0 <= n_zones <= MAX_ZONES:
            raise ValueError(f"n_zones must be in [0, {MAX_ZONES}], got {n_zones}")
        ph = Prompt.placeholder
        parts: list[Prompt] = []
        if self.use_image:
            parts.append(Prompt("Given ", ph(IMG_TOKEN), "."))
        if self.use_state:
            if self.name_objects:
                if names is None or len(names) != n_objects:
                    got = "none" if names is None else f"{len(names)}"
                    raise ValueError(f"name_objects prompts need one name per object ({n_objects}), got {got}")
                parts += [Prompt(f"The {name} is ", ph(obj_token(j)), ".") for j, name in enumerate(names, start=1)]
            elif self.entity_referral:
                parts += [Prompt(f"Object {j} is ", ph(obj_token(j)), ".") for j in range(1, n_objects + 1)]
            elif n_objects:
                parts.append(Prompt("Objects: ", _join(" ", (ph(obj_token(j)) for j in range(1, n_objects + 1))), "."))
            if self.use_zones and n_zones:
                parts.append(Prompt("Zones: ", _join(" ", (ph(zone_token(k)) for k in range(1, n_zones + 1))), "."))
            parts.append(Prompt("Robot: ", ph(ROBOT_TOKEN), "."))
        return _join(" ", parts)

    def _head(self, n_objects: int, n_zones: int, line: str, names: Sequence[str] | None) -> Prompt:
        """The scene, then `line` (a plain-text line, e.g. `Task: <instruction>`) on its own line."""
        scene = self.scene(n_objects, n_zones, names)
        return Prompt(scene, "\n", line) if scene else Prompt(line)

    def planning(
        self, instruction: str, history: Sequence[tuple[str, str]], n_objects: int, n_zones: int = 0,
        names: Sequence[str] | None = None,
    ) -> Prompt:
        """Next-step prompt: instruction, the steps so far with their feedback, then `Step k.`.

        The instruction, steps and feedback are plain text (never placeholders), whatever they hold.
        """
        lines: list[str] = [self._head(n_objects, n_zones, f"Task: {instruction.strip()}", names)]
        first = max(0, len(history) - self.history_window) if self.history_window else 0
        for i, (step, feedback) in enumerate(history[first:], start=first + 1):
            lines.append(f"Step {i}. {step}. Result: {feedback}.")
        lines.append(f"Step {len(history) + 1}.")
        return _join("\n", lines)

    def whole_plan(self, instruction: str, n_objects: int, n_zones: int = 0, names: Sequence[str] | None = None) -> Prompt:
        """Open-loop prompt: the whole plan is the answer (PaLM-E's p1/p2 style); the instruction is plain text."""
        return Prompt(self._head(n_objects, n_zones, f"Task: {instruction.strip()}", names), "\nPlan:")

    def question(self, question: str, n_objects: int, n_zones: int = 0, names: Sequence[str] | None = None) -> Prompt:
        """VQA / captioning / success-detection prompt; the question is plain text."""
        return Prompt(self._head(n_objects, n_zones, f"Q: {question.strip()}", names), "\nA:")

    def names_of(self, object_rows: np.ndarray) -> list[str] | None:
        """The object names a prompt of this builder needs for these rows (None unless `name_objects`)."""
        return row_names(object_rows) if self.use_state and self.name_objects else None

    def example(self, prompt: str, obs: Mapping[str, Any], answer: str = "", kind: str = "plan", **meta: Any) -> Example:
        """Pair a prompt (a Prompt of this builder) with the observation arrays its placeholders need."""
        held = prompt_parts(prompt)[1::2]
        has_obj = any(t.startswith("<obj_") for t in held)
        return Example(
            prompt=prompt,
            answer=answer,
            image=np.asarray(obs["rgb"]) if self.use_image and IMG_TOKEN in held else None,
            objects=np.asarray(obs["objects"], dtype=np.float32) if self.use_state and has_obj else None,
            robot=np.asarray(obs["robot"], dtype=np.float32) if self.use_state and ROBOT_TOKEN in held else None,
            zones=np.asarray(obs["zones"], dtype=np.float32) if self._wants_zones(held, has_obj, obs) else None,
            kind=kind,
            meta=dict(meta),
        )

    def _wants_zones(self, held: Sequence[str], has_obj: bool, obs: Mapping[str, Any]) -> bool:
        if any(t.startswith("<zone_") for t in held):
            return True
        return self.zone_rows and self.use_state and has_obj and obs.get("zones") is not None

    def for_obs(self, kind: str, obs: Mapping[str, Any], **kwargs: Any) -> Example:
        """Build the prompt of `kind` ("plan", "plan_full", "vqa") for an observation, with its arrays."""
        n, z, names = count_objects(obs["objects"]), count_zones(obs), self.names_of(obs["objects"])
        answer = kwargs.pop("answer", "")
        meta = kwargs.pop("meta", {})
        if kind == "plan":
            prompt = self.planning(kwargs["instruction"], kwargs.get("history", ()), n, z, names)
        elif kind == "plan_full":
            prompt = self.whole_plan(kwargs["instruction"], n, z, names)
        else:
            prompt = self.question(kwargs["question"], n, z, names)
        return self.example(prompt, obs, answer=answer, kind=kind, **meta)


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
