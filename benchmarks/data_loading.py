"""How fast the training loader turns a log folder into examples (compare with the training step rate).

    python benchmarks/data_loading.py data/stack --examples 2000 --batch 32

Reports: open time (metadata + numeric columns + checksums), spec-building time, examples/s on the
first pass (PNG decodes) and on a second pass over the same draws (decode-once cache hits).
"""

from __future__ import annotations

import argparse
import json
import time

from training.batches import MixtureStream
from training.dataset import LogDataset
from training.examples import ExampleBuilder, mixture_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mixture", default="full")
    args = ap.parse_args()

    t0 = time.perf_counter()
    ds = LogDataset(args.root)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    builder = ExampleBuilder(ds)
    weights = mixture_weights(args.mixture)
    pools = builder.all_sources(weights)
    t_specs = time.perf_counter() - t0
    sizes = {k: len(v) for k, v in pools.items()}
    specs = [pools[s][i] for s, i in MixtureStream(sizes, weights, 0).next(args.examples)]

    def run() -> float:
        t = time.perf_counter()
        for i in range(0, len(specs), args.batch):
            [builder.materialize(s) for s in specs[i: i + args.batch]]
        return len(specs) / (time.perf_counter() - t)

    decoded0 = ds.decoded
    cold = run()
    decodes = ds.decoded - decoded0
    warm = run()
    result = {
        "episodes": len(ds), "frames": ds.info["total_frames"], "open_s": round(t_open, 2),
        "specs_s": round(t_specs, 2), "specs": sizes, "examples": len(specs),
        "png_decodes_first_pass": decodes, "examples_per_s_first_pass": round(cold, 1),
        "examples_per_s_cached": round(warm, 1), "batches_per_s_cached": round(warm / args.batch, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
