"""Export a training checkpoint's model folder as a standalone model (e.g. the shipped `checkpoints/palme-tiny/`).

    python -m training.export outputs/train/palme-tiny checkpoints/palme-tiny [--max-mb 40]

Copies `pretrained_model/` (weights, config.json, tokenizer, train_config.json) of the run's `last`
checkpoint (or of the given step folder), checks that PalmE.from_pretrained loads the copy, and
refuses a model larger than --max-mb or a destination that cannot be written, before writing
anything (one line on stderr, exit status 2). Files already in the destination that the model
does not own (an evaluation report, a README) are kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from training import checkpoint as ck


def export(src: str | Path, dst: str | Path, max_mb: float = 40.0) -> Path:
    """Copy the model folder of checkpoint `src` into folder `dst` (atomically per file) and verify it loads.

    Refused before anything is written (ValueError, one line): `src` is not a checkpoint, its model
    folder holds more than `max_mb` MB, `dst` cannot be written or created (a file in the way, no
    permission), or the copy does not load (`PalmE.from_pretrained` checks every file). The copy is
    staged in a temporary folder in `dst` (or, when `dst` does not exist yet, in its nearest existing
    parent) and loaded before `dst` is created or any of its files replaced; files of `dst` the model
    does not own are kept. Returns `dst` as a Path.
    """
    from agent.model import PalmE

    model_dir = ck.resolve_checkpoint(src) / ck.PRETRAINED_DIR
    size_mb = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file()) / 2**20
    if size_mb > max_mb:
        raise ValueError(f"{model_dir} holds {size_mb:.1f} MB, more than the allowed {max_mb} MB")
    dst = ck.check_output_folder(dst, "export destination")
    stage_in = dst.absolute()  # on dst's file system: dst itself, or its nearest existing parent (both checked)
    while not stage_in.is_dir():
        stage_in = stage_in.parent
    with tempfile.TemporaryDirectory(dir=stage_in, prefix=".palme-export-") as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(model_dir, staged)
        PalmE.from_pretrained(staged)  # refuse to publish a folder that does not load
        dst.mkdir(parents=True, exist_ok=True)
        for f in staged.iterdir():
            f.replace(dst / f.name)
    return dst


def main(argv: list[str] | None = None) -> int:
    """Command line; a refused export prints `python -m training.export: error: <one line>` and exits 2."""
    from agent.cli.common import user_errors

    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run folder, checkpoints/ folder or step folder")
    p.add_argument("dest", help="destination model folder")
    p.add_argument("--max-mb", type=float, default=40.0)
    args = p.parse_args(argv)
    with user_errors(p.prog):
        out = export(args.checkpoint, args.dest, args.max_mb)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    print(f"exported {ck.resolve_checkpoint(args.checkpoint)} -> {out} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
