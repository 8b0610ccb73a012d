#!/bin/bash
# #21, first measurement: round 1 of the #19 recipe (the round-1 variant chosen on validation phrasings v2: G if its pooled
# success beats F's by more than 3 points, else F) with data/r21's 200 push episodes per task in place of data/r19's 12-20.
# Then push L1, 50 episodes per task, for it and for the same variant's round 1 on data/r19 (same seeds), and the
# pick-and-place validation phrasings v2 (r19_val2.sh's protocol) for it.
while ! grep -q "VARIANT G DONE" /work/logs/variant_g.log; do sleep 30; done
while ! grep -q "R21 COLLECT DONE" /work/logs/r21_collect.log; do sleep 30; done
set -e
cd /work/main
pooled() { python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['episodes']; print(round(100*sum(r['new'] for r in e)/len(e),1))" $1; }
G=$(pooled /work/logs/val2_G-r1.json); F=$(pooled /work/logs/val2_F-r1.json)
if python3 -c "import sys; sys.exit(0 if $G > $F + 3 else 1)"; then W=G; EXTRA="model.prompt.instruction.pooled=true"; else W=F; EXTRA=""; fi
echo "CHOSEN $W (v2 pooled G $G, F $F)"
D=/work/main/data/r19; P=/work/main/data/r21; T=/work/main/outputs/train
PP="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack"
PUSH=$(for t in all_to_center block2absolutelocation block2block block2block_relative_location block2relativelocation corner_to_same_color separate side_together sort_corners; do printf "%s," $P/push_$t; done)
cd /work/snap5
start=$(date +%s)
OMP_NUM_THREADS=1 /work/main/.venv/bin/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r21-$W-r1 output_dir=$T/r21-$W-r1 "data.dirs=[$PP,${PUSH%,}]" data.rephrase=8 model.prompt.instruction.in_text=false $EXTRA
echo "TRAIN r21 $W r1 $(( $(date +%s) - start )) s"
cd /work/main
TASKS="[block2block,block2absolutelocation,block2relativelocation,block2block_relative_location,separate,corner_to_same_color,sort_corners,side_together,all_to_center]"
for m in r21-$W-r1 r19-$W-r1; do
  start=$(date +%s)
  .venv/bin/palme-eval checkpoint=$T/$m env=push "tasks=$TASKS" episodes=50 workers=2 image_size=[64,64] hydra.run.dir=outputs/r21/eval_push_$m > /work/logs/r21_eval_push_$m.txt 2>&1
  echo "EVAL PUSH $m $(( $(date +%s) - start )) s"
done
.venv/bin/python benchmarks/phrasing_gap.py $T/r21-$W-r1 --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_r21-$W-r1.json --failures /work/logs/fail2_r21-$W-r1.jsonl > /work/logs/val2_r21-$W-r1.txt 2>&1
echo "R21 ROUND1 DONE"
