"""Schema of `palme-train`: typed dataclasses in hydra's ConfigStore (unknown or mistyped keys fail at start).

Groups: `model` (presets in configs/model/), `data`, `train` (optimisation), `eval` (evaluation during
training), `experiment` (whole runs in configs/experiment/, e.g. `experiment=palme_tiny`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.model.config import PalmEConfig

STAGES = ("full", "frozen_llm", "projector_only", "lora")
PRECISIONS = ("auto", "fp32", "bf16")
NAN_POLICIES = ("stop", "skip")

# Keys that may change between a run and its resumption without changing what is computed.
RESUME_FREE_KEYS = (
    "resume", "output_dir", "device", "num_threads", "progress", "log_every", "save_every",
    "keep_checkpoints", "eval.", "train.steps", "run_name", "stop_after", "init_from",
)


@dataclass
class DataConfig:
    """Where examples come from and how they are mixed."""

    dirs: list[str] = field(default_factory=list)  # demonstration-log folders written by palme-collect
    mixture: str = "full"  # mixture preset (training.examples.MIXTURES): full | planning_only
    weights: dict[str, float] = field(default_factory=dict)  # weight per example source; replaces the preset when given
    include_failed: bool = False  # also build planning/VQA examples from episodes whose task failed
    max_plan_examples: int = 0  # keep at most this many planning examples (PaLM-E's 1% setting: 320); 0 = all
    max_episodes: int = 0  # use at most this many training episodes per folder; 0 = all
    val_fraction: float = 0.1  # fraction of episodes held out for evaluation during training (never trained on)
    skip_invalid: bool = False  # skip episodes that fail validation (and say how many) instead of refusing
    validate_images: bool = True  # decode every image when validating the folders before training

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"data.weights must be >= 0, got {bad}")


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
    stage: str = "full"  # which parameters train: full | frozen_llm | projector_only | lora (applies to init_from too)
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
class TrainEvalConfig:
    """Evaluation during training (rank 0; other ranks wait)."""

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
    run_name: str = "palme"  # the run folder is outputs/train/<run_name> unless output_dir is given
    output_dir: str = ""  # run folder (checkpoints/, tb/, eval history); "" = outputs/train/<run_name>
    resume: bool = False  # continue the run in output_dir from checkpoints/last (same config required)
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


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value} (lists stay values)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ in a way that changes the computation (RESUME_FREE_KEYS excluded)."""
    a, b = flatten(saved), flatten(current)
    keys = sorted(set(a) | set(b))

    def free(k: str) -> bool:
        return any(k == f or (f.endswith(".") and k.startswith(f)) for f in RESUME_FREE_KEYS)

    return [f"{k}: saved {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}"
            for k in keys if not free(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]
