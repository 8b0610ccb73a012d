"""Export a training checkpoint's model folder as a standalone model (e.g. the shipped `checkpoints/palme-tiny/`).

    python -m training.export outputs/train/palme-tiny checkpoints/palme-tiny [--max-mb 40]

Copies `pretrained_model/` (weights, config.json, tokenizer, train_config.json) of the run's `last`
checkpoint (or of the given step folder), checks that PalmE.from_pretrained loads the copy, and
refuses a model larger than --max-mb. Files already in the destination that the model does not
own (an evaluation report, a README) are kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from training import checkpoint as ck


def export(src: str | Path, dst: str | Path, max_mb: float = 40.0) -> Path:
    """Copy the model folder of checkpoint `src` into `dst` (atomically per file) and verify it loads."""
    from agent.model import PalmE

    model_dir = ck.resolve_checkpoint(src) / ck.PRETRAINED_DIR
    size_mb = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file()) / 2**20
    if size_mb > max_mb:
        raise ValueError(f"{model_dir} holds {size_mb:.1f} MB, more than the allowed {max_mb} MB")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(model_dir, staged)
        PalmE.from_pretrained(staged)  # refuse to publish a folder that does not load
        for f in staged.iterdir():
            f.replace(dst / f.name)
    return dst


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run folder, checkpoints/ folder or step folder")
    p.add_argument("dest", help="destination model folder")
    p.add_argument("--max-mb", type=float, default=40.0)
    args = p.parse_args(argv)
    try:
        out = export(args.checkpoint, args.dest, args.max_mb)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    print(f"exported {ck.resolve_checkpoint(args.checkpoint)} -> {out} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
