#!/bin/bash
# #19: round 1 of the palme-tiny recipe for variant $1 on the data/r19 oracle logs, code frozen at $CODE (default
# /work/snap5), with the overrides after the name; then the first validation file (20 scenes per task, seeds 950000+)
# and validation phrasings v2 (r19_val2.sh's protocol). Used by r19_variant_e.sh, _f.sh and _g.sh.
set -e
W=$1; shift
PY=/work/main/.venv/bin/python
T=/work/main/outputs/train
V=/work/main/benchmarks/validate_phrasing.py
D=/work/main/data/r19
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
cd ${CODE:-/work/snap5}
start=$(date +%s)
OMP_NUM_THREADS=1 /work/main/.venv/bin/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-$W-r1 output_dir=$T/r19-$W-r1 "data.dirs=[$BASE]" "$@"
echo "TRAIN $W r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-$W-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_$W.a.json --failures /work/logs/fail_$W.a.jsonl > /work/logs/val_$W.a.txt 2>&1 &
$PY $V $T/r19-$W-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_$W.b.json --failures /work/logs/fail_$W.b.jsonl > /work/logs/val_$W.b.txt 2>&1
wait
echo "VAL $W r1 $(( $(date +%s) - start )) s"
cd /work/main
$PY benchmarks/phrasing_gap.py $T/r19-$W-r1 --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_$W-r1.json --failures /work/logs/fail2_$W-r1.jsonl > /work/logs/val2_$W-r1.txt 2>&1
echo "VARIANT $W DONE"
