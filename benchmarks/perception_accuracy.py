"""Accuracy and cost of camera-based perception (`envs.perception`) against the simulator's rows.

For each split, N scenes (tasks in turn, seeds `--seed-start`, `--seed-start + 1`, ...) are reset, the
fixed camera is rendered at `--size` (RGB + depth buffer), `Perception.estimate` reads the frame, and the
estimated rows are matched to the true rows (`env.object_rows()`, `env.zone_rows()`): optimal assignment
(scipy's Hungarian) when scipy is installed, else greedy nearest pairs, both on 3-D distance with a
penalty for a different colour, pairs further apart than 4 cm never matched. Reported per split:

  pos med / p95   position error (cm) of matched objects: median, 95th percentile
  colour / size / shape   fraction of matched objects with the true colour, size word, shape
  yaw med         yaw error (degrees) modulo the shape's symmetry
  missed (visible) / phantom   true objects without an estimate (in brackets: those with at least
                  VISIBLE_PX pixels in the frame, by the simulator's segmentation: the rest are hidden, e.g.
                  behind the arm) / estimates without a true object (totals)
  support         fraction of matched objects whose support (table, which cube, nothing) is right
  zone med / p95  zone centre error (cm); zones missed / phantom
  ms render / estimate   mean wall-clock milliseconds per frame (TinyRenderer at --size; the estimator),
                  and the estimator's CPU time (other load on the machine slows the wall clock)

`--arm-steps K` runs the oracle plan's skills for K control steps before the frame, so the arm is in view,
often over or holding a cube (occlusion). Seeds >= 3,000,000 are the benchmark's; tune on others.

    python benchmarks/perception_accuracy.py --scenes 20 --splits L1 L2 L3 --out outputs/perception.json
    python benchmarks/perception_accuracy.py --world push --size 360 640 --scenes 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from envs import load_world
from envs.catalogue import COLOR_NAMES, SHAPE_NAMES, SIZE_EDGES
from envs.geometry import support_graph
from envs.perception import DEFAULT_SIZES, Perception, render_for_perception
from envs.tasks.base import task_names

VISIBLE_PX = 40  # a missed object with at least this many pixels in the frame counts as "missed, visible"
GATE = 0.04  # m: estimates further than this from a true object never match it
COLOUR_PENALTY = 0.05  # m added to the cost of a pair of different colours
SYMMETRY = {"cube": math.pi / 2, "pentagon": 2 * math.pi / 5, "star": 2 * math.pi / 5, "moon": 2 * math.pi}

try:  # optimal assignment when scipy is there; the venv may not have it
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - depends on the environment
    linear_sum_assignment = None


def match(true: np.ndarray, est: np.ndarray) -> list[tuple[int, int]]:
    """(true index, estimate index) pairs: minimum total cost (scipy) or greedy cheapest-first, within GATE."""
    if len(true) == 0 or len(est) == 0:
        return []
    dist = np.linalg.norm(true[:, None, :3] - est[None, :, :3], axis=-1)
    cost = dist + COLOUR_PENALTY * (np.round(true[:, None, 8]) != np.round(est[None, :, 8]))
    if linear_sum_assignment is not None:
        big = np.where(dist <= GATE, cost, 1e6)
        rows, cols = linear_sum_assignment(big)
        return [(int(i), int(j)) for i, j in zip(rows, cols) if dist[i, j] <= GATE]
    pairs, used_t, used_e = [], set(), set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), cost.shape[1])
        if i in used_t or j in used_e or dist[i, j] > GATE:
            continue
        pairs.append((i, j))
        used_t.add(i)
        used_e.add(j)
    return pairs


def size_word(edge: float) -> str:
    return min(SIZE_EDGES, key=lambda s: abs(SIZE_EDGES[s] - edge))


def yaw_of(quat: np.ndarray) -> float:
    x, y, z, w = (float(v) for v in quat)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def yaw_error(a: float, b: float, period: float) -> float:
    d = (a - b + period / 2) % period - period / 2
    return abs(d)


def run_arm(env, steps: int) -> None:
    """Run the oracle's skills for `steps` control steps (replanning after each skill)."""
    from policies.base import run_skill

    start = env.t
    while env.t - start < steps and env.failure is None:
        plan = env.task.oracle_plan(env, env.goal)
        if not plan:
            break
        run_skill(env, plan[0], max_steps=steps - (env.t - start))


def visible_pixels(env, size: tuple[int, int]) -> list[int]:
    """Pixels of each object in the frame (the simulator's segmentation: the benchmark's ground truth only)."""
    import pybullet as p

    h, w = size
    _, _, _, _, seg = p.getCameraImage(w, h, env._view, env._proj, renderer=p.ER_TINY_RENDERER,
                                       physicsClientId=env.client)
    seg = np.asarray(seg).reshape(-1)
    return [int(np.count_nonzero(seg == body)) for body in env.object_ids]


def scene_record(env, world: str, est, true_rows: np.ndarray, true_zones: np.ndarray, visible: list[int]) -> dict:
    n = len(env.object_ids)
    t = true_rows[:n].astype(np.float64)
    e = est.objects[est.objects[:, -1] > 0.5].astype(np.float64)
    pairs = match(t, e)
    rec: dict = {"n_true": n, "n_est": len(e), "matched": len(pairs), "err": [], "colour": [], "size": [],
                 "shape": [], "yaw": [], "support": [], "conf_matched": [], "conf_phantom": []}
    to_true = {j: i for i, j in pairs}
    if world == "pickplace":
        true_sup = env.support_graph()
        est_sup = support_graph(e) if len(e) else []
    for i, j in pairs:
        rec["err"].append(float(np.linalg.norm(t[i, :3] - e[j, :3])))
        rec["colour"].append(bool(round(t[i, 8]) == round(e[j, 8])))
        rec["shape"].append(bool(round(t[i, 9]) == round(e[j, 9])))
        rec["size"].append(bool(size_word(t[i, 7]) == size_word(e[j, 7])) if world == "pickplace"
                           else bool(abs(t[i, 7] - e[j, 7]) < 1e-3))
        period = SYMMETRY[SHAPE_NAMES[round(t[i, 9])]]
        rec["yaw"].append(math.degrees(yaw_error(yaw_of(t[i, 3:7]), yaw_of(e[j, 3:7]), period)))
        rec["conf_matched"].append(float(est.confidence[j]))
        if world == "pickplace":
            s = est_sup[j]
            mapped = s if s is None or s < 0 else to_true.get(s, "unmatched")
            rec["support"].append(bool(mapped == true_sup[i]))
    matched_e = {j for _, j in pairs}
    rec["conf_phantom"] = [float(est.confidence[j]) for j in range(len(e)) if j not in matched_e]
    rec["missed"] = n - len(pairs)
    matched_t = {i for i, _ in pairs}
    rec["missed_visible"] = sum(1 for i in range(n) if i not in matched_t and visible[i] >= VISIBLE_PX)
    rec["visible_px"] = visible
    rec["phantom"] = len(e) - len(pairs)
    # zones: matched by colour
    tz = {round(r[8]): r for r in true_zones if r[-1] > 0.5}
    ez = {round(r[8]): r for r in est.zones if r[-1] > 0.5}
    rec["zone_err"] = [float(np.linalg.norm(tz[c][:2] - ez[c][:2])) for c in tz if c in ez]
    rec["zone_side_err"] = [float(abs(tz[c][7] - ez[c][7])) for c in tz if c in ez]
    rec["zones_missed"] = sum(c not in ez for c in tz)
    rec["zones_phantom"] = sum(c not in tz for c in ez)
    return rec


def summarise(recs: list[dict]) -> dict:
    def cat(key):
        return [v for r in recs for v in r[key]]

    def frac(key):
        v = cat(key)
        return float(np.mean(v)) if v else float("nan")

    def pct(key, q, scale=1.0):
        v = cat(key)
        return float(np.percentile(v, q) * scale) if v else float("nan")

    return {
        "scenes": len(recs),
        "objects": sum(r["n_true"] for r in recs),
        "matched": sum(r["matched"] for r in recs),
        "pos_median_cm": pct("err", 50, 100),
        "pos_p95_cm": pct("err", 95, 100),
        "pos_max_cm": pct("err", 100, 100),
        "colour_acc": frac("colour"),
        "size_acc": frac("size"),
        "shape_acc": frac("shape"),
        "yaw_median_deg": pct("yaw", 50),
        "yaw_p95_deg": pct("yaw", 95),
        "missed": sum(r["missed"] for r in recs),
        "missed_visible": sum(r["missed_visible"] for r in recs),
        "phantom": sum(r["phantom"] for r in recs),
        "support_acc": frac("support"),
        "zone_median_cm": pct("zone_err", 50, 100),
        "zone_p95_cm": pct("zone_err", 95, 100),
        "zone_side_median_cm": pct("zone_side_err", 50, 100),
        "zones_missed": sum(r["zones_missed"] for r in recs),
        "zones_phantom": sum(r["zones_phantom"] for r in recs),
        "conf_matched_mean": frac("conf_matched"),
        "conf_phantom_mean": frac("conf_phantom"),
        "ms_render": float(np.mean([r["ms_render"] for r in recs])),
        "ms_estimate": float(np.mean([r["ms_estimate"] for r in recs])),
        "cpu_ms_estimate": float(np.mean([r["cpu_ms_estimate"] for r in recs])),
    }


def make_env(world: str, task: str, split: str):
    load_world(world)
    if world == "pickplace":
        from envs.pickplace import PickPlaceEnv

        return PickPlaceEnv(task, obs_type="state", render_mode=None, split=split)
    from envs.push import PushEnv

    return PushEnv(task, obs_type="state", render_mode=None, split=split)


def run_split(world: str, split: str, scenes: int, seed0: int, size: tuple[int, int], arm_steps: int,
              verbose: bool) -> tuple[dict, list[dict]]:
    tasks = task_names(world)
    envs = {}
    perception = Perception(world, size)
    recs = []
    try:
        for k in range(scenes):
            task = tasks[k % len(tasks)]
            if task not in envs:
                envs[task] = make_env(world, task, split)
            env = envs[task]
            seed = seed0 + k
            env.reset(seed=seed)
            if arm_steps:
                run_arm(env, arm_steps)
            t0 = time.perf_counter()
            rgb, depth = render_for_perception(env, size)
            t1, c1 = time.perf_counter(), time.process_time()
            est = perception.estimate(rgb, depth, env._view, env._proj)
            t2, c2 = time.perf_counter(), time.process_time()
            rec = scene_record(env, world, est, env.object_rows(), env.zone_rows(), visible_pixels(env, size))
            rec.update(task=task, seed=seed, ms_render=(t1 - t0) * 1000, ms_estimate=(t2 - t1) * 1000,
                       cpu_ms_estimate=(c2 - c1) * 1000)
            recs.append(rec)
            if verbose and (rec["missed"] or rec["phantom"] or (rec["err"] and max(rec["err"]) > 0.02)
                            or not all(rec["colour"] + rec["size"] + rec["shape"] + rec["support"])):
                print(f"  {split} {task} seed {seed}: missed {rec['missed']} phantom {rec['phantom']} "
                      f"max err {max(rec['err'], default=0) * 100:.1f} cm colour {rec['colour'].count(False)} "
                      f"size {rec['size'].count(False)} shape {rec['shape'].count(False)} "
                      f"support {rec['support'].count(False)} wrong")
    finally:
        for env in envs.values():
            env.close()
    return summarise(recs), recs


COLUMNS = [
    ("split", "split", "{}"), ("scenes", "scenes", "{}"), ("objects", "objects", "{}"),
    ("pos med cm", "pos_median_cm", "{:.3f}"), ("pos p95 cm", "pos_p95_cm", "{:.3f}"),
    ("colour", "colour_acc", "{:.1%}"), ("size", "size_acc", "{:.1%}"), ("shape", "shape_acc", "{:.1%}"),
    ("yaw med deg", "yaw_median_deg", "{:.1f}"), ("missed (visible)", None, None), ("phantom", "phantom", "{}"),
    ("support", "support_acc", "{:.1%}"), ("zone med cm", "zone_median_cm", "{:.2f}"),
    ("zone p95 cm", "zone_p95_cm", "{:.2f}"), ("zones missed/phantom", None, None),
    ("ms render", "ms_render", "{:.1f}"), ("ms estimate", "ms_estimate", "{:.1f}"),
    ("cpu ms estimate", "cpu_ms_estimate", "{:.1f}"),
]


def table(results: dict[str, dict]) -> str:
    head = "| " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for split, s in results.items():
        cells = []
        for col, key, fmt in COLUMNS:
            if key is None and col.startswith("missed"):
                cells.append(f"{s['missed']} ({s['missed_visible']})")
            elif key is None:
                cells.append(f"{s['zones_missed']}/{s['zones_phantom']}")
            elif key == "split":
                cells.append(split)
            else:
                v = s[key]
                cells.append("-" if isinstance(v, float) and math.isnan(v) else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=["pickplace", "push"], default="pickplace")
    ap.add_argument("--scenes", type=int, default=20, help="scenes per split (tasks in turn)")
    ap.add_argument("--splits", nargs="+", default=["L1", "L2", "L3"])
    ap.add_argument("--seed-start", type=int, default=3_000_000, help="first seed (the benchmark's: >= 3,000,000)")
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="render size (default: the world's perception size)")
    ap.add_argument("--arm-steps", type=int, default=0, help="oracle control steps before the frame (arm in view)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the figures and per-scene records")
    ap.add_argument("--verbose", action="store_true", help="print every scene with an error")
    args = ap.parse_args(argv)
    if args.scenes < 1:
        ap.error("--scenes must be >= 1")
    size = tuple(args.size) if args.size else DEFAULT_SIZES[args.world]
    results, records = {}, {}
    for split in args.splits:
        results[split], records[split] = run_split(args.world, split, args.scenes, args.seed_start, size,
                                                   args.arm_steps, args.verbose)
    print(f"world {args.world}, size {size[0]}x{size[1]}, seeds {args.seed_start}..{args.seed_start + args.scenes - 1}"
          f" per split, arm steps {args.arm_steps}, matching: {'hungarian' if linear_sum_assignment else 'greedy'}")
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"world": args.world, "size": list(size), "seed_start": args.seed_start, "scenes": args.scenes,
                   "arm_steps": args.arm_steps, "colours": list(COLOR_NAMES),
                   "matching": "hungarian" if linear_sum_assignment else "greedy",
                   "results": results, "records": records}
        args.out.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
