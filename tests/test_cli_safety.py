"""palme-run, palme-eval and palme-collect refuse set-up errors before the first episode, lose nothing, leave no orphans.

Issue #17, items 5 (checkpoints that cannot be loaded are refused, never scored), 8 (a bad
interactive line is refused and the session goes on; results written after every episode),
10 (seed ranges checked at both ends), 14 (workers die with their parent), 15 (unwritable output
locations refused at start), 16 (one line and exit 2 for user errors) and 18 (planner and user text
printed without control characters).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli.common import error_line
from agent.evaluate import EvalConfig, evaluate, plan_jobs
from agent.planners import PLANNERS, OraclePlanner, register_planner
from envs.tasks.base import check_seeds

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "palme-tiny"


def _cli(module: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _error_lines(stderr: str) -> list[str]:
    """stderr without pybullet's build banner (printed by its C code at import)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("pybullet build time")]


def _unwritable(tmp_path: Path) -> Path:
    """A folder path that cannot be created or written, even by root (root ignores permission bits)."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("needs /sys to find a location root cannot write")
        return Path("/sys/palme-cli-safety/out")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


# ---- item 16 (+10, 15): one line, exit 2, for every kind of user error, through the real CLIs ---------------
CASES = {  # id: (module, prog, arguments, what the line must say)
    "collect-type": ("training.collect", "palme-collect", ["episodes=abc"], ["'episodes' expects int"]),
    "collect-task": ("training.collect", "palme-collect", ["task=juggle"], ["unknown task 'juggle'", "known tasks"]),
    "eval-training-seeds": ("agent.evaluate", "palme-eval",  # item 10's minimal input
                            ["planner=oracle", "tasks=[grasp]", "episodes=3", "seed_offset=-3", "progress=false"],
                            ["999997..999999", "L1 seed range [1000000, 2000000)"]),
    "run-unwritable": ("agent.cli.run", "palme-run", ["planner=oracle", "task=grasp", "video=false"], []),  # item 15
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line_and_exit_2_without_running(tmp_path, case):
    module, prog, args, says = CASES[case]
    run_dir = _unwritable(tmp_path) if case == "run-unwritable" else tmp_path / "run"
    extra = [f"out={tmp_path / 'data'}"] if prog == "palme-collect" else []
    proc = _cli(module, *args, *extra, f"hydra.run.dir={run_dir}")
    lines = _error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr
    assert all(s in lines[0] for s in says) and "Traceback" not in proc.stderr, lines[0]
    if case == "run-unwritable":
        assert str(run_dir.parent) in lines[0]
    # Nothing ran: no episode, no trace, no dataset.
    assert not (run_dir / "episodes.jsonl").exists() and not (run_dir / "trace.json").exists()
    assert not (tmp_path / "data" / "meta").exists()


def test_error_line_keeps_bugs_as_tracebacks():
    assert error_line(ValueError("bad\n  value")) == "bad value"
    assert error_line(PermissionError(13, "Permission denied", "/x")) == "Permission denied: /x"
    assert error_line(RuntimeError("a bug")) is None and error_line(KeyError("k")) is None
    assert error_line(OSError(5, "Input/output error")) is None  # not something a user's path causes


# ---- item 10: both ends of every seed range ------------------------------------------------------------------
def test_seed_ranges_are_checked_at_both_ends(tmp_path):
    from agent.cli.run import run
    from agent.config import RunConfig
    from training.collect import CollectConfig, collect

    assert check_seeds("L1", 1_000_000, 3) == (1_000_000, 1_000_002)
    assert check_seeds("train", 999_999) == (999_999, 999_999)
    with pytest.raises(ValueError, match=r"seeds 999997\.\.999999, not inside the L1 seed range \[1000000, 2000000\)"):
        check_seeds("L1", 999_997, 3)
    with pytest.raises(ValueError, match=r"seeds 1999999\.\.2000000"):
        check_seeds("L4", 1_999_999, 2)
    # palme-eval: the last seed of the range is fine, one past it is not; a negative offset never is.
    assert plan_jobs(EvalConfig(planner="oracle", tasks=["grasp"], episodes=1, seed_offset=999_999))[0].seed == 1_999_999
    with pytest.raises(ValueError, match=r"seed_offset=999999 with episodes=2 gives seeds 1999999\.\.2000000"):
        plan_jobs(EvalConfig(planner="oracle", tasks=["grasp"], episodes=2, seed_offset=999_999))
    with pytest.raises(ValueError, match=r"seed_offset=-1 with episodes=1 gives seed 999999, not inside the L2 seed"):
        plan_jobs(EvalConfig(planner="oracle", tasks=["grasp"], splits=["L2", "L3"], episodes=1, seed_offset=-1))
    # palme-collect: every seed it may try lies in the split's range (train seeds never in evaluation).
    with pytest.raises(ValueError, match=r"seed_start=5 with max_attempts=3 gives seeds 5\.\.7, not inside the L1"):
        collect(CollectConfig(task="grasp", split="L1", seed_start=5, episodes=1, out=str(tmp_path / "d"), progress=False))
    with pytest.raises(ValueError, match=r"seeds 999999\.\.1000001, not inside the train seed range"):
        collect(CollectConfig(task="grasp", seed_start=999_999, episodes=1, out=str(tmp_path / "d"), progress=False))
    assert not (tmp_path / "d").exists()
    # palme-run with a split: its seed lies in the split's range; no seed means the range's first one.
    with pytest.raises(ValueError, match=r"seed=5 with split=L1 gives seed 5, not inside the L1 seed range"):
        run(RunConfig(task="grasp", planner="oracle", split="L1", seed=5, video=False), tmp_path / "r", out=io.StringIO())
    result = run(RunConfig(task="grasp", planner="oracle", split="L1", max_steps=1, video=False), tmp_path / "r",
                 out=io.StringIO())
    assert result["seed"] == 1_000_000 and result["split"] == "L1"


# ---- item 15: output locations are checked for writing before any episode -----------------------------------
def test_unwritable_outputs_are_refused_before_any_episode(tmp_path):
    from agent.cli.run import run
    from agent.config import RunConfig
    from training.collect import CollectConfig, collect

    bad = _unwritable(tmp_path)
    with pytest.raises(ValueError, match=rf"out folder '{bad}' is not writable"):
        collect(CollectConfig(task="grasp", episodes=1, out=str(bad), progress=False))
    with pytest.raises(ValueError, match=rf"run folder '{bad}' is not writable"):
        evaluate(EvalConfig(planner="oracle", tasks=["grasp"], episodes=1, progress=False), bad)
    out = io.StringIO()
    with pytest.raises(ValueError, match=rf"output folder '{bad}' is not writable"):
        run(RunConfig(task="grasp", planner="oracle", video=False), bad, out=out)
    assert "step 1" not in out.getvalue()  # no episode started


# ---- item 5: a checkpoint that cannot be loaded is refused at start, never scored ---------------------------
def _broken_checkpoint(kind: str, tmp_path: Path) -> Path:
    import shutil

    if kind == "plain-file":
        path = tmp_path / "model.bin"
        path.write_bytes(b"not a checkpoint")
        return path
    path = tmp_path / kind
    if kind == "empty-folder":
        path.mkdir()
        return path
    shutil.copytree(SHIPPED, path)
    weights = path / "model.safetensors"
    if kind == "no-safetensors":
        weights.unlink()
    elif kind == "truncated-safetensors":
        with weights.open("r+b") as f:
            f.truncate(weights.stat().st_size // 2)
    elif kind == "wrong-shape":
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(weights), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        key = next(k for k, t in tensors.items() if t.ndim == 2)
        tensors[key] = tensors[key][:-1].clone()  # one row short
        save_file(tensors, str(weights), metadata=meta)
    return path


BROKEN = ["plain-file", "empty-folder", "no-safetensors", "truncated-safetensors", "wrong-shape"]


@pytest.mark.parametrize("kind", BROKEN)
def test_checkpoints_that_cannot_be_loaded_are_refused_before_any_episode(tmp_path, kind):
    from agent.cli.run import run
    from agent.config import RunConfig
    from training.collect import CollectConfig, collect

    ckpt = _broken_checkpoint(kind, tmp_path)
    with pytest.raises(ValueError) as eval_err:  # palme-eval: not a 0% model, a refusal with the loader's message
        evaluate(EvalConfig(checkpoint=str(ckpt), tasks=["grasp"], episodes=2, progress=False), tmp_path / "eval")
    assert str(ckpt) in str(eval_err.value) and "\n" not in str(eval_err.value)
    assert not (tmp_path / "eval" / "episodes.jsonl").exists()
    with pytest.raises(ValueError) as run_err:  # palme-run: refused at start
        run(RunConfig(task="grasp", checkpoint=str(ckpt), video=False), tmp_path / "run", out=io.StringIO())
    assert str(run_err.value) == str(eval_err.value) and not (tmp_path / "run" / "trace.json").exists()
    with pytest.raises(ValueError) as collect_err:  # palme-collect planner=palme: refused before any worker starts
        collect(CollectConfig(task="grasp", planner="palme", checkpoint=str(ckpt), episodes=1, workers=2,
                              out=str(tmp_path / "data"), progress=False))
    assert str(collect_err.value) == str(eval_err.value) and not (tmp_path / "data" / "meta").exists()


class _CountingPlanner(OraclePlanner):
    """The oracle, counting how often it is built (a stand-in for a model planner's checkpoint loads)."""

    name = "test_counting"
    built = 0

    def __init__(self) -> None:
        type(self).built += 1


def test_in_process_evaluation_builds_its_planner_once(tmp_path):
    register_planner(_CountingPlanner)
    try:
        _CountingPlanner.built = 0
        info = evaluate(EvalConfig(planner="test_counting", tasks=["grasp"], episodes=2, videos_per_task=0,
                                   progress=False, max_steps=1), tmp_path / "run")
    finally:
        PLANNERS.pop("test_counting")
    assert info["overall"]["n_episodes"] == 2 and _CountingPlanner.built == 1  # the parent's check is the one used


class _ParentOnlyPlanner(OraclePlanner):
    """Registered in this process only: worker processes cannot build it (their set-up fails)."""

    name = "test_parent_only"


def test_a_worker_that_cannot_set_itself_up_stops_the_run_without_scoring(tmp_path):
    from agent.workers import WorkerSetupError

    register_planner(_ParentOnlyPlanner)
    try:
        with pytest.raises(WorkerSetupError, match="unknown planner 'test_parent_only'"):
            evaluate(EvalConfig(planner="test_parent_only", tasks=["grasp"], episodes=2, workers=2, videos_per_task=0,
                                progress=False), tmp_path / "run")
    finally:
        PLANNERS.pop("test_parent_only")
    assert (tmp_path / "run" / "episodes.jsonl").read_text() == ""  # nothing scored
    assert not (tmp_path / "run" / "eval_info.json").exists()


# ---- items 8 and 18: an interactive session survives a bad line, keeps every finished episode ---------------
def test_interactive_bad_line_is_refused_and_every_episode_is_kept(tmp_path):
    from agent.cli.run import run
    from agent.config import RunConfig
    from envs import make_env

    env = make_env("pickplace", "grasp", obs_type="state")
    env.reset(seed=1)
    valid = env.unwrapped.task_description
    env.close()
    seen: list[int] = []

    def lines():
        yield valid + "\n"
        # Episode 1 is on disk before the next line is read.
        seen.append(len(json.loads((tmp_path / "trace.json").read_text())["episodes"]))
        assert (tmp_path / "episode.mp4").stat().st_size > 0
        yield "x" * 300 + "\n"  # the minimal input: longer than the env takes
        yield "pick up the \x1b[2Jred cube\n"  # terminal control characters in user text
        yield valid + "\n"
        seen.append(len(json.loads((tmp_path / "trace.json").read_text())["episodes"]))
        raise KeyboardInterrupt  # the session dies: nothing it finished is lost

    out = io.StringIO()
    cfg = RunConfig(task="grasp", seed=1, planner="oracle", interactive=True, image_size=[32, 32], fps=1)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path, stdin=lines(), out=out)
    text = out.getvalue()
    refused = [ln for ln in text.splitlines() if ln.startswith("refused: ")]
    assert len(refused) >= 1 and "256" in refused[0] and refused[0].endswith("the session goes on"), text
    assert "\x1b" not in text and "\\x1b" in text  # shown escaped, not sent to the terminal
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert seen[0] == 1 and len(trace["episodes"]) == seen[1] >= 2
    assert trace["episodes"][0]["success"] is True and trace["episodes"][-1]["success"] is True
    assert trace["episodes"][-1]["instruction"] == valid and (tmp_path / "episode.mp4").stat().st_size > 0


def test_live_printer_escapes_planner_text():
    from agent.cli.run import LivePrinter
    from agent.loop import StepStart

    out = io.StringIO()
    LivePrinter(out).start(StepStart(index=0, obs={}, text="pick up\x1b]0;owned\x07 the red cube\r\nok", call=None,
                                     error=None, t=0))
    assert out.getvalue() == "step 1: pick up\\x1b]0;owned\\x07 the red cube ok ... "


# ---- item 14: no orphans ------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process, from /proc."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, found, todo = _children(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_killing_palme_collect_leaves_no_orphans(tmp_path):
    cmd = [sys.executable, "-m", "training.collect", "task=grasp", "episodes=200", "workers=2", "fps=1",
           "image_size=[32,32]", f"out={tmp_path / 'data'}", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    family: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            family = _descendants(proc.pid)
            if len(family) >= 4:  # resource tracker, forkserver and its two workers
                break
            time.sleep(0.2)
        assert proc.poll() is None and len(family) >= 4, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        time.sleep(1.0)  # the workers are inside their initializer or an episode
        family = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in family if _alive(p)]
        assert not left, f"processes left running after the parent was killed: {left}"
    finally:
        for pid in family:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


# ---- review of #17: a refused start leaves no run folder; a Rust panic is one failed episode ----------------
def test_a_refused_start_removes_the_run_folder_it_created_and_keeps_one_that_existed(tmp_path):
    """palme-run, palme-eval, palme-collect refused at set-up (a checkpoint that does not exist, a writer lock that
    is a link): hydra's folder (.hydra/, the job's log) is gone with the parents the run created; a folder that
    existed before the run keeps everything."""
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / ".writer.lock").symlink_to(tmp_path / "victim.txt")
    missing = f"checkpoint={tmp_path / 'no-such-model'}"
    runs = {  # name: (module, arguments, hydra.run.dir)
        "run": ("agent.cli.run", ["planner=palme", missing], tmp_path / "new" / "run" / "a"),
        "eval": ("agent.evaluate", ["planner=palme", missing], existing),
        "collect": ("training.collect", ["episodes=1", f"out={data}", "progress=false"], tmp_path / "new-c" / "b"),
    }
    procs = {name: subprocess.Popen([sys.executable, "-m", module, *args, f"hydra.run.dir={where}"], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (module, args, where) in runs.items()}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        lines = _error_lines(stderr)
        assert proc.returncode == 2 and len(lines) == 1 and ": error: " in lines[0], (name, stderr[-2000:])
    assert not (tmp_path / "new").exists() and not (tmp_path / "new-c").exists()
    assert (existing / "notes.txt").read_text() == "mine\n" and (existing / ".hydra").is_dir()
    assert not (tmp_path / "victim.txt").exists()  # the lock's target was never created


class _PanickingPlanner(OraclePlanner):
    """Tokenizes the instruction with the reviewer's hostile pre-tokenizer, straight through the Rust library."""

    name = "test_panicking"

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        data = json.loads((SHIPPED / "tokenizer.json").read_text())
        split = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, data["pre_tokenizer"]]}
        self.backend = Tokenizer.from_str(json.dumps(data))

    def next_step(self, ctx) -> str:
        self.backend.encode("a" * 64 + "b")  # pyo3_runtime.PanicException: a BaseException
        return "done"


def test_a_rust_panic_in_an_episode_is_an_exception_record_and_the_run_goes_on(tmp_path):
    from agent.eval_runner import EpisodeRunner
    from agent.evaluate import runner_settings

    cfg = EvalConfig(planner="oracle", tasks=["grasp"], episodes=1, videos_per_task=0, progress=False)
    job = plan_jobs(cfg)[0]
    runner = EpisodeRunner(runner_settings(cfg), tmp_path, planner=_PanickingPlanner())
    rec = runner.run(job)
    assert rec["failure"] == "exception" and not rec["success"], rec
    assert "PanicException" in rec["reason"] and "Regex search error" in rec["reason"], rec["reason"]
    runner.planner = OraclePlanner()
    assert runner.run(job)["success"]  # the same runner plays the next episode
    runner.close()
