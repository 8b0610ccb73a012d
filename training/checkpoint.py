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
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from envs.fileio import apply_umask, write_atomic

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
    """Write JSON through a temporary file + rename, so readers never see a partial file (mode per the umask)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", fsync=False)


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Tensors as a safetensors file, written like `write_json` (safetensors' own writer makes files 0600)."""
    write_atomic(path, safetensors_bytes(dict(tensors), metadata=metadata), fsync=False)


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
    write_safetensors(path, tensors, metadata=meta)


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore an optimizer saved by `save_optimizer` (tensors land on each parameter's device).

    ValueError (one line naming `path`) when the file is not such a state, was saved for other
    parameters, or holds a moment of another shape or a non-finite one; `optimizer` is then unchanged.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {' '.join(str(err).split())}") from None
    if "param_groups" not in meta or "scalars" not in meta:
        raise ValueError(f"{path} has no optimizer metadata; it was not written by save_optimizer")
    try:
        state = optimizer_from_safetensors(tensors, meta)
        fresh = json.loads(json.dumps(optimizer.state_dict()["param_groups"]))  # tuples as JSON has them (lists)
        problem = _unlike(state["param_groups"], fresh, "param_groups")
        if problem is None:
            problem = _moments_problem(state, optimizer)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:  # json errors are ValueErrors
        problem = " ".join(str(err).split())[:300] or type(err).__name__
    if problem is not None:
        raise ValueError(f"{path} does not fit this run's optimizer: {problem}")
    optimizer.load_state_dict(state)


def _moments_problem(state: Mapping[str, Any], optimizer: torch.optim.Optimizer) -> str | None:
    """What is wrong with a loaded optimizer state's tensors for `optimizer`'s parameters, or None."""
    ids = [i for g in state["param_groups"] for i in g["params"]]
    by_id = dict(zip(ids, [p for g in optimizer.param_groups for p in g["params"]], strict=True))
    for pid, pstate in state["state"].items():
        if pid not in by_id:
            return f"state for parameter {pid}, which no parameter group holds"
        for key, value in pstate.items():
            want = () if key == "step" else tuple(by_id[pid].shape)
            if not torch.is_tensor(value) or tuple(value.shape) != want or not torch.isfinite(value).all():
                return f"state {pid}.{key} should be a finite tensor of shape {list(want)}"
    return None


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
    write_safetensors(state_dir / RNG_FILE, {k: v.contiguous() for k, v in rng.items()})
    write_json(state_dir / STEP_FILE, {"step": step, **training_step})
    _fsync_tree(tmp)  # also gives files a library wrote with a fixed mode (model.safetensors) the umask's mode
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
    """Give every file the umask's mode and flush it to disk before the rename that publishes them."""
    for p in sorted(path.rglob("*")):
        if p.is_file():
            apply_umask(p)
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
    """Restore optimizer and scheduler from `ckpt`; return (training_step.json, rng tensors).

    `optimizer` and `scheduler` must be built like the saved ones (same parameter groups, `make_scheduler`).
    Every file is checked before it is used: the optimizer's moments have their parameters' shapes and
    are finite, the scheduler state has the fields and types of `scheduler`'s own and sits at the
    update training_step.json names, the RNG states are torch's. Raises ValueError, one line naming the
    file, for a missing or corrupt one; the training state is then left as built.
    """
    state_dir = ckpt / STATE_DIR
    for name in (OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE, STEP_FILE):
        if not (state_dir / name).is_file():
            raise ValueError(f"checkpoint {ckpt} cannot be resumed: {STATE_DIR}/{name} is missing")
    step = read_json(state_dir / STEP_FILE)
    if not (isinstance(step, dict) and _is_int(step.get("step")) and step["step"] >= 0
            and isinstance(step.get("data"), dict) and _is_int(step.get("skipped", 0))):
        raise ValueError(f"{state_dir / STEP_FILE}: expected an object with step (int >= 0), data (object) and "
                         f"skipped (int), got {json.dumps(step)[:200]}")
    sched = read_json(state_dir / SCHEDULER_FILE)
    problem = _unlike(sched, scheduler_state(scheduler))
    if problem is None and sched.get("last_epoch") != step["step"]:
        problem = f"last_epoch {sched.get('last_epoch')!r} is not the checkpoint's step {step['step']}"
    if problem is not None:
        raise ValueError(f"{state_dir / SCHEDULER_FILE} does not fit this run's learning-rate schedule: {problem}")
    rng = _load_rng(state_dir / RNG_FILE)
    load_optimizer(optimizer, state_dir / OPTIMIZER_FILE)
    scheduler.load_state_dict(sched)
    return step, rng


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unlike(saved: Any, fresh: Any, key: str = "") -> str | None:
    """Where `saved` (JSON) differs in structure or type from `fresh` (a state of the same kind), or None."""
    where = key or "the top level"
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            return f"{where}: expected the keys {sorted(fresh)}, got {got}"
        return next((p for k in fresh if (p := _unlike(saved[k], fresh[k], f"{key}.{k}".lstrip("."))) is not None),
                    None)
    if isinstance(fresh, list):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            return f"{where}: expected a list of {len(fresh)}, got {json.dumps(saved)[:80]}"
        return next((p for i, (a, b) in enumerate(zip(saved, fresh)) if (p := _unlike(a, b, f"{key}[{i}]"))), None)
    if isinstance(fresh, bool) or fresh is None or isinstance(fresh, str):
        return None if type(saved) is type(fresh) else f"{where}: expected {type(fresh).__name__}, got {saved!r}"
    if isinstance(fresh, int | float):
        ok = (_is_int(saved) if _is_int(fresh) else isinstance(saved, int | float) and not isinstance(saved, bool))
        if not ok or not math.isfinite(saved) or saved < 0:
            return f"{where}: expected a finite number >= 0 like {fresh!r}, got {saved!r}"
    return None


def _load_rng(path: Path) -> dict[str, torch.Tensor]:
    """The RNG states of `capture_rng` from `path`, each a 1-D uint8 tensor (torch's CPU state of its size)."""
    try:
        states = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {' '.join(str(err).split())}") from None
    size = torch.get_rng_state().numel()
    bad = [k for k, t in states.items() if t.dtype != torch.uint8 or t.ndim != 1 or (k == "torch" and t.numel() != size)]
    if "torch" not in states or bad:
        raise ValueError(f"{path}: expected uint8 RNG states with 'torch' ({size} bytes), got "
                         f"{ {k: (str(t.dtype), tuple(t.shape)) for k, t in states.items()} }")
    return states


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


def check_output_folder(path: str | Path, what: str) -> Path:
    """Refuse (ValueError, one line naming `what`, the path and the reason) a folder a run cannot write into.

    An existing folder must take a new file (a probe file is created and removed in it); a missing one
    must be creatable: nothing but folders on its path, and its nearest existing parent takes a new
    file. Nothing is created, so a refused run leaves nothing behind. Returns `path` as a Path.
    """
    import tempfile

    path = Path(path)
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        kind = "a broken link" if probe.is_symlink() and not probe.exists() else "a file, not a folder"
        where = "is" if probe == path else f"cannot be created: {probe} is"
        raise ValueError(f"{what} {path} {where} {kind}; choose another location or move it away")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".palme-write-check-"):
            pass
    except OSError as err:
        target = f"{path} is not writable" if probe == path else f"{path} cannot be created in {probe}"
        raise ValueError(f"{what} {target}: {err.strerror or err}; nothing was written (fix the permissions "
                         "or choose another location)") from None
    return path
