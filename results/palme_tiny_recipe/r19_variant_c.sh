#!/bin/bash
# #19 variant C: round 1 of the recipe with prompt.instruction.in_text=false (the instruction reaches the LM only through
# the frozen encoder's <instr> tokens), on the same data/r19 oracle logs as A and B; compared with B's round 1 on the
# validation phrasings (20 episodes per task, seeds 950000+). Also validates B's round 3 (r19_finish.sh) first.
set -e
while ! grep -q "RECIPE DONE" /work/logs/finish_r19.log; do sleep 30; done
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
V=/work/main/benchmarks/validate_phrasing.py
start=$(date +%s)
$PY $V $T/r19-B --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_B3.a.json --failures /work/logs/fail_B3.a.jsonl > /work/logs/val_B3.a.txt 2>&1 &
$PY $V $T/r19-B --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_B3.b.json --failures /work/logs/fail_B3.b.jsonl > /work/logs/val_B3.b.txt 2>&1
wait
echo "VAL B r3 $(( $(date +%s) - start )) s"
cd /work/snap3
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-C-r1 output_dir=$T/r19-C-r1 "data.dirs=[$BASE]" model.prompt.instruction.in_text=false
echo "TRAIN C r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-C-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_C.a.json --failures /work/logs/fail_C.a.jsonl > /work/logs/val_C.a.txt 2>&1 &
$PY $V $T/r19-C-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_C.b.json --failures /work/logs/fail_C.b.jsonl > /work/logs/val_C.b.txt 2>&1
wait
echo "VAL C r1 $(( $(date +%s) - start )) s"
echo VARIANT C DONE
