"""Schema of `palme-train`: typed dataclasses in hydra's ConfigStore (unknown or mistyped keys fail at start).

Groups: `model` (presets in configs/model/), `data`, `train` (optimisation), `eval` (evaluation during
training), `experiment` (whole runs in configs/experiment/, e.g. `experiment=palme_tiny`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agent.model import STAGES, PalmEConfig
from agent.state_options import StateOptions

PRECISIONS = ("auto", "fp32", "bf16")
DATA_STATES = ("privileged", "observed")  # data.state: which logged object / zone rows the model reads
NAN_POLICIES = ("stop", "skip")

# How each key may change when a run is resumed (`resume=true`). Every key of the schema has exactly one
# rule (tests/test_train_safety.py fails on a key without one); a group name ("model") covers its keys.
MUST_MATCH = "must match"  # changes what is computed: a resume with another value is refused, naming the key
APPLIED = "may change, applied"  # takes effect from the resumed update on; later checkpoints record the new value
IRRELEVANT = "may change, irrelevant"  # names or locates the run, or is the resume switch itself

RESUME_RULES: dict[str, str] = {
    # the model definition: on resume the checkpoint's config.json is what is built, so no value may differ
    "model": MUST_MATCH,
    # the examples and their mixture (the data stream's position is only valid for the same data)
    "data.dirs": MUST_MATCH, "data.mixture": MUST_MATCH, "data.weights": MUST_MATCH,
    "data.include_failed": MUST_MATCH, "data.max_plan_examples": MUST_MATCH, "data.max_episodes": MUST_MATCH,
    "data.rephrase": MUST_MATCH, "data.state": MUST_MATCH, "data.task_weights": MUST_MATCH,
    "data.val_fraction": MUST_MATCH, "data.skip_invalid": MUST_MATCH, "data.validate_images": MUST_MATCH,
    # the length of the run: the learning-rate schedule is stretched (or shrunk) to the new end, so the LR of
    # every later update is the one a run started with this value gives it (see training.optim.set_total_steps)
    "train.steps": APPLIED,
    # the updates themselves (the optimizer's hyper-parameters, the schedule's shape, the loss, which
    # parameters train, the batch and how it is split, the arithmetic)
    "train.batch_size": MUST_MATCH, "train.grad_accum": MUST_MATCH, "train.group_by_length": MUST_MATCH,
    "train.lr": MUST_MATCH, "train.min_lr_ratio": MUST_MATCH, "train.warmup_steps": MUST_MATCH,
    "train.weight_decay": MUST_MATCH, "train.betas": MUST_MATCH, "train.eps": MUST_MATCH,
    "train.prompt_loss": MUST_MATCH, "train.grad_clip": MUST_MATCH, "train.stage": MUST_MATCH,
    "train.precision": MUST_MATCH,
    # what happens on a non-finite loss from now on (what the NaN message suggests changing before resuming)
    "train.nan_policy": APPLIED, "train.max_skipped": APPLIED,
    # evaluation during training: read-only for the training state (the RNG is restored after it), so the
    # evaluations from the resumed update on follow the new values
    "eval.every": APPLIED, "eval.final": APPLIED, "eval.examples": APPLIED, "eval.batch_size": APPLIED,
    "eval.samples": APPLIED, "eval.closed_loop_every": APPLIED, "eval.episodes": APPLIED, "eval.tasks": APPLIED,
    "eval.split": APPLIED, "eval.max_new_tokens": APPLIED, "eval.constrained": APPLIED,
    "eval.max_long_tokens": APPLIED, "eval.state": APPLIED, "eval.state_noise_m": APPLIED,
    "eval.skills_use": APPLIED, "eval.block_set": APPLIED,
    # every random draw of training (initialisation, data order, dropout)
    "seed": MUST_MATCH,
    # where the weights came from: on resume they come from the checkpoint, so another value would be
    # silently ignored, and later checkpoints would record a wrong origin
    "init_from": MUST_MATCH,
    # bookkeeping of this invocation, applied from the resumed update on
    "device": APPLIED, "num_threads": APPLIED, "save_every": APPLIED, "keep_checkpoints": APPLIED,
    "log_every": APPLIED, "progress": APPLIED, "stop_after": APPLIED,
    # the run folder's name and place (a moved folder resumes), and the switch itself
    "run_name": IRRELEVANT, "output_dir": IRRELEVANT, "resume": IRRELEVANT,
}


@dataclass
class DataConfig:
    """Where examples come from and how they are mixed."""

    dirs: list[str] = field(default_factory=list)  # demonstration-log folders written by palme-collect
    mixture: str = "full"  # mixture preset (training.examples.MIXTURES): full | planning_only
    weights: dict[str, float] = field(default_factory=dict)  # weight per example source; replaces the preset when given
    task_weights: dict[str, float] = field(default_factory=dict)  # weight per task inside every source (1.0 when absent, 0 drops it): a task's share of a source's draws is weight x its example count, normalised (training.batches)
    include_failed: bool = False  # also build planning/VQA examples from episodes whose task failed
    rephrase: int = 0  # instruction augmentation: prompts say each goal in its logged words or K other training phrasings
    # Which logged rows the model reads. `privileged`: the simulator's (observation.environment_state). `observed`: the
    # rows the planner saw when the folder was collected with state=estimated|noisy (observation.environment_state
    # .observed), so the model learns from the state a robot would have: every example's object and zone arrays (what
    # the <obj_j> tokens and the object features, words / relations / zones, read), the number of objects its prompt
    # introduces, which object a question's referral ("What colour is obj 2?") names (the estimated row of the same
    # cube, found by position; a cube without one is not asked about), and the state normalisation. Labels stay as
    # logged: plan steps are the oracle's, and VQA / caption / success answers come from the simulator's rows, since
    # they are the truth about the scene (only the model's inputs change). A folder without observed rows is refused.
    # The closed loop during training reads the rows eval.state says (eval.state=estimated|noisy for such a model).
    state: str = "privileged"  # privileged | observed: the object/zone rows examples carry (observed: needs logs collected with state=estimated|noisy)
    max_plan_examples: int = 0  # keep at most this many planning examples (PaLM-E's 1% setting: 320); 0 = all
    max_episodes: int = 0  # use at most this many training episodes per folder; 0 = all
    val_fraction: float = 0.1  # fraction of episodes held out for evaluation during training (never trained on)
    skip_invalid: bool = False  # skip episodes that fail validation (and say how many) instead of refusing
    validate_images: bool = True  # decode every image when validating the folders before training

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.state not in DATA_STATES:
            raise ValueError(f"data.state must be one of {list(DATA_STATES)}, got {self.state!r}")
        if self.rephrase < 0:
            raise ValueError(f"data.rephrase must be >= 0 (phrasings per episode), got {self.rephrase}")
        for key, given in (("weights", self.weights), ("task_weights", self.task_weights)):
            bad = {k: v for k, v in given.items() if v < 0}
            if bad:
                raise ValueError(f"data.{key} must be >= 0, got {bad}")


@dataclass
class OptimConfig:
    """Optimisation: AdamW, warmup + cosine, clipping, precision, accumulation, the NaN guard."""

    steps: int = 1000  # optimizer updates
    batch_size: int = 32  # global batch: examples per update over all processes and accumulation steps
    grad_accum: int = 1  # micro-batches per update and process (batch_size / (grad_accum * world) each)
    group_by_length: bool = False  # split each global batch into micro-batches of similar length (less padding)
    lr: float = 1e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # final LR of the cosine, as a fraction of lr
    warmup_steps: int = 50  # linear warmup from 0 to lr
    weight_decay: float = 0.01  # AdamW decoupled weight decay on matrices (not biases / norms)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    prompt_loss: float = 0.0  # auxiliary LM loss on the prompts' text tokens, per answer token (0 = answers only)
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    stage: str = "full"  # which parameters train: full | frozen_llm | projector_only | lora (PalmE.set_stage; the only stage key)
    precision: str = "auto"  # auto (bf16 autocast on a GPU that supports it, fp32 on CPU) | fp32 | bf16
    nan_policy: str = "stop"  # a non-finite loss or gradient: stop with a message, or skip the update
    max_skipped: int = 20  # nan_policy=skip: stop after this many skipped updates in a row

    def __post_init__(self) -> None:
        checks = [
            (self.stage in STAGES, f"train.stage must be one of {list(STAGES)}, got {self.stage!r}"),
            (self.precision in PRECISIONS, f"train.precision must be one of {list(PRECISIONS)}, got {self.precision!r}"),
            (self.nan_policy in NAN_POLICIES, f"train.nan_policy must be one of {list(NAN_POLICIES)}, got {self.nan_policy!r}"),
            (self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
             f"need train.steps, batch_size, grad_accum >= 1; got {self.steps}, {self.batch_size}, {self.grad_accum}"),
            (self.lr > 0 and self.warmup_steps >= 0 and 0 <= self.min_lr_ratio <= 1,
             f"need lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1; got {self.lr}, {self.warmup_steps}, {self.min_lr_ratio}"),
            (len(self.betas) == 2, f"train.betas needs 2 values, got {list(self.betas)}"),
            (self.prompt_loss >= 0, f"train.prompt_loss must be >= 0, got {self.prompt_loss}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


@dataclass
class TrainEvalConfig(StateOptions):
    """Evaluation during training (rank 0; other ranks wait). The closed loop takes palme-eval's state keys
    (`agent.state_options.StateOptions`: state, state_noise_m, skills_use, block_set; block_set reaches the push
    tasks only): a model trained with data.state=observed is evaluated with eval.state=estimated|noisy."""

    every: int = 200  # planning exact match + VQA accuracy on held-out examples every N updates; 0 = off
    final: bool = True  # also evaluate (held-out, and closed loop when episodes > 0) after the last update
    examples: int = 64  # held-out examples per kind (plan, vqa) per evaluation
    batch_size: int = 16  # generation batch
    samples: int = 4  # sample generations written to TensorBoard as text
    closed_loop_every: int = 0  # closed-loop success every K updates; 0 = only at the end (eval.final, episodes > 0)
    episodes: int = 0  # closed-loop episodes per task; 0 = no closed-loop evaluation
    tasks: list[str] = field(default_factory=list)  # "world/task" to run; [] = the tasks found in the data
    split: str = "L1"  # generalisation split the closed-loop seeds come from (test seeds, never trained on)
    max_new_tokens: int = 48  # generation length of a step or a short answer
    constrained: bool = True  # closed loop: decode only the steps valid in the scene (as palme-eval does by default)
    max_long_tokens: int = 192  # generation length of whole plans and captions


@dataclass
class TrainConfig:
    """`palme-train`: train or fine-tune a PalmE planner on demonstration logs."""

    model: PalmEConfig = field(default_factory=PalmEConfig)  # preset: model=palme-tiny | palme-smollm2 (configs/model/); ignored with init_from (the checkpoint's wins)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    seed: int = 0  # seeds model init, data order and every random draw of training
    run_name: str = "palme"  # names the run folder, outputs/train/<run_name>, unless output_dir or hydra.run.dir is given
    output_dir: str = ""  # run folder (checkpoints/, tb/, train.log, summaries); hydra.run.dir=DIR sets it; "" = outputs/train/<run_name>
    resume: bool = False  # continue the run in output_dir from checkpoints/last (config per RESUME_RULES)
    init_from: str = ""  # fine-tune: start from this checkpoint's weights (fresh optimizer and schedule)
    device: str = "auto"  # auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda
    num_threads: int = 0  # torch intra-op threads per process; 0 = torch's default
    save_every: int = 500  # checkpoint every N updates (and always at the end)
    keep_checkpoints: int = 0  # keep only the newest N checkpoints; 0 = all
    log_every: int = 10  # TensorBoard scalars every N updates
    progress: bool = True  # tqdm progress bar (rank 0)
    stop_after: int = 0  # end this invocation after N updates (checkpointing first); resume=true goes on; 0 = off


def register_configs() -> None:
    """Put the schemas into hydra's ConfigStore (configs/train.yaml builds on `train_schema`)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)


def schema_keys(node: Any = None, prefix: str = "") -> list[str]:
    """Every leaf key of the schema, dotted ("train.lr", "model.llm_hidden"), in declaration order."""
    node = TrainConfig() if node is None else node
    out: list[str] = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        out += schema_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return out


def resume_rule(key: str) -> str:
    """The RESUME_RULES entry of a dotted key (its own, else its group's); KeyError for a key without one."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        rule = RESUME_RULES.get(".".join(parts[:n]))
        if rule is not None:
            return rule
    raise KeyError(f"{key} has no entry in training.config.RESUME_RULES")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value} (lists stay values)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


_ABSENT = "<absent>"


def _lookup(d: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return _ABSENT
        d = d[part]
    return d


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The "must match" keys (RESUME_RULES) whose values differ, as "key: saved X, now Y", sorted by key.

    Values are compared whole per schema key (a dict such as data.weights is one value); a saved key
    the schema does not know (a config of another code version) must match too; a schema key the saved
    config lacks (added after the run was saved) counts as its default, which is what that run computed.
    """
    keys = schema_keys()
    unknown = [k for k in flatten(saved) if not any(k == s or k.startswith(s + ".") for s in keys)]

    def must_match(k: str) -> bool:
        try:
            return resume_rule(k) == MUST_MATCH
        except KeyError:
            return True

    defaults = dataclasses.asdict(TrainConfig())

    def value(config: dict[str, Any], k: str) -> Any:  # a key added after a run was saved: it computed the default
        v = _lookup(config, k)
        return _lookup(defaults, k) if v == _ABSENT and k in keys else v

    return [f"{k}: saved {value(saved, k)!r}, now {value(current, k)!r}"
            for k in sorted({*keys, *unknown}) if must_match(k) and value(saved, k) != value(current, k)]
