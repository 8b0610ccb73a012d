"""`palme-run`: one task episode with any planner; prints the steps live, writes episode.mp4 and trace.json.

    palme-run task=stack seed=3 planner=oracle
    palme-run env=push task=sort_corners seed=0
    palme-run planner=palme checkpoint=PATH instruction="stack the red cube on the blue cube"
    palme-run interactive=true            # instructions from stdin, one after another, same scene
    palme-run ... hydra.run.dir=DIR       # chooses the output folder
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from agent.config import RunConfig, register_configs
from agent.loop import Agent, EpisodeTrace, StepRecord, StepStart
from agent.planners import planner_from_options, planner_names


def check_names(cfg: RunConfig) -> None:
    """Fail at start on unknown env / task / split / planner names, listing the known ones."""
    from envs import load_world
    from envs.tasks.base import SPLITS, task_names

    load_world(cfg.env)
    if cfg.task not in task_names(cfg.env):
        raise ValueError(f"unknown task {cfg.task!r} for env {cfg.env!r}; known tasks: {task_names(cfg.env)}")
    if cfg.split not in SPLITS:
        raise ValueError(f"unknown split {cfg.split!r}; known splits: {list(SPLITS)}")
    if cfg.planner not in planner_names():
        raise ValueError(f"unknown planner {cfg.planner!r}; known planners: {planner_names()}")


class LivePrinter:
    """Prints each step as it starts and ends, and keeps the video caption on the current step."""

    def __init__(self, out: TextIO, recorder: Any = None) -> None:
        self.out = out
        self.recorder = recorder

    def start(self, s: StepStart) -> None:
        label = f"step {s.index + 1}: {' '.join(s.text.split())[:100]}"
        if self.recorder is not None:
            self.recorder.text = label
            self.recorder.capture()  # a frame at the start of every step, captioned with it
        print(label, end=" ... ", file=self.out, flush=True)

    def end(self, r: StepRecord) -> None:
        print(f"{r.feedback} ({r.end_t - r.start_t} control steps)", file=self.out, flush=True)


def outcome_line(trace: EpisodeTrace) -> str:
    """One line saying how an episode ended."""
    if trace.success:
        head = "SUCCESS"
    elif trace.success is None:
        head = "SUCCESS UNKNOWN"
    else:
        head = f"FAILURE ({trace.failure})"
    return f"{head}: {trace.reason} [{len(trace.steps)} steps, {trace.control_steps} control steps, {trace.wall_s:.1f} s]"


def run(cfg: RunConfig, out_dir: str | Path, stdin: Iterable[str] | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run palme-run with a config into `out_dir`; returns what was written to trace.json."""
    from envs import make_env

    check_names(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    planner = planner_from_options(cfg.planner, cfg.planner_options())
    kwargs: dict[str, Any] = {"split": cfg.split}
    if cfg.image_size is not None:
        kwargs["image_size"] = tuple(cfg.image_size)
    env = make_env(cfg.env, cfg.task, **kwargs)
    recorder = None
    try:
        options = {"instruction": cfg.instruction} if cfg.instruction is not None else None
        env.reset(seed=cfg.seed, options=options)
        u = env.unwrapped
        if cfg.video:
            from envs.video import VideoRecorder

            h, w = u.image_size
            recorder = VideoRecorder(u, fps=cfg.fps, size=(h * cfg.video_scale, w * cfg.video_scale))
        printer = LivePrinter(out, recorder)
        agent = Agent(
            planner, max_steps=cfg.max_steps, max_consecutive_failures=cfg.max_consecutive_failures,
            on_step_start=printer.start, on_step_end=printer.end,
        )
        traces = []
        instructions = _instructions(cfg, u, stdin, out)
        for instruction in instructions:
            print(f"instruction: {instruction}", file=out, flush=True)
            if not u.set_instruction(instruction):
                print("(the task cannot parse this instruction: success unknown; the planner's `done` ends it)",
                      file=out, flush=True)
            trace = agent.run(env, seed=cfg.seed)
            traces.append(trace)
            print(outcome_line(trace), file=out, flush=True)
            if recorder is not None:
                recorder.text = outcome_line(trace).split(" [")[0][:80]
                for _ in range(max(1, cfg.fps)):  # hold the outcome on screen for a second
                    recorder.capture()
        result = _trace_file(cfg, traces)
        (out_dir / "trace.json").write_text(json.dumps(result, indent=2))
        if recorder is not None:
            recorder.save(out_dir / "episode.mp4")
    finally:
        if recorder is not None:
            recorder.detach()
        env.close()
    print(f"outputs in {out_dir} (trace.json{', episode.mp4' if cfg.video else ''})", file=out, flush=True)
    return result


def _instructions(cfg: RunConfig, u: Any, stdin: Iterable[str] | None, out: TextIO) -> Iterator[str]:
    """The sampled (or given) instruction; in interactive mode, then every line read from stdin."""
    if not cfg.interactive:
        yield u.task_description
        return
    if cfg.instruction is not None:
        yield cfg.instruction
    print(f"scene: {', '.join(u.names)}. Type an instruction per line (empty line or EOF ends).", file=out, flush=True)
    lines = stdin if stdin is not None else sys.stdin
    for line in lines:
        text = line.strip()
        if not text or text.lower() in ("quit", "exit"):
            return
        yield text


def _checkpoint_used(cfg: RunConfig) -> str | None:
    """The model folder a model planner loaded (the shipped default when none was given); None for the others."""
    if cfg.planner not in ("palme", "text_only"):
        return cfg.checkpoint
    from agent.planners import model_dir

    return str(model_dir(cfg.checkpoint))


def _trace_file(cfg: RunConfig, traces: list[EpisodeTrace]) -> dict[str, Any]:
    """trace.json: one episode's trace at the top level, or (interactive) every episode under `episodes`."""
    head = {"env": cfg.env, "task": cfg.task, "seed": cfg.seed, "split": cfg.split, "planner": cfg.planner,
            "checkpoint": _checkpoint_used(cfg)}
    if not cfg.interactive and len(traces) == 1:
        return head | traces[0].to_dict()
    known = [t for t in traces if t.success_known]
    return head | {
        "interactive": True,
        "success": bool(known) and all(bool(t.success) for t in known),
        "success_known": bool(traces) and len(known) == len(traces),
        "episodes": [t.to_dict() for t in traces],
    }


def main() -> None:
    """Console script (hydra app): `palme-run key=value ...`."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    register_configs()

    @hydra.main(config_path="pkg://configs", config_name="run", version_base="1.3")
    def _app(dcfg) -> None:
        try:
            cfg: RunConfig = OmegaConf.to_object(dcfg)
            run(cfg, HydraConfig.get().runtime.output_dir)
        except ValueError as err:  # bad names or values: one clear line, no traceback
            print(f"palme-run: error: {err}", file=sys.stderr)
            sys.exit(2)

    _app()


if __name__ == "__main__":
    main()
