#!/bin/bash
# #19 variant G (decided before its result): F (B's round 1 + data.rephrase=8 + prompt.instruction.in_text=false) with
# prompt.instruction.pooled=true: the encoder's sentence embedding, trained to make paraphrases alike, as the first <instr>
# token. Code at 12293c1 (/work/snap5). Chosen against F on validation phrasings v2 (r19_val2.sh's protocol): the
# higher pooled success; within 3 points F (the simpler).
set -e
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
V=/work/main/benchmarks/validate_phrasing.py
cd /work/snap5
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-G-r1 output_dir=$T/r19-G-r1 "data.dirs=[$BASE]" data.rephrase=8 model.prompt.instruction.in_text=false model.prompt.instruction.pooled=true
echo "TRAIN G r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
$PY $V $T/r19-G-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_G.a.json --failures /work/logs/fail_G.a.jsonl > /work/logs/val_G.a.txt 2>&1 &
$PY $V $T/r19-G-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_G.b.json --failures /work/logs/fail_G.b.jsonl > /work/logs/val_G.b.txt 2>&1
wait
echo "VAL G r1 $(( $(date +%s) - start )) s"
cd /work/main
.venv/bin/python benchmarks/phrasing_gap.py $T/r19-G-r1 --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_G-r1.json --failures /work/logs/fail2_G-r1.jsonl > /work/logs/val2_G-r1.txt 2>&1
echo VARIANT G DONE
