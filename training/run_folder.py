"""The run folder and the checks made before a run starts (moved out of `training.train`, which re-exports them).

`run_dir` / `follow_hydra_run_dir` say where a run writes; `check_run_folder` decides between a new run and a resume
(refusing clashes and changed configs); `check_outputs` refuses unwritable output locations and `check_eval_names`
unknown evaluation names, all before anything is read, trained or written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training import checkpoint as ck
from training.config import TrainConfig, config_differences


def run_dir(cfg: TrainConfig) -> Path:
    """The run folder: output_dir, or outputs/train/<run_name> (the CLI: `hydra.run.dir=DIR`, when given, sets
    output_dir; see `follow_hydra_run_dir`)."""
    return Path(cfg.output_dir or f"outputs/train/{cfg.run_name}")


def follow_hydra_run_dir(cfg: TrainConfig, hydra_run_dir: str | Path, output_dir_given: bool) -> TrainConfig:
    """Make `hydra.run.dir`, when the command line gives it, the run folder (as for every other CLI).

    configs/train.yaml sets `hydra.run.dir: ${output_dir}`, so hydra's folder (train.log, .hydra/) and the run
    folder (checkpoints, tb/, train_summary.json) are one folder unless `hydra.run.dir=DIR` is given; then
    `output_dir` becomes DIR. Giving both with different values is refused (ValueError); `output_dir_given`
    says whether the command line set output_dir.
    """
    if Path(hydra_run_dir).resolve() == run_dir(cfg).resolve():
        return cfg
    if output_dir_given:
        raise ValueError(f"output_dir={cfg.output_dir} and hydra.run.dir={hydra_run_dir} name different run folders; "
                         "give one of them (hydra.run.dir follows output_dir)")
    cfg.output_dir = str(hydra_run_dir)
    return cfg


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (what is saved as train_config.json)."""
    from omegaconf import OmegaConf

    return json.loads(json.dumps(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)))


def check_run_folder(cfg: TrainConfig, out: Path) -> Path | None:
    """The checkpoint to resume from (None for a new run); refuses clashes and changed configs."""
    last = ck.last_checkpoint(out)
    if not cfg.resume:
        if last is not None:
            raise ValueError(f"{out} already holds checkpoints (last: {last.name}); pass resume=true to continue "
                             f"that run, or choose another run_name / output_dir")
        return None
    if last is None:
        raise ValueError(f"resume=true but {out} has no checkpoints/last; nothing to resume")
    where = last / ck.PRETRAINED_DIR / ck.TRAIN_CONFIG
    saved = ck.read_json(where)
    if not isinstance(saved, dict):
        raise ValueError(f"{where} is not a JSON object (a train config); cannot resume {out}")  # noqa: TRY004 - bad file content is a user error
    diffs = config_differences(saved, config_dict(cfg))
    if diffs:
        raise ValueError(f"cannot resume {out}: the config differs from the saved one ({where}) in keys that must "
                         f"match (training.config.RESUME_RULES): {'; '.join(diffs)}; resume with the saved values "
                         "or start a new run")
    return last


TB_DIR = "tb"  # TensorBoard event files, in the run folder
RUN_FILES = ("train_log.jsonl", "eval_history.jsonl", "train_summary.json")  # written into the run folder


def check_outputs(out: Path) -> None:
    """Refuse a run whose outputs cannot be written, before anything is read, trained or written.

    The run folder, its checkpoints/ and tb/ must each be a folder that takes a new file, or one that can
    be created (`checkpoint.check_output_folder`: nothing is created); the files written into the run folder
    (RUN_FILES) must not be folders, and those that exist must open for appending (nothing is written).
    Raises ValueError, one line naming the location and the reason.
    """
    ck.check_output_folder(out, "run folder")
    ck.check_output_folder(out / ck.CHECKPOINTS_DIR, "checkpoints folder")
    ck.check_output_folder(out / TB_DIR, "TensorBoard folder")
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            raise ValueError(f"{path} is a folder, but the run writes a file there; move it away")
        if path.is_file():
            try:
                with path.open("a"):
                    pass
            except OSError as err:
                raise ValueError(f"{path} is not writable: {err.strerror or err}; nothing was written") from None


def check_eval_names(cfg: TrainConfig) -> None:
    """Refuse unknown `eval.split` / `eval.tasks` names at start (closed-loop evaluation, eval.episodes > 0, would
    meet them only at its first due update, after training); ValueError listing the known names."""
    if cfg.eval.episodes <= 0:
        return
    from envs import load_world
    from envs.tasks.base import SPLITS, task_names

    if cfg.eval.split not in SPLITS:
        raise ValueError(f"unknown eval.split {cfg.eval.split!r}; known splits: {list(SPLITS)}")
    for entry in cfg.eval.tasks:
        world, _, task = entry.partition("/")
        if not task:
            raise ValueError(f"eval.tasks entry {entry!r} must read world/task, e.g. push/block2block")
        load_world(world)
        if task not in task_names(world):
            raise ValueError(f"unknown task {task!r} in eval.tasks for env {world!r}; known tasks: {task_names(world)}")
    if cfg.eval.block_set is not None:  # a fixed block set with L2 / L3 (they draw other blocks)
        from training.evaluation import env_kwargs

        try:
            env_kwargs(cfg.eval, "push")
        except ValueError as err:
            raise ValueError(f"eval.block_set={cfg.eval.block_set} with eval.split={cfg.eval.split}: {err}") from None
