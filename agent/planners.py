"""Planners behind one interface: each writes the next plan step as TEXT (the parser turns it into a skill call).

- `oracle`: privileged; the task's oracle plan from the current state, first step (upper bound, data).
- `palme`: the PalmE model from a checkpoint; closed-loop next-step mode, or open-loop whole-plan
  mode (PaLM-E's TAMP p1/p2: the plan is written once from the first observation); optional
  grammar-constrained decoding to the steps valid in the scene as its rows show it (`PlanContext.valid_steps`).
- `text_only`: the same model class trained without image/state tokens (PaLM-E's "LLM only").
- `random`: uniform over the valid steps of the scene (a floor for every success rate).
- `human`: a person types each step (teaching by hand); every line is checked by the parser first.
"""

from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from agent.model.config import PalmEConfig, PromptConfig
from agent.parser import PlanError, PlanParser, SceneContext, valid_steps
from agent.prompts import Example, PromptBuilder, is_yes, restate_question, split_whole_plan, success_question
from envs.catalogue import descs_from_rows
from envs.vocab import render_step

if TYPE_CHECKING:
    from envs.base import TabletopEnv

DEFAULT_CHECKPOINT = "checkpoints/palme-tiny"  # used by `palme` / `text_only` when no checkpoint is given


@dataclass
class PlanContext:
    """What a planner sees at a decision point."""

    env: TabletopEnv  # unwrapped; privileged planners read its state, model planners must not
    obs: dict[str, Any]  # the observation of this decision point (rgb only when the planner needs it)
    instruction: str
    history: list[tuple[str, str]]  # (step text, feedback) of the steps so far
    scene: SceneContext  # objects, names, held object, zones of the simulator: what the step runs on
    example: Example | None = None  # the planning prompt with its arrays, when the planner has a PromptBuilder
    step_index: int = 0  # 0-based index of the step being planned
    # the scene as the planner's rows show it (agent.parser.planning_scene; None: `scene`): what a planner that is
    # not `privileged` names objects in, and what its written step is read against (agent.grounding)
    seen: SceneContext | None = None

    def valid_steps(self) -> list[str]:
        """The steps a planner may choose among here (constrained decoding, the random baseline): those valid in
        the scene it perceives (`seen`; with state=privileged the simulator's `scene`), not in the simulator's."""
        return valid_steps(self.seen if self.seen is not None else self.scene)


MODES = ("closed", "open")  # model planners: next step after each skill | whole plan once (PaLM-E TAMP p1/p2)


@dataclass
class PlannerOptions:
    """How a planner is built: the planner keys of palme-run, palme-eval and palme-collect, declared once.

    The three CLI schemas (agent.config.RunConfig, agent.evaluate.EvalConfig,
    training.collect.CollectConfig) extend this dataclass, so every key below has one name, one type
    and one default on all three command lines (`constrained=false`, `checkpoint=DIR`, ...); the
    planner's name (`planner=`) stays in each schema, whose default differs by purpose.
    `planner_from_options` hands the options to the planner class, which reads the fields it needs.
    Raises ValueError (naming the key) for an unknown mode or a token budget below 1.
    """

    checkpoint: str | None = None  # model planners: checkpoint folder; None (or ""): the shipped checkpoints/palme-tiny
    mode: str = "closed"  # model planners: closed (next step after each skill) | open (whole plan once)
    constrained: bool = True  # model planners: decode only the steps valid in the scene its rows show (state=estimated: what perception sees; palme-tiny: +6 points)
    check_done: bool = False  # model planners: before each step, the model's own success detection may stop the episode
    max_new_tokens: int = 48  # model planners: tokens per generated step
    max_plan_tokens: int = 256  # model planners, mode=open: tokens of the whole plan
    device: str = "cpu"  # model planners: torch device (cpu | cuda | cuda:N)
    planner_seed: int = 0  # random planner: generator seed (palme-eval combines it with each episode's seed)
    blank_frames: bool = False  # the camera is blank for the model and for perception: a model planner sees an all-zero frame (same shape) in place of each rendered one, and state=estimated / skills_use=estimated read a blank frame (no objects); privileged and noisy rows, success and the oracle stay on the simulator (camera reliance: benchmarks/camera_reliance.py)

    def __post_init__(self) -> None:
        if self.checkpoint == "":  # palme-collect's former spelling of "the shipped checkpoint"
            self.checkpoint = None
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.max_new_tokens < 1 or self.max_plan_tokens < 1:
            raise ValueError(f"max_new_tokens and max_plan_tokens must be >= 1, got {self.max_new_tokens} "
                             f"and {self.max_plan_tokens}")

    def planner_options(self) -> PlannerOptions:
        """The planner options alone: a CLI config (a subclass) reduced to a plain PlannerOptions (plain data)."""
        return PlannerOptions(**{f.name: getattr(self, f.name) for f in fields(PlannerOptions)})


class Planner(ABC):
    """Writes the next plan step as text. `prompts` is the PromptBuilder the agent uses for it (None: no prompt)."""

    name: ClassVar[str]
    prompts: PromptBuilder | None = None
    # Whether the planner reads the simulator's scene (`ctx.env`, `ctx.scene`) and names objects as it does: its
    # steps are read against the simulator's scene whatever the state source. Otherwise (a model, the random
    # baseline) it names what its rows show, and its steps are read against that scene (`ctx.seen`; the same scene
    # with state=privileged) and then carried onto the simulator's objects (`agent.grounding`).
    privileged: ClassVar[bool] = False

    @property
    def needs_image(self) -> bool:
        """Whether the agent must render a camera frame at each decision point for this planner."""
        return self.prompts is not None and self.prompts.reads("rgb")

    def reset(self, env: TabletopEnv, instruction: str) -> None:
        """Start a new instruction on `env` (called before the first `next_step`)."""

    def words(self, obs: dict[str, Any], instruction: str) -> str:
        """The instruction as this planner's prompts hold it at a decision point with observation `obs`
        (default: as given; a PalmE with `prompt.restate`: its canonical restatement, written once per episode)."""
        return instruction

    @abstractmethod
    def next_step(self, ctx: PlanContext) -> str:
        """The next step as text (e.g. "pick up the red cube", "done")."""

    @classmethod
    def from_options(cls, opts: PlannerOptions) -> Planner:
        """Build from CLI options (planners without options ignore them)."""
        return cls()


PLANNERS: dict[str, type[Planner]] = {}


def register_planner(cls: type[Planner]) -> type[Planner]:
    """Class decorator: make a planner available to `make_planner` under its name."""
    if cls.name in PLANNERS:
        raise ValueError(f"planner {cls.name!r} is already registered")
    PLANNERS[cls.name] = cls
    return cls


def planner_names() -> list[str]:
    """Registered planner names, sorted."""
    return sorted(PLANNERS)


def _planner_class(name: str) -> type[Planner]:
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; known planners: {planner_names()}")
    return PLANNERS[name]


def make_planner(name: str, **kwargs: Any) -> Planner:
    """Instantiate a registered planner; an unknown name lists the known ones."""
    return _planner_class(name)(**kwargs)


def planner_from_options(name: str, opts: PlannerOptions) -> Planner:
    """Instantiate a registered planner from CLI options."""
    return _planner_class(name).from_options(opts)


@register_planner
class OraclePlanner(Planner):
    """Privileged: the task's oracle plan from the current state; its first step as text, or "done"."""

    name = "oracle"
    privileged = True

    def next_step(self, ctx: PlanContext) -> str:
        env = ctx.env
        if env.goal is None:  # an instruction the task cannot parse: nothing to plan towards
            return "done"
        plan = env.task.oracle_plan(env, env.goal)
        return render_step(plan[0], env.names) if plan else "done"


@register_planner
class RandomValidPlanner(Planner):
    """Baseline: a step drawn uniformly from the steps valid in the scene it perceives (`PlanContext.valid_steps`,
    including "done")."""

    name = "random"

    def __init__(self, rng: np.random.Generator | None = None, seed: int = 0) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    @classmethod
    def from_options(cls, opts: PlannerOptions) -> Planner:
        return cls(seed=opts.planner_seed)

    def next_step(self, ctx: PlanContext) -> str:
        steps = ctx.valid_steps()
        return steps[int(self.rng.integers(len(steps)))]


@register_planner
class HumanPlanner(Planner):
    """A person types each step: the instruction and the scene's objects are shown once per episode,
    then one line is read per step and checked by the parser against the current scene.

    An invalid line prints the parser's reason and asks again; `?` or `help` lists the valid steps of
    the scene, numbered, and a number (1..N) picks that step; an empty line or end of input means "done".
    `stdin` (anything with `readline()`) and `stdout` (anything with `write()`) default to sys.stdin /
    sys.stdout, looked up at each use. All shown text goes through `agent.loop.printable`.
    """

    name = "human"
    privileged = True  # shown the simulator's objects, its lines parsed against them (as before issue #20)

    def __init__(self, stdin: Any = None, stdout: Any = None) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._intro = True

    def reset(self, env: TabletopEnv, instruction: str) -> None:
        self._intro = True

    def _say(self, text: str = "", end: str = "\n") -> None:
        out = self.stdout if self.stdout is not None else sys.stdout
        out.write(text + end)
        out.flush()

    def next_step(self, ctx: PlanContext) -> str:
        from agent.loop import printable  # agent.loop imports this module

        if self._intro:
            self._intro = False
            self._say(f"instruction: {printable(ctx.instruction)}")
            self._say(f"objects: {printable(', '.join(ctx.scene.names)) or 'none'}")
            self._say("type one step per line; ? lists the valid steps (pick one by number); empty line or EOF: done")
        parser = PlanParser(ctx.scene)
        steps = valid_steps(ctx.scene)
        while True:
            self._say(f"step {ctx.step_index + 1}> ", end="")
            stream = self.stdin if self.stdin is not None else sys.stdin
            raw = stream.readline()
            line = raw.strip()
            if not line:
                if not raw:
                    self._say()  # end of input: finish the prompt line
                return "done"
            if line.lower() in ("?", "help"):
                for i, text in enumerate(steps, 1):
                    self._say(f"  {i}. {printable(text)}")
                continue
            if line.isascii() and line.isdigit():
                k = int(line)
                if 1 <= k <= len(steps):
                    return steps[k - 1]
                self._say(f"no step number {k}: pick 1..{len(steps)} (? lists them)")
                continue
            out = parser.parse(line)
            if isinstance(out, PlanError):
                self._say(f"not a valid step: {printable(out.reason)} (? lists the valid steps)")
                continue
            return render_step(out, ctx.scene.names)  # the canonical text: what a recorded episode trains on


_CUT = re.compile(r"\bresult\s*:|\bstep\s*\d+\s*[.:)]", re.IGNORECASE)


def first_step(text: str) -> str:
    """The first step of generated text: up to a newline, a `Result:` or the next `Step k.`."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    m = _CUT.search(line, 1)
    return (line[: m.start()] if m else line).strip().rstrip(".").strip()


@register_planner
class PalmEPlanner(Planner):
    """The PalmE model as a planner: closed-loop next step, or open-loop whole plan (PaLM-E TAMP p1/p2).

    The keyword defaults are PlannerOptions' (tests/test_planner_options.py keeps them equal); `model`
    replaces loading `checkpoint`, `prompts` replaces the model's own PromptBuilder.
    """

    name = "palme"
    text_only: ClassVar[bool] = False

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        mode: str = "closed",
        constrained: bool = True,
        max_new_tokens: int = 48,
        device: str = "cpu",
        max_plan_tokens: int = 256,
        model: Any = None,
        prompts: PromptBuilder | None = None,
        check_done: bool = False,
        blank_frames: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'closed' (next step) or 'open' (whole plan), got {mode!r}")
        self.model = model if model is not None else _load_model(checkpoint, device)
        if self.text_only:
            _check_text_only(self.model, "the given model" if model is not None else f"checkpoint {model_dir(checkpoint)}")
        self.mode = mode
        self.constrained = constrained
        self.check_done = check_done
        self.blank_frames = blank_frames
        self.max_new_tokens = max_new_tokens
        self.max_plan_tokens = max_plan_tokens
        self.prompts = prompts or self._prompt_builder()
        self._plan: list[str] | None = None
        self._instruction = ""

    @classmethod
    def from_options(cls, opts: PlannerOptions) -> Planner:
        return cls(checkpoint=opts.checkpoint, mode=opts.mode, constrained=opts.constrained,
                   max_new_tokens=opts.max_new_tokens, device=opts.device, max_plan_tokens=opts.max_plan_tokens,
                   check_done=opts.check_done, blank_frames=opts.blank_frames)

    def _prompt_builder(self) -> PromptBuilder:
        """The prompt flags the model was trained with (text-only planners drop image and state)."""
        if self.text_only:
            return PromptBuilder(PromptConfig(tokens=[]))
        own = getattr(self.model, "prompt_builder", None)
        if isinstance(own, PromptBuilder):
            return own
        cfg = getattr(self.model, "config", None)
        if isinstance(cfg, PalmEConfig):
            from agent.model import prompt_builder

            return prompt_builder(cfg)
        return PromptBuilder()

    def reset(self, env: TabletopEnv, instruction: str) -> None:
        self._plan = None
        self._instruction = instruction
        self._task = env.task
        self._words: str | None = None

    def words(self, obs: dict[str, Any], instruction: str) -> str:
        """With `prompt.restate`: the model restates the instruction once per episode ("Restate the task.") and the
        prompts hold the restatement when the task's parser reads a goal in it over the objects of `obs`'s rows
        (else the given words); without it, the given words."""
        assert self.prompts is not None
        if not self.prompts.config.restate:
            return instruction
        if self._words is None:
            question = self.prompts.for_obs("vqa", obs, question=restate_question(self.prompts.task(instruction)))
            text = self.model.generate([self.seen(question)], max_new_tokens=self.max_plan_tokens)[0].strip()
            task = getattr(self, "_task", None)
            readable = bool(text) and task is not None and \
                task.parse_instruction(text, descs_from_rows(obs["objects"])) is not None
            self._words = text if readable else instruction
        return self._words

    def next_step(self, ctx: PlanContext) -> str:
        if self.mode == "open":
            return self._open_loop_step(ctx)
        if ctx.example is None:
            raise ValueError("the closed-loop PalmE planner needs the planning prompt (ctx.example)")
        allowed = [ctx.valid_steps()] if self.constrained else None
        if self.check_done and ctx.history and self.task_done(ctx):
            return "done"
        example = self.seen(ctx.example)
        step = first_step(self.model.generate([example], max_new_tokens=self.max_new_tokens, allowed=allowed)[0])
        if self.check_done and step.strip().lower() == "done":
            # The success detector just said "not yet": ask again among the valid steps other than done (if any).
            others = [s for s in ctx.valid_steps() if s != "done"]
            if not others:
                return step
            step = first_step(self.model.generate([example], max_new_tokens=self.max_new_tokens,
                                                  allowed=[others])[0])
        return step

    def seen(self, example: Example) -> Example:
        """What the model is given for `example`: the example itself, or with `blank_frames` a copy whose
        camera frame is all zeros (same (H, W, 3) shape and uint8 dtype; the rest of the input unchanged)."""
        if not self.blank_frames or example.image is None:
            return example
        return replace(example, image=np.zeros_like(example.image))

    def task_done(self, ctx: PlanContext) -> bool:
        """PaLM-E's success detection: the model answers "Was the task completed?" about this observation."""
        assert self.prompts is not None
        question = self.prompts.for_obs("vqa", ctx.obs, question=success_question(self.prompts.task(ctx.instruction)))
        return is_yes(self.model.generate([self.seen(question)], max_new_tokens=4)[0])

    def _open_loop_step(self, ctx: PlanContext) -> str:
        """The whole plan is written once, from the first observation; then its steps are returned in order."""
        if self._plan is None:
            assert self.prompts is not None
            example = self.prompts.for_obs("plan_full", ctx.obs, instruction=ctx.instruction)
            text = self.model.generate([self.seen(example)], max_new_tokens=self.max_plan_tokens)[0]
            self._plan = split_whole_plan(text)
        return self._plan.pop(0) if self._plan else "done"


@register_planner
class TextOnlyPlanner(PalmEPlanner):
    """Baseline: the same model class trained on text alone (no image, no state tokens): PaLM-E's "LLM only"."""

    name = "text_only"
    text_only = True


def _check_text_only(model: Any, where: str) -> None:
    """Refuse, for planner=text_only, a model that reads observation tokens (it was not trained on text alone).

    Raises ValueError (one line naming `where` the model came from and the token types it reads) when
    the model's config lists any token type in `model.prompt.tokens`; a model without a PalmE config passes.
    """
    cfg = getattr(model, "config", None)
    tokens = list(cfg.prompt.tokens) if isinstance(cfg, PalmEConfig) else []
    if tokens:
        raise ValueError(f"{where} reads {', '.join(tokens)} tokens (model.prompt.tokens={tokens}); "
                         f"planner=text_only needs a model trained with model.prompt.tokens=[] (text alone; "
                         f"none is shipped: palme-train model.prompt.tokens=[] ...), or use planner=palme")


def model_dir(checkpoint: str | Path | None) -> Path:
    """The PalmE model folder of a checkpoint argument: the folder itself, its `pretrained_model/`, or a run's last one.

    None means DEFAULT_CHECKPOINT, looked up in the working directory and then in the repository.
    Raises ValueError (one line naming the path) for a file, a folder holding no model, a missing path.
    """
    if checkpoint is None:
        repo = Path(__file__).resolve().parents[1]
        bases = [Path(DEFAULT_CHECKPOINT), repo / DEFAULT_CHECKPOINT]
    else:
        bases = [Path(checkpoint)]
    for base in bases:
        for cand in (base, base / "pretrained_model", base / "checkpoints" / "last" / "pretrained_model"):
            if (cand / "config.json").is_file():
                return cand
    shown = str(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if checkpoint is not None and Path(checkpoint).is_file():
        raise ValueError(f"checkpoint {shown!r} is a file; a PalmE checkpoint is a folder (config.json, "
                         f"model.safetensors, tokenizer files); pass checkpoint=PATH")
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise ValueError(f"checkpoint folder {shown!r} holds no PalmE model (config.json, directly, in "
                         f"pretrained_model/ or in checkpoints/last/pretrained_model/); pass checkpoint=PATH")
    raise ValueError(f"checkpoint folder {shown!r} does not exist or holds no PalmE model (config.json, directly, "
                     f"in pretrained_model/ or in checkpoints/last/pretrained_model/); pass checkpoint=PATH")


def _load_model(checkpoint: str | Path | None, device: str) -> Any:
    """PalmE.from_pretrained on a checkpoint folder (DEFAULT_CHECKPOINT when None), moved to `device`."""
    path = model_dir(checkpoint)
    from agent.model import PalmE  # imported here: torch and transformers load only for model planners

    return PalmE.from_pretrained(path).to(device).eval()
