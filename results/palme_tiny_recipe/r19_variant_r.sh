#!/bin/bash
# #19 variant R: round 1 of the recipe (B: text + frozen-encoder instruction tokens) with prompt.restate=true and the
# `restate` source at weight 0.06 (the `goal` source's; fixed before any result), on the same data/r19 oracle logs;
# compared with B's round 1 on the validation phrasings by the rule of r19_rounds.sh. Code frozen at /work/snap4.
set -e
cd /work/snap4
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
V=/work/snap4/benchmarks/validate_phrasing.py
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-R-r1 output_dir=$T/r19-R-r1 "data.dirs=[$BASE]" model.prompt.restate=true +data.weights.restate=0.06
echo "TRAIN R r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-R-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_R.a.json --failures /work/logs/fail_R.a.jsonl > /work/logs/val_R.a.txt 2>&1 &
$PY $V $T/r19-R-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_R.b.json --failures /work/logs/fail_R.b.jsonl > /work/logs/val_R.b.txt 2>&1
wait
echo "VAL R r1 $(( $(date +%s) - start )) s"
echo VARIANT R DONE
