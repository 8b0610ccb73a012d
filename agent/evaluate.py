"""`palme-eval`: success rates per task and generalisation split, in parallel, with a report people can look at.

    palme-eval checkpoint=PATH env=pickplace tasks=[stack,grasp] episodes=50 workers=2 split=L1
    palme-eval planner=oracle splits=[L1,L2,L3,L4] episodes=50 workers=2
    torchrun --nproc_per_node=2 $(which palme-eval) planner=oracle ...   # episodes sharded by rank
    palme-eval compare RUN_A RUN_B ... [--labels A,B] [--out DIR]         # runs side by side
    palme-eval report RUN ...                                            # re-render a run's report.html

Episode n of a task in split S uses seed `seed_range(S)[0] + seed_offset + n`: evaluation seeds
never meet training seeds. The output folder (hydra's run dir, `hydra.run.dir=DIR` to choose)
holds `eval_info.json` (LeRobot's fields plus ours, see agent.eval_metrics), `episodes.jsonl`
(one trace per episode), `videos/<split>_<task>/eval_episode_<n>.mp4` for the first
`videos_per_task` episodes, and `report.html`. Results are written as episodes finish, so Ctrl-C
(or SIGTERM) leaves a valid partial report.

Before the first episode the run is checked: names, numbers, seeds (both ends inside each
split's range), the output folder (writable), every env (built once) and the planner (built once:
a model planner loads its checkpoint, so a checkpoint that cannot be loaded stops the run with the
loader's message, exit 2, instead of being scored as a 0% model).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.cli.common import check_writable, run_cli, user_errors
from agent.eval_metrics import build_eval_info
from agent.eval_runner import Job, run_jobs
from agent.loop import DEFAULT_MAX_CONSECUTIVE_FAILURES
from agent.planners import PlannerOptions, planner_names
from agent.report import compare_markdown, render_compare, render_report, run_label
from agent.state_options import StateOptions

EVAL_SPLITS = ("L1", "L2", "L3", "L4")


@dataclass
class EvalConfig(StateOptions, PlannerOptions):
    """Schema of `palme-eval` (unknown keys fail at start).

    The planner keys (checkpoint, mode, constrained, check_done, max_new_tokens, max_plan_tokens,
    device, planner_seed, blank_frames) are agent.planners.PlannerOptions', the state keys (state,
    state_noise_m, skills_use) agent.state_options.StateOptions', both shared with palme-run and palme-collect;
    here `checkpoint` without `planner` means planner=palme. `blank_frames=true` blanks the camera for the model
    and for perception (the envs' `blank_perception`: state=estimated and skills_use=estimated see no objects).
    """

    planner: str | None = None  # oracle | palme | a baseline (see agent.planners); default: palme with a checkpoint
    env: str = "pickplace"  # world: pickplace | push
    tasks: list[str] = field(default_factory=list)  # task names; empty = every task of the world
    split: str | None = None  # one split (L1-L4) or "all"; shortcut that overrides `splits`
    splits: list[str] = field(default_factory=lambda: ["L1"])  # generalisation splits to evaluate
    episodes: int = 50  # episodes per task and split (LeRobot's default)
    workers: int = 1  # worker processes per rank (one env + one planner each); 1 = in this process
    seed_offset: int = 0  # episode n uses seed seed_range(split)[0] + seed_offset + n
    videos_per_task: int = 10  # record the first K episodes of each task and split (LeRobot: 10)
    video_fps: int | None = None  # video frames per simulated second; None = the env's render_fps (rendering is costly)
    image_size: list[int] | None = None  # (H, W) of the camera; None = the env's default
    max_steps: int | None = None  # step budget per episode; None = the agent's default (2x oracle + 2)
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES  # end after this many failed steps in a row
    torch_threads: int = 1  # intra-op threads per worker (fixed, so results do not depend on the machine)
    label: str | None = None  # name of this run in `compare` tables
    progress: bool = True  # tqdm progress bar
    report_every_s: float = 2.0  # rewrite eval_info.json / report.html at most this often while running

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split is not None:
            self.splits = list(EVAL_SPLITS) if self.split == "all" else [self.split]


def register_configs() -> None:
    """Put the schema into hydra's ConfigStore (configs/eval.yaml builds on it)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="eval_schema", node=EvalConfig)


def resolve(cfg: EvalConfig) -> EvalConfig:
    """Fill defaults (planner, tasks) and check names and numbers; errors name what was expected."""
    from envs import load_world
    from envs.tasks.base import SPLITS, task_names

    if cfg.split is not None:
        cfg.splits = list(EVAL_SPLITS) if cfg.split == "all" else [cfg.split]
    load_world(cfg.env)
    known = task_names(cfg.env)
    cfg.tasks = list(cfg.tasks) or known
    bad = [t for t in cfg.tasks if t not in known]
    if bad:
        raise ValueError(f"unknown task(s) {bad} for env {cfg.env!r}; known tasks: {known}")
    bad = [s for s in cfg.splits if s not in SPLITS]
    if bad or not cfg.splits:
        raise ValueError(f"unknown split(s) {bad or cfg.splits}; expected some of {list(EVAL_SPLITS)} (or split=all)")
    for split in cfg.splits:  # a block set the world (only push has them) or a split cannot take: refused here
        cfg.env_kwargs(cfg.env, split)
    if cfg.video_fps is not None and cfg.video_fps < 1:
        raise ValueError(f"video_fps must be >= 1 or None (the env's render_fps), got {cfg.video_fps}")
    if cfg.episodes < 1 or cfg.workers < 1 or cfg.videos_per_task < 0:
        raise ValueError(f"need episodes >= 1, workers >= 1, videos_per_task >= 0; got {cfg.episodes}, "
                         f"{cfg.workers}, {cfg.videos_per_task}")
    if cfg.planner is None:
        if cfg.checkpoint is None:
            raise ValueError("give checkpoint=PATH (planner palme) or planner=NAME (oracle or a baseline)")
        cfg.planner = "palme"
    if cfg.planner not in planner_names():
        raise ValueError(f"unknown planner {cfg.planner!r}; known planners: {planner_names()}")
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).exists():
        raise ValueError(f"checkpoint {cfg.checkpoint!r} does not exist")
    return cfg


def plan_jobs(cfg: EvalConfig) -> list[Job]:
    """Every episode of the run, seeds from each split's test range; episode-major order, so that a
    partial run (Ctrl-C, a deadline) has about as many episodes of every task and split."""
    from envs.tasks.base import check_seeds, seed_range

    for split in cfg.splits:  # both ends inside the split's range: evaluation never runs on training seeds
        check_seeds(split, seed_range(split)[0] + cfg.seed_offset, cfg.episodes,
                    given=f"seed_offset={cfg.seed_offset} with episodes={cfg.episodes}")
    return [
        Job(split, task, n, seed_range(split)[0] + cfg.seed_offset + n, n < cfg.videos_per_task)
        for n in range(cfg.episodes) for split in cfg.splits for task in cfg.tasks
    ]


# ---- outputs -----------------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader (or a Ctrl-C) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class RunWriter:
    """Keeps the finished episodes and their outputs on disk up to date while the run goes on."""

    def __init__(self, out_dir: Path, cfg: EvalConfig, n_planned: int, write: bool = True) -> None:
        self.out_dir, self.cfg, self.n_planned, self.write = out_dir, cfg, n_planned, write
        self.records: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.last_write = 0.0
        self.jsonl = out_dir / "episodes.jsonl"
        if write:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl.write_text("")

    def add(self, record: dict[str, Any]) -> None:
        """A finished episode: appended to episodes.jsonl at once; the summaries are refreshed now and then."""
        self.records.append(record)
        if not self.write:
            return
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if time.perf_counter() - self.last_write >= self.cfg.report_every_s:
            self.flush()

    def info(self, interrupted: bool = False) -> dict[str, Any]:
        return build_eval_info(
            self.records, eval_s=time.perf_counter() - self.t0, splits=self.cfg.splits, tasks=self.cfg.tasks,
            config=config_summary(self.cfg), interrupted=interrupted, n_planned=self.n_planned,
        )

    def flush(self, interrupted: bool = False, final: bool = False) -> dict[str, Any]:
        """Rewrite eval_info.json and report.html (and, at the end, episodes.jsonl in episode order)."""
        info = self.info(interrupted)
        if self.write:
            records = sorted(self.records, key=_record_order(self.cfg))
            if final:
                write_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in records))
            write_atomic(self.out_dir / "eval_info.json", json.dumps(info, indent=2))
            write_atomic(self.out_dir / "report.html", render_report(info, records, title=_title(self.cfg)))
        self.last_write = time.perf_counter()
        return info


def _record_order(cfg: EvalConfig):
    splits, tasks = list(cfg.splits), list(cfg.tasks)
    return lambda r: (splits.index(r["split"]) if r["split"] in splits else 99,
                      tasks.index(r["task"]) if r["task"] in tasks else 99, r["episode"])


def _title(cfg: EvalConfig) -> str:
    return f"palme-eval: {cfg.label or cfg.planner} on {cfg.env}"  # kept in step with rerender_report


def config_summary(cfg: EvalConfig) -> dict[str, Any]:
    """The run's settings as stored in eval_info.json (and shown in the report)."""
    d = asdict(cfg)
    d.pop("split", None)
    d["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    return d


def runner_settings(cfg: EvalConfig) -> dict[str, Any]:
    """What a worker needs to build its planner and env (plain data, sent to worker processes)."""
    keys = ("env", "planner", "image_size", "max_steps", "max_consecutive_failures", "torch_threads", "video_fps")
    opts = asdict(cfg.planner_options())
    if opts["device"] == "cuda" and "LOCAL_RANK" in os.environ:  # under torchrun: one GPU per local rank
        opts["device"] = f"cuda:{os.environ['LOCAL_RANK']}"
    return {k: getattr(cfg, k) for k in keys} | {"planner_options": opts, "state_options": asdict(cfg.state_options())}


# ---- torchrun: shard by rank, merge on rank 0 ----------------------------------------------------
def dist_rank_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from torchrun's environment, (0, 1) without it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _all_gather_json(obj: Any) -> list[Any]:
    """Every rank's `obj` (JSON data), in rank order, on every rank: bytes in uint8 tensors, no pickle."""
    import torch
    import torch.distributed as dist

    data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: data.numel()] = data
    chunks = [torch.zeros(longest, dtype=torch.uint8) for _ in sizes]
    dist.all_gather(chunks, padded)
    return [json.loads(bytes(c[: int(s.item())].tolist()).decode()) for c, s in zip(chunks, sizes, strict=True)]


# ---- the run -----------------------------------------------------------------------------------
def check_setup(cfg: EvalConfig, settings: dict[str, Any]) -> Any:
    """Build every env of the run once and the planner once, before any episode; returns the planner.

    A model planner loads its checkpoint here, so a checkpoint the loader refuses (a file, an empty
    folder, a missing or truncated model.safetensors, a tensor of the wrong shape) stops the run
    with the loader's ValueError. Raises ValueError for a set-up the envs refuse (e.g. image_size).
    """
    from agent.eval_agent import build_planner
    from envs import make_env

    size = {"image_size": tuple(cfg.image_size)} if cfg.image_size else {}
    for split in cfg.splits:
        for task in cfg.tasks:
            make_env(cfg.env, task, **cfg.env_kwargs(cfg.env, split, cfg.blank_frames), **size).close()
    return build_planner(settings)


def evaluate(cfg: EvalConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the evaluation described by `cfg`, writing its outputs into `out_dir`; returns eval_info.

    Set-up errors (names, numbers, seeds, an unwritable `out_dir`, an env or a checkpoint that cannot
    be built or loaded, a worker that cannot set itself up) raise ValueError before any episode is scored.
    """
    cfg = resolve(cfg)
    rank, world = dist_rank_world()
    out_dir = Path(out_dir)
    jobs = plan_jobs(cfg)  # the seeds are checked before anything runs
    if rank == 0:
        check_writable(out_dir, "run folder")
    settings = runner_settings(cfg)
    planner = check_setup(cfg, settings)
    if cfg.workers > 1:
        planner = None  # each worker builds (loads) its own, once; this one only proved that it can be built
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=timedelta(hours=24))
        out_dir = Path(_all_gather_json(str(out_dir.resolve()))[0])  # every rank writes its videos there
    shard = jobs[rank::world]
    writer = RunWriter(out_dir, cfg, n_planned=len(jobs), write=rank == 0)
    bar = _progress(cfg, len(shard), enabled=cfg.progress and rank == 0)

    def on_result(rec: dict[str, Any]) -> None:
        writer.add(rec)
        bar.update(1)
        wins = sum(r["success"] for r in writer.records)
        bar.set_postfix(success=f"{100 * wins / len(writer.records):.1f}%")

    # SIGTERM (a scheduler, `kill`) ends the run like Ctrl-C: with a valid partial report.
    # SIGINT too, explicitly: a process started in the background inherits SIGINT ignored, and Ctrl-C
    # (or `kill -INT`) must still leave the partial report.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt) if _main_thread() else None
    try:
        run_jobs(shard, settings, out_dir, cfg.workers, on_result, planner=planner)
    except KeyboardInterrupt:
        bar.close()
        writer.flush(interrupted=True, final=True)
        print(f"\ninterrupted: partial report of {len(writer.records)} episodes in {out_dir}", file=sys.stderr)
        raise
    except Exception:  # e.g. a worker that could not set itself up: keep the finished episodes' report
        bar.close()
        if writer.records:
            writer.flush(interrupted=True, final=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
    bar.close()
    if world > 1:
        writer.records = [r for part in _all_gather_json(writer.records) for r in part]
    info = writer.flush(final=True)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return info


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _progress(cfg: EvalConfig, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"eval {cfg.planner}", unit="ep", disable=not enabled, dynamic_ncols=True)


def summary_table(info: dict[str, Any]) -> str:
    """Plain-text table of the run: split, task, success % with interval, n, plan lengths, failures."""
    w = max([14, *(len(t["task_id"]) for t in info["per_task"])])
    lines = [f"{'split':6} {'task':{w}} {'n':>4} {'success%':>9} {'95% CI':>13} {'plan':>5} {'oracle':>6}  failures"]
    for t in info["per_task"]:
        fails = ", ".join(f"{k} {v}" for k, v in t["failures"].items() if v) or "-"
        lines.append(f"{t['task_group']:6} {t['task_id']:{w}} {t['n_episodes']:>4} {t['pc_success']:>9.1f} "
                     f"{t['ci95'][0]:>6.1f}-{t['ci95'][1]:<6.1f} {t['mean_plan_length'] or 0:>5.2f} "
                     f"{t['mean_oracle_plan_length'] or 0:>6.2f}  {fails}")
    o = info["overall"]
    if o["n_episodes"]:
        lines.append(f"{'all':6} {'all':{w}} {o['n_episodes']:>4} {o['pc_success']:>9.1f} "
                     f"{o['ci95'][0]:>6.1f}-{o['ci95'][1]:<6.1f}   eval {o['eval_s']:.1f} s ({o['eval_ep_s']:.2f} s/ep)")
    return "\n".join(lines)


# ---- compare -----------------------------------------------------------------------------------
def load_eval_info(run: str | Path) -> dict[str, Any]:
    """A run's eval_info.json, from the run folder or the file itself."""
    path = Path(run)
    if path.is_dir():
        path = path / "eval_info.json"
    if not path.is_file():
        raise ValueError(f"no eval_info.json at {run!r} (give a palme-eval output folder or its eval_info.json)")
    info = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(info, dict) or not {"per_task", "per_group", "overall"} <= set(info):
        raise ValueError(f"{path} is not a palme-eval eval_info.json (needs per_task, per_group, overall)")
    return info


def compare(runs: list[str], labels: list[str] | None = None, out: str | Path | None = None) -> tuple[str, Path]:
    """Write compare.md and compare.html for the runs; returns (markdown, output folder)."""
    if len(runs) < 1:
        raise ValueError("compare needs at least one run folder")
    infos = [load_eval_info(r) for r in runs]
    if labels and len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    names = labels or [run_label(info, Path(r).name) for info, r in zip(infos, runs, strict=True)]
    names = [n if names.count(n) == 1 else f"{n} ({Path(r).name})" for n, r in zip(names, runs, strict=True)]
    out_dir = Path(out) if out else Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    md = compare_markdown(infos, names)
    write_atomic(out_dir / "compare.md", md)
    write_atomic(out_dir / "compare.html", render_compare(infos, names))
    return md, out_dir


def compare_main(argv: list[str]) -> None:
    """`palme-eval compare RUN ... [--labels a,b] [--out DIR]`."""
    ap = argparse.ArgumentParser(prog="palme-eval compare", description="put palme-eval runs side by side")
    ap.add_argument("runs", nargs="+", help="output folders of palme-eval (or their eval_info.json)")
    ap.add_argument("--labels", help="comma-separated names of the runs (default: planner[:checkpoint])")
    ap.add_argument("--out", help="folder for compare.md and compare.html (default outputs/compare/<time>)")
    args = ap.parse_args(argv)
    try:
        md, out_dir = compare(args.runs, args.labels.split(",") if args.labels else None, args.out)
    except ValueError as exc:
        ap.error(str(exc))
    print(md)
    print(f"wrote {out_dir / 'compare.md'} and {out_dir / 'compare.html'}")


def rerender_report(run: str | Path) -> Path:
    """Rewrite a run's report.html from its eval_info.json and episodes.jsonl (e.g. after a report change)."""
    run = Path(run)
    info = load_eval_info(run)
    jsonl = run / "episodes.jsonl"
    episodes = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []
    cfg = info.get("config", {})
    title = f"palme-eval: {cfg.get('label') or cfg.get('planner', '?')} on {cfg.get('env', '?')}"
    write_atomic(run / "report.html", render_report(info, episodes, title=title))
    return run / "report.html"


# ---- entry point -------------------------------------------------------------------------------
def _hydra_main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    register_configs()

    @hydra.main(config_path="pkg://configs", config_name="eval", version_base="1.3")
    @user_errors("palme-eval")
    def _run(dcfg) -> None:
        cfg: EvalConfig = OmegaConf.to_object(dcfg)
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            info = evaluate(cfg, out_dir)
        except KeyboardInterrupt:
            sys.exit(130)
        if dist_rank_world()[0] == 0:
            print(summary_table(info))
            print(f"outputs in {out_dir} (report.html, eval_info.json, episodes.jsonl, videos/)")

    run_cli("palme-eval", _run)  # a bad setting, seed range or checkpoint: one line, exit 2


def main() -> None:
    """Console script: `palme-eval compare ...` or the hydra evaluation app."""
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        compare_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        with user_errors("palme-eval report"):
            for run in sys.argv[2:]:
                print(f"wrote {rerender_report(run)}")
        return
    _hydra_main()


if __name__ == "__main__":
    main()
