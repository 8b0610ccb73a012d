"""`palme-run`: one task episode with any planner; prints the steps live, writes episode.mp4 and trace.json.

    palme-run task=stack seed=3 planner=oracle
    palme-run env=push task=sort_corners seed=0
    palme-run planner=palme checkpoint=PATH instruction="stack the red cube on the blue cube"
    palme-run interactive=true            # instructions from stdin, one after another, same scene
    palme-run planner=human record=data/mine   # you type each step; the episode is appended to a dataset
    palme-run ... hydra.run.dir=DIR       # chooses the output folder

Set-up errors (names, a seed outside the split's range, an output folder that cannot be written,
a checkpoint the loader refuses, an instruction the env refuses) stop it before the first episode
with one line and exit status 2. In an interactive session a line the env refuses is answered
with `refused: ...` and the session goes on; trace.json (and the video) are rewritten after every
episode, so an interrupted session keeps the episodes it finished.

Teaching by hand: `record=DIR` appends each finished episode (any planner; in an interactive session
one per instruction) to a dataset folder in palme-collect's format, through palme-collect's recorder
and writer with its checks (training.recorder.RunRecording: the folder is probed, locked, and refused
in one line when it is foreign or does not match); `palme-dataset validate DIR` checks it and
`palme-train data.dirs=[DIR]` trains on it. As in palme-collect, a failed episode is kept only with
`keep_failures=true`; an episode of unknown success (an instruction the task cannot parse) is not
recorded, and a line says so. The live view (`view`, agent.cli.live_view) shows the scene after every
step: a window where a display works, else live.png in the run folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from agent.cli.common import check_writable, run_cli, user_errors
from agent.config import RunConfig, register_configs
from agent.loop import Agent, EpisodeTrace, StepRecord, StepStart, printable
from agent.planners import HumanPlanner, planner_from_options, planner_names
from envs.fileio import write_atomic


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


def check_seed(cfg: RunConfig) -> int:
    """The scene seed: `cfg.seed` if it lies in the split's seed range (ValueError naming the range otherwise),
    the range's first seed when None."""
    from envs.tasks.base import check_seeds, seed_range

    if cfg.seed is None:
        return seed_range(cfg.split)[0]
    return check_seeds(cfg.split, cfg.seed, given=f"seed={cfg.seed} with split={cfg.split}")[0]


def shown(text: object, limit: int | None = 100) -> str:
    """Planner or user text as one line for the terminal: whitespace runs become one space, other
    non-printable characters are escaped by `agent.loop.printable` (ESC reads `\\x1b`, so text cannot
    drive the terminal), cut at `limit` characters."""
    line = printable(" ".join(str(text).split()))
    return line if limit is None else line[:limit]


class LivePrinter:
    """Prints each step as it starts and ends, and keeps the video caption on the current step."""

    def __init__(self, out: TextIO, recorder: Any = None) -> None:
        self.out = out
        self.recorder = recorder

    def start(self, s: StepStart) -> None:
        label = f"step {s.index + 1}: {shown(s.text)}"
        if self.recorder is not None:
            self.recorder.text = label
            self.recorder.capture()  # a frame at the start of every step, captioned with it
        print(label, end=" ... ", file=self.out, flush=True)

    def end(self, r: StepRecord) -> None:
        print(f"{shown(r.feedback, limit=None)} ({r.end_t - r.start_t} control steps)", file=self.out, flush=True)


def outcome_line(trace: EpisodeTrace) -> str:
    """One line saying how an episode ended."""
    if trace.success:
        head = "SUCCESS"
    elif trace.success is None:
        head = "UNKNOWN"  # the reason says why: "success unknown: the task could not parse ..."
    else:
        head = f"FAILURE ({trace.failure})"
    return f"{head}: {trace.reason} [{len(trace.steps)} steps, {trace.control_steps} control steps, {trace.wall_s:.1f} s]"


def run(cfg: RunConfig, out_dir: str | Path, stdin: Iterable[str] | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run palme-run with a config into `out_dir`; returns what was written to trace.json.

    Everything is checked before the first episode (ValueError): names, the seed (`cfg.seed` is set
    to the one used), the block set (push only), `out_dir` writable, the planner (a model planner loads its checkpoint), the
    env and the given instruction, the live view, the `record` folder. trace.json and episode.mp4 are
    rewritten, and a recorded episode appended, after every episode. `stdin` (default sys.stdin) gives
    the instructions of an interactive session and the `human` planner's steps, from one stream.
    """
    from envs import make_env

    check_names(cfg)
    cfg.seed = check_seed(cfg)
    # block_set: only env=push takes one (ValueError otherwise); blank_frames blanks perception's camera too
    kwargs = cfg.env_kwargs(cfg.env, cfg.split, cfg.blank_frames)
    if cfg.image_size is not None:
        kwargs["image_size"] = tuple(cfg.image_size)
    out_dir = check_writable(out_dir, "output folder")
    planner = planner_from_options(cfg.planner, cfg.planner_options())
    lines = Lines(stdin if stdin is not None else sys.stdin)
    if isinstance(planner, HumanPlanner):  # its steps come from the same stream as the instructions
        planner.stdin, planner.stdout = lines, out
    env = make_env(cfg.env, cfg.task, **kwargs)
    video = view = recording = None
    traces: list[EpisodeTrace] = []
    try:
        options = {"instruction": cfg.instruction} if cfg.instruction is not None else None
        env.reset(seed=cfg.seed, options=options)
        u = env.unwrapped
        from agent.cli.live_view import open_live_view, resolve_view

        mode = resolve_view(cfg.view, cfg.interactive or cfg.planner == "human")  # window without a display: refused
        if cfg.record is not None:
            recording = _open_recording(cfg, env)
        view = open_live_view(mode, env, out_dir, out)
        if cfg.video:
            from envs.video import VideoRecorder

            h, w = u.image_size
            video = VideoRecorder(u, fps=cfg.fps, size=(h * cfg.video_scale, w * cfg.video_scale))
        printer = LivePrinter(out, video)
        hooks = recording.hooks() if recording is not None else {}
        agent = Agent(
            planner, executor=cfg.executor(), max_steps=cfg.max_steps,
            max_consecutive_failures=cfg.max_consecutive_failures, on_step_start=_chain(printer.start, hooks.get("on_step_start")),
            on_step_end=_chain(printer.end, hooks.get("on_step_end"), _view_step(view)),
            on_control=hooks.get("on_control"),
        )
        for instruction in _instructions(cfg, u, lines, out):
            if cfg.planner != "human":  # the human planner shows it with the scene's objects
                print(f"instruction: {shown(instruction, limit=None)}", file=out, flush=True)
            try:
                parsed = u.set_instruction(instruction)
            except ValueError as err:  # a line the env refuses: said, and the session goes on
                if not cfg.interactive:
                    raise
                print(f"refused: {shown(err, limit=None)}; the session goes on", file=out, flush=True)
                continue
            if not parsed:
                print("(the task cannot parse this instruction: success unknown; the planner's `done` ends it)",
                      file=out, flush=True)
            if view is not None:
                view.show(f"instruction: {shown(instruction, limit=120)}")
            if recording is not None:
                recording.begin()
            trace = agent.run(env, seed=cfg.seed)
            traces.append(trace)
            print(shown(outcome_line(trace), limit=None), file=out, flush=True)
            if recording is not None:
                print(shown(recording.add(trace), limit=None), file=out, flush=True)
            if view is not None:
                view.show(shown(outcome_line(trace).split(" [")[0], limit=120))
            if video is not None:
                video.text = shown(outcome_line(trace).split(" [")[0], limit=80)
                for _ in range(max(1, cfg.fps)):  # hold the outcome on screen for a second
                    video.capture()
            result = _save(cfg, traces, out_dir, video, recording)  # after every episode: a crash loses none
        if not traces:
            result = _save(cfg, traces, out_dir, video, recording)
    finally:
        if video is not None:
            video.detach()
        if view is not None:
            view.close()
        if recording is not None:
            recording.close()
        env.close()
    print(f"outputs in {out_dir} (trace.json{', episode.mp4' if cfg.video else ''})", file=out, flush=True)
    if recording is not None:
        print(f"recorded {len(recording.recorded)} episode(s) into {recording.root} (check: palme-dataset validate "
              f"{recording.root}; fine-tune: palme-train init_from=... data.dirs=[{recording.root}])", file=out, flush=True)
    return result


class Lines:
    """One stream of input lines read two ways: iterated (instructions) and by `readline()` (the human
    planner's steps; "" at the end), so both take their lines in order from the same source."""

    def __init__(self, source: Iterable[str]) -> None:
        self._it = iter(source)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def readline(self) -> str:
        return next(self._it, "")


def _chain(*hooks: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """One agent hook that calls each given hook in order."""
    todo = [h for h in hooks if h is not None]

    def call(arg: Any) -> None:
        for h in todo:
            h(arg)

    return call


def _view_step(view: Any) -> Callable[[StepRecord], None] | None:
    """The live view's step-end hook: the scene with the step and its result."""
    if view is None:
        return None

    def show(r: StepRecord) -> None:
        view.show(f"step {r.index + 1}: {shown(r.step, limit=80)}: {shown(r.feedback, limit=80)}")

    return show


def _open_recording(cfg: RunConfig, env: Any) -> Any:
    """`record=DIR`: palme-collect's recorder and writer on the folder (training.recorder.RunRecording), which
    probes, locks and checks it; one-line ValueError when it is refused.

    The CLI is the application layer: this is where palme-run reaches down into `training/`, only with
    `record` set (agent's library code never imports training)."""
    from training.recorder import RunRecording

    return RunRecording(cfg.record, env, task=cfg.task, split=cfg.split, seed=cfg.seed, planner=cfg.planner,
                        keep_failures=cfg.keep_failures, fps=cfg.record_fps)


def _save(cfg: RunConfig, traces: list[EpisodeTrace], out_dir: Path, recorder: Any, recording: Any = None) -> dict[str, Any]:
    """Write trace.json and (with frames) episode.mp4 for the episodes so far, each replaced whole; returns the trace."""
    result = _trace_file(cfg, traces)
    if recording is not None:  # where the episodes went: the dataset folder and the indices written there
        result["record"] = {"folder": str(recording.root), "episodes": list(recording.recorded)}
    write_atomic(out_dir / "trace.json", json.dumps(result, indent=2), fsync=False)
    if recorder is not None:
        partial = out_dir / ".episode.partial.mp4"
        recorder.save(partial)
        os.replace(partial, out_dir / "episode.mp4")
    return result


def _instructions(cfg: RunConfig, u: Any, lines: Iterable[str], out: TextIO) -> Iterator[str]:
    """The sampled (or given) instruction; in interactive mode, then every line read from `lines`."""
    if not cfg.interactive:
        yield u.task_description
        return
    if cfg.instruction is not None:
        yield cfg.instruction
    print(f"scene: {', '.join(u.names)}. Type an instruction per line (empty line or EOF ends).", file=out, flush=True)
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
            "checkpoint": _checkpoint_used(cfg), **({"block_set": cfg.block_set} if cfg.block_set else {})}
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
    @user_errors("palme-run")
    def _app(dcfg) -> None:
        cfg: RunConfig = OmegaConf.to_object(dcfg)
        try:
            run(cfg, HydraConfig.get().runtime.output_dir)
        except KeyboardInterrupt:  # Ctrl-C: the finished episodes are already on disk
            print("\ninterrupted", file=sys.stderr)
            sys.exit(130)

    run_cli("palme-run", _app)  # bad names, values, paths or checkpoints: one clear line, exit 2


if __name__ == "__main__":
    main()
