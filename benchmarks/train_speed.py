"""How fast palme-train updates a model on this machine: steps/s, examples/s and tokens/s of the real update step.

    python benchmarks/train_speed.py --data data/stack [--model palme-small] [--batch 32] [--steps 20] [--threads 1 2]
        [--micro 1 2]

`--micro 1 2` also times the batch cut into 2 length-grouped micro-batches (train.group_by_length
with grad_accum 2: less padding, smaller matrices) and prints its speed-up over one whole batch,
both measured in the same run on the same examples.

`cpu_s_per_step` (process CPU time) estimates the 1-thread step time on an idle machine when
others share the CPU (then wall-clock figures are inflated; the load average is printed too).
Runs the training loop's own pieces (data stream, collate, `update_step`) for a few warm-up and
timed updates, per thread count, and prints one JSON line per setting. Use it to size a run:
steps = minutes x 60 x steps/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(args: argparse.Namespace, threads: int, micro: int = 1) -> dict:
    """Timed updates of the real loop pieces at one thread count."""
    import torch

    from agent.model import prompt_builder
    from training import distributed as dd
    from training.batches import MixtureStream, length_groups
    from training.data import load_data
    from training.optim import make_optimizer, make_scheduler
    from training.train import build_model, compose_config, count_tokens, update_step

    torch.set_num_threads(threads)
    cfg = compose_config([f"model={args.model}", f"data.dirs=[{','.join(args.data)}]", f"train.batch_size={args.batch}",
                          *args.override])
    data = load_data(cfg.data, prompt_builder(cfg.model), 0, log=lambda _: None)
    model = build_model(cfg, data, None, log=lambda _: None)
    opt = make_optimizer(model, cfg.train.lr, cfg.train.weight_decay, tuple(cfg.train.betas), cfg.train.eps)
    sched = make_scheduler(opt, cfg.train.warmup_steps, cfg.train.steps, cfg.train.min_lr_ratio)
    stream = MixtureStream(data.sizes(), data.weights, 0)
    info = dd.DistInfo()
    tokens = 0
    t0 = t_load = c0 = 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0, c0, tokens, t_load = time.perf_counter(), time.process_time(), 0, 0.0
        tl = time.perf_counter()
        examples = [data.drawn(r) for r in stream.next(args.batch)]
        if micro == 1:
            batches = [model.collate(examples, train=True)]
        else:
            groups = length_groups([model.sequence_length(e) for e in examples], 1, micro)[0]
            batches = [model.collate([examples[i] for i in g], train=True) for g in groups]
        t_load += time.perf_counter() - tl
        tokens += sum(count_tokens(b) for b in batches)
        update_step(model, model, batches, opt, sched, cfg, info, nullcontext)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0  # CPU seconds of this process: the wall time on an otherwise idle machine (1 thread)
    return {"model": args.model, "params": model.parameter_counts()["total"], "threads": threads,
            "batch": args.batch, "micro_batches": micro, "steps_per_s": round(args.steps / wall, 3), "s_per_step": round(wall / args.steps, 3),
            "examples_per_s": round(args.steps * args.batch / wall, 1), "tokens_per_s": round(tokens / wall),
            "data_share": round(t_load / wall, 3), "cpu_s_per_step": round(cpu / args.steps, 3),
            "load_avg_1min": round(__import__("os").getloadavg()[0], 1)}


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="demonstration-log folders")
    p.add_argument("--model", default="palme-small")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--micro", type=int, nargs="+", default=[1],
                   help="micro-batch counts to time (1 = the whole batch; k > 1 = k length-grouped micro-batches)")
    p.add_argument("--override", nargs="*", default=[], help="extra palme-train overrides")
    args = p.parse_args()
    for t in args.threads:
        base = None
        for k in args.micro:
            row = measure(args, t, k)
            base = base or row["s_per_step"]
            row["speedup_vs_first"] = round(base / row["s_per_step"], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
