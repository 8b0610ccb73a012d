"""Checkpoints in LeRobot's layout, written atomically, with everything a bit-exact resume needs.

    <run>/checkpoints/<step:06d>/pretrained_model/   model (PalmE.save_pretrained) + train_config.json
    <run>/checkpoints/<step:06d>/training_state/     optimizer_state.safetensors, scheduler_state.json,
                                                     rng_state.safetensors, training_step.json
    <run>/checkpoints/last -> <step:06d>             symlink, replaced atomically after each save

A checkpoint is first written into a hidden temporary folder next to its final place and renamed
into place only when complete, so a crash never leaves a half-written checkpoint behind `last`.
No pickle: tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS_DIR = "checkpoints"
PRETRAINED_DIR = "pretrained_model"
STATE_DIR = "training_state"
LAST = "last"
TRAIN_CONFIG = "train_config.json"
OPTIMIZER_FILE = "optimizer_state.safetensors"
SCHEDULER_FILE = "scheduler_state.json"
RNG_FILE = "rng_state.safetensors"
STEP_FILE = "training_step.json"


def step_dir_name(step: int) -> str:
    """Folder name of the checkpoint at `step` (zero-padded like LeRobot)."""
    return f"{step:06d}"


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file + rename, so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file, naming the file when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise ValueError(f"checkpoint file missing: {path}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint file {path} is not valid JSON: {err}") from err


# ---------------------------------------------------------------------------------------------
# optimizer / scheduler / RNG state <-> safetensors + JSON


def optimizer_to_safetensors(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten `optimizer.state_dict()` into tensors `state.<param>.<key>` and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    meta = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    return tensors, meta


def optimizer_from_safetensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of `optimizer_to_safetensors`: a dict `optimizer.load_state_dict` accepts."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in json.loads(meta["scalars"]).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": json.loads(meta["param_groups"])}


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Optimizer state as safetensors (tensors) + metadata (param groups, scalars)."""
    tensors, meta = optimizer_to_safetensors(optimizer.state_dict())
    save_file(tensors, str(path), metadata=meta)


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore an optimizer saved by `save_optimizer` (tensors land on each parameter's device)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    if "param_groups" not in meta:
        raise ValueError(f"{path} has no optimizer metadata; it was not written by save_optimizer")
    optimizer.load_state_dict(optimizer_from_safetensors(tensors, meta))


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """A JSON-able scheduler state (torch's state_dict holds only numbers, lists and plain dicts)."""
    return json.loads(json.dumps(scheduler.state_dict()))


def capture_rng() -> dict[str, torch.Tensor]:
    """The torch RNG states of this process (CPU, and every CUDA device when present)."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda.{i}"] = s
    return states


def restore_rng(states: Mapping[str, torch.Tensor]) -> None:
    """Restore states captured by `capture_rng` (CUDA states only where those devices exist)."""
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        cuda = [states[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in states]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# whole checkpoints


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    save_model: Callable[[Path], None],
    train_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: Mapping[str, torch.Tensor],
    training_step: Mapping[str, Any],
) -> Path:
    """Write checkpoint `step` atomically, point `last` at it, and return its folder."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model_dir, state_dir = tmp / PRETRAINED_DIR, tmp / STATE_DIR
    model_dir.mkdir(parents=True)
    state_dir.mkdir()
    save_model(model_dir)
    write_json(model_dir / TRAIN_CONFIG, dict(train_config))
    save_optimizer(optimizer, state_dir / OPTIMIZER_FILE)
    write_json(state_dir / SCHEDULER_FILE, scheduler_state(scheduler))
    save_file({k: v.contiguous() for k, v in rng.items()}, str(state_dir / RNG_FILE))
    write_json(state_dir / STEP_FILE, {"step": step, **training_step})
    _fsync_tree(tmp)
    _replace_dir(tmp, final)
    point_last(root, final.name)
    return final


def point_last(root: Path, name: str) -> None:
    """Atomically make `root/last` a relative symlink to `name`."""
    link_tmp = root / f".{LAST}.tmp-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(name, link_tmp)
    os.replace(link_tmp, root / LAST)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a complete folder into place; an existing one (same step saved twice) is swapped out."""
    if dst.exists():
        old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _fsync_tree(path: Path) -> None:
    """Flush file contents to disk before the rename that publishes them."""
    for p in sorted(path.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `last` points at, or None when the run has none."""
    link = Path(run_dir) / CHECKPOINTS_DIR / LAST
    if not link.exists():
        return None
    return link.resolve()


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder, a `checkpoints/` folder, a step folder or its `pretrained_model/`."""
    p = Path(path)
    candidates = [p, p / LAST, p / CHECKPOINTS_DIR / LAST]
    for c in candidates:
        if (c / PRETRAINED_DIR).is_dir():
            return c.resolve()
    if p.name == PRETRAINED_DIR and p.is_dir():
        return p.parent.resolve()
    raise ValueError(
        f"{path} is not a checkpoint: expected a folder holding {PRETRAINED_DIR}/ (a step folder), "
        f"or a run folder with {CHECKPOINTS_DIR}/{LAST}"
    )


def resolve_model_folder(path: str | Path) -> Path:
    """The model folder of `init_from`: a model folder itself (config.json, e.g. checkpoints/palme-tiny) or a checkpoint's."""
    p = Path(path)
    if (p / "config.json").is_file():
        return p.resolve()
    try:
        return resolve_checkpoint(p) / PRETRAINED_DIR
    except ValueError:
        raise ValueError(f"{path} is neither a model folder (with config.json, like checkpoints/palme-tiny) nor a "
                         f"checkpoint (a step folder holding {PRETRAINED_DIR}/, or a run folder with "
                         f"{CHECKPOINTS_DIR}/{LAST})") from None


def load_training_state(
    ckpt: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore optimizer and scheduler from `ckpt`; return (training_step.json, rng tensors)."""
    state_dir = ckpt / STATE_DIR
    for name in (OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE, STEP_FILE):
        if not (state_dir / name).is_file():
            raise ValueError(f"checkpoint {ckpt} cannot be resumed: {STATE_DIR}/{name} is missing")
    load_optimizer(optimizer, state_dir / OPTIMIZER_FILE)
    scheduler.load_state_dict(read_json(state_dir / SCHEDULER_FILE))
    return read_json(state_dir / STEP_FILE), load_file(str(state_dir / RNG_FILE))


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (never the one `last` points at); keep<=0 keeps all."""
    if keep <= 0:
        return
    root = Path(run_dir) / CHECKPOINTS_DIR
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    last = last_checkpoint(run_dir)
    for p in steps[:-keep]:
        if last is None or p.resolve() != last:
            shutil.rmtree(p, ignore_errors=True)
