#!/bin/bash
# #19 variant E (decided before its result): B's round 1 plus data.rephrase=8 (instruction augmentation: each prompt holds
# the logged words or one of 8 other training phrasings of the episode's goal), on the same data/r19 oracle logs; compared
# with B's round 1 on the validation phrasings by the same rule (pooled; within 3 points the training phrasings; then B).
set -e
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
V=/work/main/benchmarks/validate_phrasing.py
cd /work/snap5
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-E-r1 output_dir=$T/r19-E-r1 "data.dirs=[$BASE]" data.rephrase=8
echo "TRAIN E r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-E-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_E.a.json --failures /work/logs/fail_E.a.jsonl > /work/logs/val_E.a.txt 2>&1 &
$PY $V $T/r19-E-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_E.b.json --failures /work/logs/fail_E.b.jsonl > /work/logs/val_E.b.txt 2>&1
wait
echo "VAL E r1 $(( $(date +%s) - start )) s"
echo VARIANT E DONE
