"""`palme-train`: train or fine-tune the PalmE planner on demonstration logs, with one linear loop.

    palme-train data.dirs=[data/stack] run_name=stack               # model=palme-tiny, stage=full
    palme-train experiment=palme_tiny                               # the shipped model's recipe
    palme-train run_name=stack resume=true                          # continue outputs/train/stack
    palme-train init_from=checkpoints/palme-tiny data.dirs=[data/mine] run_name=mine   # fine-tune
    torchrun --nproc_per_node 2 -m training.train ...               # DDP: gloo on CPU, NCCL on GPU

The run folder holds `checkpoints/<step>/{pretrained_model,training_state}` + `last` (LeRobot's
layout; `pretrained_model/` is what palme-run / palme-eval load), `tb/` (TensorBoard) and
`eval_history.jsonl` (one line per evaluation during training).

Resuming (`resume=true`): every config key has a rule in `training.config.RESUME_RULES`. A key that
changes what is computed (the model, the data, the optimisation, the seed, init_from) must have its
saved value, else the resume is refused naming the keys; bookkeeping and evaluation keys may change
and apply from the resumed update on. `train.steps` may grow ("train 6 more updates"): the
learning-rate schedule is stretched to end at the new value, so the later updates get the rates a run
started with it gives them; a `train.steps` at or below the updates done is refused.

Everything is checked before the first update, in the order of `setup`: the output locations (run
folder, checkpoints/, tb/: writable, or creatable, with nothing created), the init_from / resumed
checkpoint (every file loaded and checked before any data is read), then the data. A refusal is one
line on stderr (`palme-train: error: ...`, exit status 2, also for hydra's and OmegaConf's errors on
the command line), and a refused start leaves no run folder behind; bugs keep their tracebacks.

Equivalence of DDP and accumulation with one process: every update minimises the mean loss over
all answer tokens of the global batch. Each micro-batch's mean loss is weighted by its share of
the global token count (an all-reduced count), so how the batch is split over processes and
micro-batches does not change the gradient.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent.model import IGNORE_INDEX, PalmEConfig
from training import checkpoint as ck
from training import distributed as dd
from training.batches import MixtureStream, length_groups
from training.config import TrainConfig, flatten, register_configs
from training.data import TrainData, load_data
from training.evaluation import closed_loop_success, heldout_metrics
from training.optim import make_optimizer, make_scheduler, set_total_steps
from training.run_folder import (  # noqa: F401 - re-exported: tests and callers import them from training.train
    RUN_FILES,
    TB_DIR,
    check_eval_names,
    check_outputs,
    check_run_folder,
    config_dict,
    follow_hydra_run_dir,
    run_dir,
)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient (nan_policy=stop), or a checkpoint would hold one."""


@dataclass
class StepStats:
    """What one update did."""

    loss: float  # mean loss over the global batch's answer tokens (nan when skipped)
    grad_norm: float
    tokens: int  # tokens processed (prompt + answer, all processes)
    skipped: bool


# ---------------------------------------------------------------------------------------------
# setup


def model_config_of(cfg: TrainConfig, init: Path | None) -> PalmEConfig:
    """The model definition: the model folder's (resume / init_from), else the preset seeded with `seed`.

    A model folder's config.json is checked like `PalmE.from_pretrained` checks it (ValueError naming
    the file and key), before any data is read.
    """
    if init is not None:
        from agent.model.checkpoint_checks import read_checkpoint_config

        return read_checkpoint_config(init)[1]
    return PalmEConfig.from_dict({**cfg.model.to_dict(), "seed": cfg.seed})


def build_model(cfg: TrainConfig, data: TrainData | None, init: Path | nn.Module | None, log) -> nn.Module:
    """A PalmE from a checkpoint (resume / init_from: its model folder, or the PalmE already loaded from it), or
    fresh from the preset with a tokenizer trained on the data; set to `train.stage`."""
    from agent.model import PalmE

    if isinstance(init, nn.Module):
        model = init
    elif init is not None:
        model = PalmE.from_pretrained(init)
    else:
        assert data is not None, "a fresh model needs the data (its tokenizer and state statistics)"
        model = PalmE(model_config_of(cfg, None), tokenizer_texts=data.texts())
        model.fit_state_stats(data.state_examples())  # normalisation of object / robot rows, saved with the weights
    model.set_stage(cfg.train.stage)
    counts = model.parameter_counts()
    log(f"model {model.config.name}: {counts['trainable']:,} trainable / {counts['total']:,} parameters "
        f"(stage {cfg.train.stage})")
    return model


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast where asked (auto: on a CUDA device that supports it); fp32 otherwise."""
    use = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    return (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if use else nullcontext


def step_seed(seed: int, step: int, rank: int) -> int:
    """Per-update torch seed: dropout and other draws depend only on (seed, step, rank), so resume is exact."""
    return (seed * 1_000_003 + step * 8_191 + rank) % (2**63 - 1)


# ---------------------------------------------------------------------------------------------
# one update


def count_targets(batch: dict[str, Any]) -> int:
    """Answer tokens in a collated batch (those with a label)."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


def count_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens in a collated batch."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["labels"].numel())


def update_step(
    model: nn.Module,
    core: nn.Module,
    micro_batches: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: TrainConfig,
    info: dd.DistInfo,
    autocast,
) -> StepStats:
    """Forward/backward over the micro-batches, NaN guard, clip, AdamW step, LR step."""
    n_local = sum(count_targets(b) for b in micro_batches)
    counts = dd.all_reduce_sum(torch.tensor([float(n_local), 0.0, 0.0], device=info.device), info)
    n_global = max(1.0, counts[0].item())
    loss_sum = torch.zeros((), device=info.device)
    nonfinite = 0
    tokens = 0
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = model.no_sync if info.enabled and not last else nullcontext
        share = count_targets(batch) / n_global
        with sync(), autocast():
            loss = model(batch, prompt_weight=cfg.train.prompt_loss)
        if not torch.isfinite(loss.detach()):
            nonfinite += 1
        # DDP averages gradients over processes; scaling by world size turns that into the global sum.
        (loss * share * info.world_size).backward()
        loss_sum += loss.detach().float() * share
        tokens += count_tokens(batch)
    stats = dd.all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(nonfinite), device=info.device),
                                           torch.tensor(float(tokens), device=info.device)]), info)
    loss_value, bad, tokens_all = stats[0].item(), stats[1].item() > 0, int(stats[2].item())
    params = [p for p in core.parameters() if p.requires_grad]
    max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if bad or not math.isfinite(grad_norm) or not math.isfinite(loss_value):
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()  # the schedule follows the update index, skipped or not
        return StepStats(loss_value, grad_norm, tokens_all, skipped=True)
    optimizer.step()
    scheduler.step()
    return StepStats(loss_value, grad_norm, tokens_all, skipped=False)


def assert_finite(model: nn.Module, step: int) -> None:
    """Refuse to checkpoint weights that hold NaN/inf."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLossError(f"step {step}: parameters {bad[:5]} hold NaN/inf; no checkpoint was written")


def nonfinite_message(step: int, stats: StepStats, out: Path, policy: str) -> str:
    """What happened, what was (not) saved, and what to do."""
    last = ck.last_checkpoint(out)
    where = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    return (f"step {step}: non-finite training signal (loss {stats.loss}, grad norm {stats.grad_norm}); "
            f"the update was not applied and no checkpoint holds it; {where}. "
            + ("Lower train.lr, check the data with `palme-dataset validate`, or set train.nan_policy=skip "
               "to skip such updates." if policy == "stop" else
               "Too many updates in a row were skipped (train.max_skipped); lower train.lr or check the data."))


# ---------------------------------------------------------------------------------------------
# the run


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train per `cfg`; return the final metrics (rank 0's; other ranks return {})."""
    info = dd.setup(cfg.device)
    try:
        return _run(cfg, info)
    finally:
        dd.cleanup()


@dataclass
class Session:
    """Everything the loop works on, built by `setup` (fresh, fine-tuning or resumed)."""

    out: Path
    data: TrainData
    core: nn.Module  # the PalmE
    model: nn.Module  # the PalmE, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    stream: MixtureStream
    start: int = 0  # updates already done
    skipped: int = 0  # updates skipped by the NaN guard so far
    lengths: dict = field(default_factory=dict)  # (source, index) -> token length (train.group_by_length)

    def length(self, pair: tuple[str, int]) -> int:
        """Token length of a drawn example, measured once per example and remembered."""
        if pair not in self.lengths:
            self.lengths[pair] = self.core.sequence_length(self.data.drawn(pair))
        return self.lengths[pair]


def setup(cfg: TrainConfig, info: dd.DistInfo, log) -> Session:
    """Check everything that can be checked, then load the data, build the model and optimizer, restore a resumed state.

    Refusals (ValueError, one line) come before any update, in this order: the batch split, evaluation names, the run
    folder (clashes, a resumed config that differs in a "must match" key), the output locations, then
    the model folder of init_from / the resumed checkpoint and the resumed training state (all loaded
    and checked before any data is read), then the data.
    """
    from agent.model import PalmE, prompt_builder

    micro_size(cfg, info)  # the batch split
    check_eval_names(cfg)
    out = run_dir(cfg)
    resume_from = check_run_folder(cfg, out)
    dd.check_on_main(lambda: check_outputs(out), info)  # rank 0 writes; every rank refuses with it
    # The model folder to start from: the resumed checkpoint's, or init_from's (a model or checkpoint folder).
    if resume_from is not None:
        init: Path | None = resume_from / ck.PRETRAINED_DIR
    else:
        init = ck.resolve_model_folder(cfg.init_from) if cfg.init_from else None
    dd.barrier(info)  # every rank has checked the folder before rank 0 writes into it
    core: nn.Module | None = None
    state: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = {}
    optimizer = scheduler = None
    if init is not None:  # every file of the model folder checked before any data is read
        core = build_model(cfg, None, PalmE.from_pretrained(init), log).to(info.device)
        mcfg = core.config
    else:
        mcfg = model_config_of(cfg, None)
    if resume_from is not None:
        assert core is not None
        optimizer, scheduler = _optimization(core, cfg)
        state, rng = resume_state(cfg, resume_from, optimizer, scheduler, log)
    prompts = prompt_builder(mcfg)
    data = load_data(cfg.data, prompts, cfg.seed, log)
    log(f"data: {sum(data.sizes().values())} training examples {data.sizes()}, "
        f"{sum(len(v) for v in data.heldout.values())} held out, tasks {data.tasks}")
    if core is None:
        core = build_model(cfg, data, None, log).to(info.device)
    if optimizer is None:
        optimizer, scheduler = _optimization(core, cfg)
    model: nn.Module = core
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            core, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=True)  # batches without images leave the image encoder unused
    session = Session(out, data, core, model, optimizer, scheduler, data.stream(cfg.seed))
    if state is not None:
        session.stream.load_state_dict(state["data"])
        ck.restore_rng(rng)
        session.start, session.skipped = int(state["step"]), int(state.get("skipped", 0))
        if info.is_main:
            for name in ("train_log.jsonl", "eval_history.jsonl"):  # drop lines a crash left past the checkpoint
                _truncate_jsonl(out / name, session.start)
        dd.barrier(info)
        log(f"resumed {out} at step {session.start}")
    return session


def _optimization(core: nn.Module, cfg: TrainConfig):
    """(AdamW, warmup + cosine schedule) over the model's trainable parameters."""
    optimizer = make_optimizer(core, cfg.train.lr, cfg.train.weight_decay, tuple(cfg.train.betas), cfg.train.eps)
    return optimizer, make_scheduler(optimizer, cfg.train.warmup_steps, cfg.train.steps, cfg.train.min_lr_ratio)


def resume_state(cfg: TrainConfig, ckpt: Path, optimizer, scheduler, log) -> tuple[dict[str, Any], dict]:
    """Restore optimizer and schedule from checkpoint `ckpt`; return (training_step.json, RNG states).

    The saved schedule must be the config's (warmup, min_lr_ratio, lr; else ValueError naming the
    file). A changed `train.steps` is applied (RESUME_RULES): the schedule is stretched or shrunk to end
    at the new `train.steps` (`optim.set_total_steps`), so updates from here on get the rates of a run
    started with it. A `train.steps` at or below the checkpoint's update is refused (ValueError): there
    is nothing to train, and a finished run is not rewritten.
    """
    state, rng = ck.load_training_state(ckpt, optimizer, scheduler)
    done, where = int(state["step"]), ckpt / ck.STATE_DIR / ck.SCHEDULER_FILE
    want = (cfg.train.warmup_steps, cfg.train.min_lr_ratio, cfg.train.lr)
    have = [(fn.warmup, fn.min_ratio, base) for fn, base in zip(scheduler.lr_lambdas, scheduler.base_lrs, strict=True)]
    if any(h != want for h in have):
        raise ValueError(f"{where} holds the schedule (warmup, min_ratio, lr) {have[0]}, but the run's config says "
                         f"{want} (train.warmup_steps, train.min_lr_ratio, train.lr); the checkpoint is inconsistent")
    if cfg.train.steps <= done:
        raise ValueError(
            f"train.steps={cfg.train.steps} but {ckpt} has done {done} updates: "
            + ("the run is finished; " if cfg.train.steps == done else "")
            + f"to train further, resume with train.steps > {done} (the learning-rate schedule then ends there)")
    saved_total = scheduler.lr_lambdas[0].total
    if saved_total != cfg.train.steps:
        lr = set_total_steps(scheduler, cfg.train.steps)[0]
        log(f"train.steps {saved_total} -> {cfg.train.steps}: the learning-rate schedule now ends at update "
            f"{cfg.train.steps}; update {done + 1} uses lr {lr:.4g}")
    return state, rng


def micro_size(cfg: TrainConfig, info: dd.DistInfo) -> int:
    """Examples per micro-batch: the global batch split over processes and accumulation steps."""
    per_rank, rem = divmod(cfg.train.batch_size, info.world_size * cfg.train.grad_accum)
    if rem or per_rank == 0:
        raise ValueError(f"train.batch_size {cfg.train.batch_size} must be a multiple of grad_accum x processes "
                         f"= {cfg.train.grad_accum} x {info.world_size}")
    return per_rank


def micro_batches(s: Session, cfg: TrainConfig, info: dd.DistInfo, refs: list) -> list[dict[str, Any]]:
    """This process's share of the global batch, collated into `grad_accum` micro-batches."""
    per_rank = micro_size(cfg, info)
    n = per_rank * cfg.train.grad_accum
    if cfg.train.group_by_length:  # every process sees the whole global batch, so all agree on the split
        groups = length_groups([s.length(r) for r in refs], info.world_size, cfg.train.grad_accum)
        return [_to_device(s.core.collate([s.data.drawn(refs[i]) for i in g], train=True), info.device)
                for g in groups[info.rank]]
    mine = refs[info.rank * n:(info.rank + 1) * n]
    return [_to_device(s.core.collate([s.data.drawn(r) for r in mine[i:i + per_rank]], train=True), info.device)
            for i in range(0, n, per_rank)]


def save(s: Session, cfg: TrainConfig, info: dd.DistInfo, step: int, saved_cfg: dict[str, Any]) -> None:
    """Checkpoint `step` (rank 0 writes; every rank waits); never with NaN weights."""
    assert_finite(s.core, step)
    if info.is_main:
        ck.save_checkpoint(
            s.out, step, save_model=s.core.save_pretrained, train_config=saved_cfg, optimizer=s.optimizer,
            scheduler=s.scheduler, rng=ck.capture_rng(),
            training_step={"data": s.stream.state_dict(), "skipped": s.skipped, "world_size": info.world_size})
        ck.prune_checkpoints(s.out, cfg.keep_checkpoints)
    dd.barrier(info)


def _run(cfg: TrainConfig, info: dd.DistInfo) -> dict[str, Any]:
    from tqdm import tqdm

    def log(msg: str) -> None:
        if info.is_main:
            tqdm.write(msg)

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    s = setup(cfg, info, log)  # every check; nothing written yet
    autocast = autocast_context(cfg.train.precision, info.device)
    writer = _tensorboard(s.out, info)
    saved_cfg = config_dict(cfg)
    history: list[dict[str, Any]] = []
    consecutive_skips, done, stats = 0, s.start, None
    bar = tqdm(total=cfg.train.steps, initial=s.start, disable=not (cfg.progress and info.is_main),
               desc="palme-train", unit="step", dynamic_ncols=True)
    meter = _Throughput()
    t_start = time.perf_counter()

    for step in range(s.start, cfg.train.steps):
        micro = micro_batches(s, cfg, info, s.stream.next(cfg.train.batch_size))  # global batch: same on every rank
        torch.manual_seed(step_seed(cfg.seed, step, info.rank))
        s.core.train()
        lr = s.scheduler.get_last_lr()[0]  # the rate this update uses
        stats = update_step(s.model, s.core, micro, s.optimizer, s.scheduler, cfg, info, autocast)
        done = step + 1
        if stats.skipped:
            s.skipped, consecutive_skips = s.skipped + 1, consecutive_skips + 1
            if cfg.train.nan_policy == "stop" or consecutive_skips > cfg.train.max_skipped:
                bar.close()
                raise NonFiniteLossError(nonfinite_message(done, stats, s.out, cfg.train.nan_policy))
            log(f"step {done}: non-finite loss/gradient, update skipped ({s.skipped} so far)")
        else:
            consecutive_skips = 0
        meter.add(stats.tokens)
        bar.update(1)
        final = done == cfg.train.steps
        if done % max(1, cfg.log_every) == 0 or final:
            row = {"step": done, "loss": stats.loss, "grad_norm": stats.grad_norm, "lr": lr,
                   "tokens_per_s": meter.rate(), "skipped": stats.skipped}
            bar.set_postfix(loss=f"{stats.loss:.4f}", tok_s=f"{row['tokens_per_s']:,.0f}", lr=f"{lr:.2e}")
            if info.is_main:
                _append_jsonl(s.out / "train_log.jsonl", row)
                for k in ("loss", "grad_norm", "lr", "tokens_per_s"):
                    writer.add_scalar(f"train/{k}", row[k], done)
                writer.add_scalar("train/skipped", s.skipped, done)
        pause = cfg.stop_after > 0 and done - s.start >= cfg.stop_after and not final
        heldout_due = _due(done, cfg.eval.every, final and cfg.eval.final)
        closed_due = cfg.eval.episodes > 0 and _due(done, cfg.eval.closed_loop_every, final and cfg.eval.final)
        if heldout_due or closed_due:
            metrics = _evaluate(s.core, s.data, cfg, info, done, writer, heldout_due, closed_due, log)
            if info.is_main:
                history.append({**metrics, "train_loss": stats.loss})
                _append_jsonl(s.out / "eval_history.jsonl", history[-1])
        if _due(done, cfg.save_every, final) or pause:
            save(s, cfg, info, done, saved_cfg)
        if pause:
            log(f"stopping after {cfg.stop_after} updates (stop_after); continue with resume=true")
            break
    bar.close()
    if writer is not None:
        writer.close()
    if not info.is_main:
        return {}
    result = {"run_dir": str(s.out), "steps": done, "finished": done == cfg.train.steps, "skipped": s.skipped,
              "final_loss": stats.loss if stats else None, "wall_s": round(time.perf_counter() - t_start, 1),
              "eval": history[-1] if history else {}}
    ck.write_json(s.out / "train_summary.json", result)
    return result


class _Throughput:
    """Tokens per second since the last reading."""

    def __init__(self) -> None:
        self.t, self.tokens = time.perf_counter(), 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.tokens / max(1e-9, now - self.t)
        self.t, self.tokens = now, 0
        return r


def _due(step: int, every: int, final: bool) -> bool:
    """Whether a periodic action (every N updates; 0 = never) or the final one falls on `step`."""
    return final or (every > 0 and step % every == 0)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _tensorboard(out: Path, info: dd.DistInfo):
    if not info.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out / TB_DIR))


def _truncate_jsonl(path: Path, step: int) -> None:
    """Keep the rows of a run log up to `step`; a torn last row (a crash while appending) is dropped, another
    row that is not a JSON object with an int `step` is refused (ValueError naming the file and line)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = []
        for i, ln in enumerate(lines):
            try:
                row = json.loads(ln)
                ok = isinstance(row, dict) and isinstance(row.get("step"), int)
            except json.JSONDecodeError:
                ok = False
            if not ok:
                if i == len(lines) - 1:
                    break
                raise ValueError(f"{path} line {i + 1} is not a JSON object with an int step; fix or remove it to resume")
            if row["step"] <= step:
                keep.append(ln)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        tmp.replace(path)


def _append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(obj) + "\n")


def _evaluate(core, data: TrainData, cfg: TrainConfig, info: dd.DistInfo, step: int, writer, heldout: bool,
              closed: bool, log):
    """Held-out metrics (and closed-loop success when due) on rank 0; the training RNG is left untouched."""
    metrics: dict[str, Any] = {"step": step}
    if info.is_main:
        rng = ck.capture_rng()
        core.eval()
        with torch.no_grad():
            if heldout:
                held, samples = heldout_metrics(core, data, cfg.eval)
                metrics.update(held)
                if writer is not None and samples:
                    writer.add_text("samples", samples, step)
            if closed:
                metrics.update(closed_loop_success(core, data, cfg.eval, cfg.seed))
        core.train()
        ck.restore_rng(rng)
        if writer is not None:
            for k, v in metrics.items():
                if k != "step" and isinstance(v, int | float):
                    writer.add_scalar(f"eval/{k}", v, step)
        log(f"eval @ {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                           if k != "step" and isinstance(v, float)))
    dd.barrier(info)
    return metrics


def check_model_overrides(cfg: TrainConfig, keys: list[str]) -> None:
    """Refuse `model.*` command-line values that `init_from` would silently drop (the checkpoint's model wins)."""
    given = sorted({k.lstrip("+~").removeprefix("model.") for k in keys if k.lstrip("+~").startswith("model.")})
    if not cfg.init_from or not given:
        return
    saved = flatten(model_config_of(cfg, ck.resolve_model_folder(cfg.init_from)).to_dict())
    mine = flatten(cfg.model.to_dict())
    diffs = [f"model.{k}={mine[k]!r} (the checkpoint has {saved[k]!r})" for k in given if k in saved and mine[k] != saved[k]]
    if diffs:
        raise ValueError(f"init_from={cfg.init_from} keeps the checkpoint's model, so these would be ignored: "
                         + "; ".join(diffs) + ". Drop them, or train a new model without init_from.")


def compose_config(overrides: list[str]) -> TrainConfig:
    """The TrainConfig `palme-train <overrides>` would run (for experiments and tests)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_module(config_module="configs", version_base=None):
        dcfg = compose(config_name="train", overrides=list(overrides))
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, TrainConfig)
    return cfg


def _hydra_main() -> None:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    from agent.cli.common import run_cli, user_errors

    register_configs()

    @hydra.main(version_base=None, config_path="pkg://configs", config_name="train")
    @user_errors("palme-train")
    def app(dcfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        cfg = OmegaConf.to_object(dcfg)
        assert isinstance(cfg, TrainConfig)
        keys = [o.split("=", 1)[0] for o in hc.overrides.task]
        follow_hydra_run_dir(cfg, hc.run.dir, output_dir_given="output_dir" in [k.lstrip("+~") for k in keys])
        check_model_overrides(cfg, keys)
        result = run(cfg)  # a refused start leaves no folder of hydra's files behind (user_errors removes it)
        if result:
            print(json.dumps({k: v for k, v in result.items() if k != "eval"} | {"eval": result.get("eval", {})}))

    run_cli("palme-train", app)  # user errors (config, paths, checkpoints, data): one line, exit 2


def main() -> None:
    """Console entry point (`palme-train`, and `torchrun -m training.train`)."""
    _hydra_main()


if __name__ == "__main__":
    main()
