#!/bin/bash
# #19 variant F (decided before E's result): E (B's round 1 + data.rephrase=8) with prompt.instruction.in_text=false, as
# C: the words reach the LM only through the frozen encoder, which rephrasing now feeds many phrasings of each goal.
# Starts when E's training ends. The same validation and choice rule as B, C, E.
while ! grep -q "TRAIN E r1" /work/logs/variant_e.log; do sleep 30; done
set -e
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
V=/work/main/benchmarks/validate_phrasing.py
cd /work/snap5
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-F-r1 output_dir=$T/r19-F-r1 "data.dirs=[$BASE]" data.rephrase=8 model.prompt.instruction.in_text=false
echo "TRAIN F r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-F-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_F.a.json --failures /work/logs/fail_F.a.jsonl > /work/logs/val_F.a.txt 2>&1 &
$PY $V $T/r19-F-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_F.b.json --failures /work/logs/fail_F.b.jsonl > /work/logs/val_F.b.txt 2>&1
wait
echo "VAL F r1 $(( $(date +%s) - start )) s"
echo VARIANT F DONE
